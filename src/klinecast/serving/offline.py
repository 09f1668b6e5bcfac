"""The batch path the serving answers must equal: features on full history, then predict (and,
for a meta-labelled model, no view where its primary proposes no bet)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from klinecast.config import INTERVALS
from klinecast.release import registry
from klinecast.research import strategy
from klinecast.research.features import compute_features


def offline_probabilities(candles: pd.DataFrame, artifact_dir: Path) -> pd.Series:
    """The probability the model's rule acts on at every row of candles' features (computed on
    full history): the booster's, or 0.5 where a meta-labelled model's primary proposes no bet."""
    import xgboost as xgb

    metadata = registry.read_artifact_metadata(artifact_dir)
    names = list(metadata.feature_names)
    frame = compute_features(candles, indicators=names, interval=INTERVALS[metadata.interval]).frame
    booster = xgb.Booster()
    booster.load_model(str(Path(artifact_dir) / registry.MODEL_FILE))
    proba = booster.predict(
        xgb.DMatrix(frame[names].to_numpy(dtype=np.float64)), validate_features=False
    )
    rule = metadata.rule
    proba = strategy.meta_probability(proba, rule, strategy.primary_of(frame, rule))
    return pd.Series(proba, index=frame.index, name="prob_up")
