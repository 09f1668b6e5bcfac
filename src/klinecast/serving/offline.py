"""The batch path the serving answers must equal: features on full history, then predict."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from klinecast.config import INTERVALS
from klinecast.release import registry
from klinecast.research.features import compute_features


def offline_probabilities(candles: pd.DataFrame, artifact_dir: Path) -> pd.Series:
    """The model's probability at every row of candles' features (computed on full history)."""
    import xgboost as xgb

    metadata = registry.read_artifact_metadata(artifact_dir)
    names = list(metadata.feature_names)
    frame = compute_features(candles, indicators=names, interval=INTERVALS[metadata.interval]).frame
    booster = xgb.Booster()
    booster.load_model(str(Path(artifact_dir) / registry.MODEL_FILE))
    proba = booster.predict(
        xgb.DMatrix(frame[names].to_numpy(dtype=np.float64)), validate_features=False
    )
    return pd.Series(proba, index=frame.index, name="prob_up")
