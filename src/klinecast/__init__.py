"""klinecast: hourly crypto forecasting and trading on Kubeflow and KServe."""

__version__ = "0.1.0"
