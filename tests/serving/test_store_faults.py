"""A slow or absent online store costs a symbol request one fast 503, never the server: a real
redis-server is stopped, then hung (SIGSTOP), while users ask by symbol, by candles and on
liveness (benchmarks/bench_faults.py's run, shortened).

The latency bounds are coarse on purpose (eight times the store's timeout): they tell a server
that answers from one that waits out the fault (2 s here), not fast from slow.
"""

import pytest

from benchmarks.bench_faults import run
from klinecast.config import Params
from klinecast.indicators import fetch_hours

pytestmark = pytest.mark.integration
FAULT_S = 2.0
BOUND_MS = 8 * Params().online.timeout_ms
#: what a sync fetches for the default features, with room to spare
SYNCED_HOURS = fetch_hours(Params().features.min_history) + 200


@pytest.fixture(scope="module")
def fault_run(artifact, mirror_candles, tmp_path_factory):
    return run(
        artifact=artifact,
        candles=mirror_candles.iloc[-SYNCED_HOURS:],
        users=6,
        stopped_s=FAULT_S,
        hung_s=FAULT_S,
        calm_s=1.5,
        log_dir=tmp_path_factory.mktemp("faults"),
    )


@pytest.mark.parametrize("fault", ["stopped", "hung"])
def test_symbol_requests_get_a_fast_503_naming_the_store(fault_run, fault):
    symbol = fault_run["phases"][fault]["symbol"]
    assert set(symbol["statuses"]) <= {"200", "503"}, symbol
    assert symbol["statuses"].get("503", 0) > 0, symbol  # (200s: the row read in the last second)
    assert symbol["max_ms"] < BOUND_MS, symbol
    assert all("online store 127.0.0.1:" in e for e in symbol["errors"]), symbol["errors"]


@pytest.mark.parametrize("fault", ["stopped", "hung"])
@pytest.mark.parametrize("kind", ["candles", "live"])
def test_requests_that_need_no_store_answer_as_usual(fault_run, fault, kind):
    answered = fault_run["phases"][fault][kind]
    assert answered["requests"] > 0 and set(answered["statuses"]) == {"200"}, answered
    assert answered["max_ms"] < BOUND_MS, answered


def test_the_transformer_recovers_by_itself_and_stays_ready(fault_run):
    for fault, seconds in fault_run["recovery_s"].items():
        assert seconds is not None and seconds < 3, (fault, seconds)
    for phase in ("recover_after_stop", "recover_after_hang"):
        assert fault_run["phases"][phase]["symbol"]["statuses"].get("200", 0) > 0
    # readiness stays true: candle requests are still served (README argues it)
    assert fault_run["ready_throughout"] and fault_run["readiness_samples"] > 10
