"""The entity `symbol` and the feature view `klinecast_features`, over params.yaml's features.

The same objects `klinecast features sync` registers (klinecast.serving.online_store.definitions): the
features are features.indicators of ../params.yaml, with each candle's open_time, and the
candle's close as the event time.
"""

from pathlib import Path

from klinecast.config import load_params
from klinecast.serving.online_store import definitions

_HERE = Path(__file__).resolve().parent
symbol, klinecast_features = definitions(
    load_params(_HERE.parent / "params.yaml").features.names,
    offline_path=str(_HERE.parent / "build" / "feast" / "offline.parquet"),
)
