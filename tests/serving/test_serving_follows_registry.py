"""The served model follows the registry: a version promoted while clients ask is loaded and
warmed beside the served one, then swapped in; no request fails, each answer names the version
that produced it, and answers move to the new version within the poll period (plus the load).
A model that cannot be loaded is a 503 with Retry-After while its storage is unreachable, a 404
only when it has no production version."""

import dataclasses
import datetime as dt
import threading
import time

import numpy as np
import pytest
import requests

from klinecast.config import Params, SplitParams
from klinecast.release import registry
from klinecast.research import training
from klinecast.research.features import compute_features
from klinecast.research.model import Candidate, HyperParams
from klinecast.serving.client import v1_compact_request, v2_binary_request
from klinecast.serving.local import LocalServing
from klinecast.serving.offline import offline_probabilities
from tests.support.helpers import MIN_HISTORY, NAME, RULE, free_port

pytestmark = pytest.mark.integration
POLL_S = 1.0
#: what loading and warming a version may add to the poll period (about a second here; the
#: bound is loose for a busy machine)
LOAD_S = 8.0


@pytest.fixture(scope="module")
def second_artifact(mirror_candles, artifact, tmp_path_factory):
    """Another model of the same features (other trees), as a retraining would publish."""
    from klinecast.release.metadata import artifact_metadata

    metadata = registry.read_artifact_metadata(artifact)
    params = dataclasses.replace(
        Params(),
        split=SplitParams(
            dt.date(2018, 1, 1), dt.date(2020, 12, 31), dt.date(2021, 1, 1), dt.date(2021, 12, 31)
        ),
    )
    frame = compute_features(
        mirror_candles, indicators=metadata.feature_names, interval=params.data.interval_delta
    ).frame
    candidate = Candidate(HyperParams(30, 3, 0.2, 0.9, 0.9, 0, 60), RULE, horizon_hours=2)
    trained = training.train_final(frame, params, candidate)
    out = tmp_path_factory.mktemp("second") / "candidate"
    registry.write_artifact(
        out, trained.booster,
        artifact_metadata(trained, params=params, candidate=candidate, metrics=None, data_version={}),
    )  # fmt: skip
    return out


class Load:
    """Clients asking without pause, each request timed, until stopped."""

    def __init__(self, serving, windows):
        self.serving, self.windows = serving, windows
        self.answers: list[tuple[float, float, int, str, float, int]] = []
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self.ask, args=(i,)) for i in range(4)]

    def ask(self, worker: int) -> None:
        session = requests.Session()
        base = self.serving.transformer_url
        n = 0
        while not self.stop.is_set():
            w = (worker + n) % len(self.windows)
            n += 1
            started = time.monotonic()
            if worker % 2:  # V2 binary tensors
                data, headers = v2_binary_request(self.windows[w])
                answer = session.post(f"{base}/v2/models/{NAME}/infer", data=data, headers=headers, timeout=30)
                outputs = {o["name"]: o["data"][0] for o in answer.json()["outputs"]} if answer.ok else {}
            else:  # V1, compact
                answer = session.post(
                    f"{base}/v1/models/{NAME}:predict", json=v1_compact_request(self.windows[w]), timeout=30
                )
                outputs = answer.json()["predictions"][0] if answer.ok else {}
            self.answers.append((started, time.monotonic(), answer.status_code,
                                 outputs.get("model_version", answer.text), outputs.get("prob_up", -1.0), w))  # fmt: skip

    def __enter__(self):
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=60)


@pytest.mark.slow
def test_a_promotion_under_load_moves_answers_to_the_new_version_without_a_failure(
    artifact, second_artifact, mirror_candles, tmp_path
):
    store = registry.LocalStore(tmp_path / "registry")
    old = registry.publish(artifact, store=store, model_name=NAME, promote=True,
                           now=dt.datetime(2026, 1, 1, tzinfo=dt.UTC))  # fmt: skip
    uri = f"{tmp_path / 'registry'}/{NAME}/versions/{registry.PRODUCTION_VERSION}"
    ends = [mirror_candles.index.get_loc(t) for t in ("2021-11-01 00:00", "2021-12-01 00:00", "2021-12-31 23:00")]  # fmt: skip
    windows = [mirror_candles.iloc[e - MIN_HISTORY + 1 : e + 1] for e in ends]
    with LocalServing(
        NAME, uri, free_port(), free_port(), log_dir=tmp_path / "logs", poll_seconds=POLL_S
    ) as serving, Load(serving, windows) as load:  # fmt: skip
        time.sleep(2.0)
        promoted_at = time.monotonic()
        new = registry.publish(second_artifact, store=store, model_name=NAME, promote=True,
                               now=dt.datetime(2026, 1, 2, tzinfo=dt.UTC))  # fmt: skip
        time.sleep(POLL_S + LOAD_S + 2.0)
    answers = load.answers
    assert len(answers) > 50, len(answers)
    failed = [a for a in answers if a[2] != 200]
    assert failed == [], failed[:3]
    assert {a[3] for a in answers} == {old.version, new.version}
    # each answer is its own version's: the probability that version's model gives the window
    expected = {
        old.version: offline_probabilities(mirror_candles, artifact),
        new.version: offline_probabilities(mirror_candles, second_artifact),
    }
    for version, probs in expected.items():
        at = [probs.loc[w.index[-1]] for w in windows]
        other = [expected[v].loc[w.index[-1]] for v in expected if v != version for w in windows]
        assert np.abs(np.array(at) - np.array(other)).max() > 1e-4  # the versions differ
        for _, _, _, v, prob, w in answers:
            if v == version:
                assert prob == pytest.approx(at[w], abs=1e-6), (version, w)
    first_new = min(ended for _, ended, _, v, _, _ in answers if v == new.version)
    assert first_new - promoted_at < POLL_S + LOAD_S, first_new - promoted_at
    late_old = [a for a in answers if a[0] > first_new and a[3] == old.version]
    assert late_old == [], late_old[:3]  # once moved, answers stay with the new version
