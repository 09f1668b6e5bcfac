"""Fixtures shared by the integration tests: a model trained on the mirror, served for real."""

import dataclasses
import datetime as dt

import pytest

from helpers import MIN_HISTORY, NAME, RULE, free_port
from klinecast import evaluation, registry
from klinecast.config import Params, SplitParams
from klinecast.features import compute_features
from klinecast.metadata import artifact_metadata
from klinecast.model import Candidate, HyperParams
from klinecast.serving.local import LocalServing


@pytest.fixture(scope="package")
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
    trained = evaluation.train_final(frame, params, candidate)
    metadata = artifact_metadata(
        trained, params=params, candidate=candidate, metrics={}, data_version={}
    )
    out = tmp_path_factory.mktemp("artifact") / "candidate"
    registry.write_artifact(out, trained.booster, metadata)
    return out


@pytest.fixture(scope="package")
def serving(artifact, tmp_path_factory):
    with LocalServing(
        NAME, str(artifact), free_port(), free_port(), log_dir=tmp_path_factory.mktemp("logs")
    ) as local:
        yield local


@pytest.fixture(scope="package")
def window(mirror_candles):
    return mirror_candles.loc[:"2021-12-31 23:00"].iloc[-MIN_HISTORY:]
