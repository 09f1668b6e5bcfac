"""Fixtures of a model trained on the mirror and served for real (the serving and trader tests;
the root conftest loads them as a plugin). One model and one pair of servers per session."""

import dataclasses
import datetime as dt

import pytest

from klinecast.config import Params, SplitParams
from klinecast.release import registry
from klinecast.release.metadata import artifact_metadata
from klinecast.research import training
from klinecast.research.features import compute_features
from klinecast.research.model import Candidate, HyperParams
from klinecast.serving.local import LocalServing
from tests.support.helpers import MIN_HISTORY, NAME, RULE, free_port


@pytest.fixture(scope="session")
def artifact(mirror_candles, tmp_path_factory):
    """A model trained on the mirror's last 60 days of 2021, as `klinecast train` writes it."""
    params = dataclasses.replace(
        Params(),
        split=SplitParams(
            dt.date(2018, 1, 1), dt.date(2020, 12, 31), dt.date(2021, 1, 1), dt.date(2021, 12, 31)
        ),
    )
    frame = compute_features(
        mirror_candles, indicators=params.features.indicators, interval=params.data.interval_delta
    ).frame
    candidate = Candidate(HyperParams(60, 4, 0.1, 0.8, 0.8, 0, 60), RULE, horizon_hours=2)
    trained = training.train_final(frame, params, candidate)
    metadata = artifact_metadata(
        trained, params=params, candidate=candidate, metrics=None, data_version={}
    )
    out = tmp_path_factory.mktemp("artifact") / "candidate"
    registry.write_artifact(out, trained.booster, metadata)
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
