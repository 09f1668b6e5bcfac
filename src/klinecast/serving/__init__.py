"""KServe model classes: the XGBoost predictor and the candle -> feature transformer."""
