"""A linear model (the search's `gblinear` choice) through the real model servers: the artifact
train writes, served as a tree model is, answers what the batch path answers on the same hours.

The linear booster is fitted on standardised features and its weights mapped back onto the raw
ones (`research.model._fit_linear`), so serving sends the raw features it always sends.
"""

import numpy as np
import pytest

from klinecast.research.model import Candidate, HyperParams, complexity
from klinecast.serving.offline import offline_probabilities
from tests.support.helpers import RULE, served_forecasts
from tests.support.model_fixtures import MIRROR_PARAMS, trained_artifact

pytestmark = pytest.mark.integration
LINEAR = HyperParams(
    200, 1, 0.3, 1.0, 1.0, 0.0, 60, booster="gblinear", reg_alpha=0.001, reg_lambda=0.0
)


def test_a_linear_model_is_served_as_the_batch_path_reads_it(mirror_candles, tmp_path):
    import xgboost as xgb

    out = trained_artifact(
        mirror_candles, MIRROR_PARAMS, Candidate(LINEAR, RULE, horizon_hours=4), tmp_path / "m"
    )
    booster = xgb.Booster(model_file=str(out / "model.json"))
    shape = complexity(booster)
    assert shape.booster == "gblinear" and len(shape.features_used) >= 3
    offline = offline_probabilities(mirror_candles, out)
    window = MIRROR_PARAMS.features.min_history  # converged features, as in production
    ends = np.linspace(len(mirror_candles) - 400, len(mirror_candles) - 1, 8).astype(int)
    answers = [
        a["prob_up"]
        for a in served_forecasts(mirror_candles, out, ends, window=window, log_dir=tmp_path / "logs")
    ]
    expected = offline[mirror_candles.index[ends]].to_numpy()
    np.testing.assert_allclose(answers, expected, atol=1e-6)
    assert np.ptp(answers) > 0  # the weights move the forecast
