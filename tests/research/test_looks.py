"""How many times each out-of-sample span has been evaluated: counted in the study's storage."""

import datetime as dt

import pytest
import sqlalchemy as sa

from klinecast.config import Span
from klinecast.errors import KlinecastError
from klinecast.research import looks

SPAN = Span(dt.date(2022, 1, 1), dt.date(2022, 5, 31))


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_every_evaluation_of_a_span_counts_once_more(backend, tmp_path, request):
    if backend == "sqlite":
        url = f"sqlite:///{tmp_path}/optuna.db"
    else:
        url = request.getfixturevalue("postgres")
        with sa.create_engine(url).begin() as c:
            c.execute(sa.text("DROP TABLE IF EXISTS klinecast_span_looks"))
    assert [looks.record(url, SPAN) for _ in range(3)] == [1, 2, 3]
    other = Span(dt.date(2022, 1, 1), dt.date(2022, 6, 30))
    assert looks.record(url, other) == 1  # another span has its own count
    assert looks.record(url, SPAN) == 4
    assert looks.record(url, SPAN, "ETHUSDT") == 1  # and another symbol: its hours are its own
    assert looks.record(url, SPAN, "BTCUSDT") == 5


def test_an_unreachable_storage_is_a_clear_error_without_the_password():
    url = "postgresql://klinecast:hunter2@127.0.0.1:1/optuna"
    with pytest.raises(KlinecastError, match="cannot count the evaluations of") as caught:
        looks.record(url, SPAN)
    assert "hunter2" not in str(caught.value)


def _look_when_released(url: str, barrier, symbol: str) -> int:
    barrier.wait(timeout=60)
    return looks.record(url, SPAN, symbol)


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_evaluations_that_count_at_once_on_a_new_storage_all_count(backend, tmp_path, request):
    # a pipeline's symbol branches evaluate at the same moment on one storage that has no
    # table yet: each must count (none fails on the table the other created, none is lost)
    import concurrent.futures
    import multiprocessing

    if backend == "sqlite":
        url = f"sqlite:///{tmp_path}/optuna.db"
    else:
        url = request.getfixturevalue("postgres")
        with sa.create_engine(url).begin() as c:
            c.execute(sa.text("DROP TABLE IF EXISTS klinecast_span_looks"))
    context = multiprocessing.get_context("spawn")
    symbols = ["BTCUSDT", "ETHUSDT", "ETHUSDT", "ETHUSDT"]
    with context.Manager() as manager:
        barrier = manager.Barrier(len(symbols))
        with concurrent.futures.ProcessPoolExecutor(len(symbols), mp_context=context) as pool:
            counts = list(pool.map(_look_when_released, [url] * 4, [barrier] * 4, symbols))
    assert counts[0] == 1
    assert sorted(counts[1:]) == [1, 2, 3]
    assert looks.record(url, SPAN, "ETHUSDT") == 4
