"""A meta-labelled model (a primary trend rule proposes the bets, the classifier takes or skips
them) through the real model servers: the transformer answers the probability the rule acts on,
the classifier's where the primary proposes a bet and 0.5 where it proposes none, as the batch
path does on the same hours; and the direction it answers is flat wherever the primary is."""

import dataclasses

import numpy as np
import pytest

from klinecast.research.features import compute_features
from klinecast.research.model import Candidate, HyperParams
from klinecast.research.strategy import StrategyRule
from klinecast.serving.offline import offline_probabilities
from tests.support.helpers import served_forecasts
from tests.support.model_fixtures import MIRROR_PARAMS, trained_artifact

pytestmark = pytest.mark.integration
PRIMARY = "trend_50d"
PARAMS = dataclasses.replace(
    MIRROR_PARAMS,
    features=dataclasses.replace(
        MIRROR_PARAMS.features, indicators=(*MIRROR_PARAMS.features.indicators, PRIMARY)
    ),
)
META = Candidate(
    HyperParams(60, 3, 0.1, 0.8, 0.8, 0.0, 120), StrategyRule("long_only", primary=PRIMARY), 4
)


def test_a_meta_labelled_model_is_served_as_the_batch_path_reads_it(mirror_candles, tmp_path):
    out = trained_artifact(mirror_candles, PARAMS, META, tmp_path / "m")
    offline = offline_probabilities(mirror_candles, out)
    recent = mirror_candles.iloc[-3000:]
    rule = compute_features(recent, indicators=(PRIMARY,), interval=PARAMS.data.interval_delta)
    primary = rule.frame[PRIMARY]
    # four hours on which the primary proposes a bet and four on which it proposes none
    hours = [*primary[primary == 1].index[-4:], *primary[primary == 0].index[-4:]]
    ends = [mirror_candles.index.get_loc(hour) for hour in hours]
    window = PARAMS.features.min_history  # converged features, as in production
    answers = served_forecasts(mirror_candles, out, ends, window=window, log_dir=tmp_path / "logs")
    prob_up = [a["prob_up"] for a in answers]
    np.testing.assert_allclose(prob_up, offline[hours].to_numpy(), atol=1e-6)
    assert all(p != 0.5 for p in prob_up[:4])  # the classifier's own view on the bets
    assert prob_up[4:] == [0.5] * 4 and {a["direction"] for a in answers[4:]} == {"flat"}
    assert answers[0]["strategy"]["primary"] == PRIMARY
