"""Fixtures of a model trained on the mirror and served for real (the serving and trader tests;
the root conftest loads them as a plugin). One model and one pair of servers per session."""


import pytest

from klinecast.research.model import Candidate, HyperParams
from klinecast.serving.local import LocalServing
from tests.support.helpers import MIN_HISTORY, NAME, RULE, free_port
from tests.support.model_fixtures import MIRROR_PARAMS, trained_artifact


@pytest.fixture(scope="session")
def artifact(mirror_candles, tmp_path_factory):
    """A model trained on the mirror's last 60 days of 2021, as `klinecast train` writes it."""
    candidate = Candidate(HyperParams(60, 4, 0.1, 0.8, 0.8, 0, 60), RULE, horizon_hours=2)
    out = tmp_path_factory.mktemp("artifact") / "candidate"
    trained_artifact(mirror_candles, MIRROR_PARAMS, candidate, out)
    return out


@pytest.fixture(scope="session")
def serving(artifact, tmp_path_factory):
    with LocalServing(
        NAME, str(artifact), free_port(), free_port(), log_dir=tmp_path_factory.mktemp("logs")
    ) as local:
        yield local


@pytest.fixture(scope="session")
def window(mirror_candles):
    return mirror_candles.loc[:"2021-12-31 23:00"].iloc[-MIN_HISTORY:]
