"""The paths that once ended with the exchange holding twice what the ledger recorded, each
reproduced against the Binance stand-in (its documented client-order-id reuse rule, or the
stricter one) with real model servers and a real PostgreSQL ledger:

1. the trader killed at each step of an order, the next run in the same hour or the next;
2. an order POST that fails after the exchange booked it (a 5xx, an HTML 200, a read timeout);
3. two cycles of one hour at once, on a fresh database (the schema race too);
4. the cap, with quantity = max_quantity, checked at the exchange after every case.

After every case the orders at the stand-in equal the ledger's filled orders, one per client
order id, the ledger's position equals the exchange's, and the exchange never holds more than
the cap. $KLINECAST_FAULT_TRIALS sets the number of concurrent trials (default 3; the closing
note's fault run used 20).

The paths that once left the exchange holding twice what the ledger recorded, against the
Binance stand-in (its documented client-id reuse rule, and the stricter one) and PostgreSQL: the
trader killed at each step of an order (held there by a table lock or the stand-in), then run in
the same hour or the next; an order POST failing after the exchange booked it (5xx, an HTML 200,
a read timeout); two cycles of one hour at once on a fresh database ($KLINECAST_FAULT_TRIALS
trials, 3 by default); a second cycle that gives up (busy, exit 4); a difference with the
exchange halting until `trade resolve`. After every case the stand-in's orders equal the
ledger's, one per client id, and the exchange holds no more than the cap.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa

from klinecast.research import strategy
from klinecast.serving.offline import offline_probabilities
from klinecast.trader.ledger import Ledger
from tests.support.binance_server import API_KEY, API_SECRET, BinanceServer
from tests.support.helpers import NAME, RULE, drop_ledger, table, table_locked, write_params

pytestmark = pytest.mark.integration
BIN = Path(sys.executable).parent
CAP = 0.001
START = pd.Timestamp("2021-12-01 04:00", tz="UTC")
TRIALS = int(os.environ.get("KLINECAST_FAULT_TRIALS", "3"))


@pytest.fixture(scope="module")
def trading_hour(artifact, mirror_candles) -> pd.Timestamp:
    """The first hour from START in which the model, from a flat book, opens a position."""
    history = mirror_candles.loc[:"2021-12-31 23:00"]
    probabilities = offline_probabilities(history, artifact)
    for hour in pd.date_range(START, periods=48, freq="h"):
        decided = (hour + pd.Timedelta(hours=1)).hour
        if strategy.next_position(float(probabilities.loc[hour]), RULE, decision_hour=decided):
            return hour
    pytest.fail("the model stays flat for two days from a flat book")


@pytest.fixture()
def exchange(mirror_candles):
    with BinanceServer(mirror_candles.loc[:"2021-12-31 23:00"]) as server:
        yield server


def trader_params(path: Path, **trade) -> Path:
    """params.yaml for the testnet broker, candles, quantity = the cap, and trade's changes."""
    base = {"broker": "testnet", "request": "candles", "quantity": CAP, "max_quantity": CAP}
    return write_params(path, {"publish": {"service_name": NAME}, "trade": base | trade})


@pytest.fixture()
def setup(tmp_path, serving, exchange, postgres, monkeypatch):
    """params (testnet broker, candles, quantity = the cap) and a pod's environment."""
    params = trader_params(tmp_path / "params.yaml", lock_wait_seconds=60)
    drop_ledger(postgres)
    pod = {
        "KLINECAST_LEDGER_URL": postgres,
        "KLINECAST_INFERENCE_URL": serving.transformer_url,
        "KLINECAST_BINANCE_URL": exchange.url,
        "BINANCE_API_KEY": API_KEY,
        "BINANCE_API_SECRET": API_SECRET,
    }
    for key, value in pod.items():  # for the cycles run in this process
        monkeypatch.setenv(key, value)
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}", **pod}
    return {"params": params, "ledger": postgres, "env": env}


def cycle(setup, hour: pd.Timestamp, **env) -> subprocess.Popen:
    """`klinecast trade once` for the hour, as the CronJob's pod runs it."""
    now = f"{hour + pd.Timedelta(minutes=61):%Y-%m-%dT%H:%M}Z"
    argv = ["klinecast", "trade", "once", "--params", str(setup["params"]), "--now", now]
    return subprocess.Popen(
        argv, env={**setup["env"], **env}, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip


def cycle_here(setup, hour: pd.Timestamp, *, expect: int = 0) -> None:
    """The same cycle in this process (a follow-up run: nothing to kill, and no start-up)."""
    from klinecast.cli import main

    now = f"{hour + pd.Timedelta(minutes=61):%Y-%m-%dT%H:%M}Z"
    assert main(["trade", "once", "--params", str(setup["params"]), "--now", now]) == expect


def finished(process: subprocess.Popen, *, expect: int = 0) -> int:
    """Waits for the cycle; fails with what it said unless it exited `expect`."""
    out, err = process.communicate(timeout=180)
    assert "Traceback" not in err, err
    assert process.returncode == expect, out + err[-3000:]
    return process.returncode


def wait_until(condition, *, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "the trader never reached the step"
        time.sleep(0.05)


def ledger_orders(setup) -> list[dict]:
    try:
        return table(setup["ledger"], "orders")
    except sa.exc.ProgrammingError:  # not created yet
        return []


def assert_consistent(setup, exchange) -> None:
    """The stand-in's orders equal the ledger's filled ones, one per client order id; the
    ledger's position (and dust) is the exchange's; the exchange holds no more than the cap,
    open orders included."""
    booked = [o["clientOrderId"] for o in exchange.booked]
    assert len(booked) == len(set(booked)), f"an order was booked twice: {booked}"
    orders = ledger_orders(setup)
    filled = sorted(o["client_order_id"] for o in orders if o["status"] == "filled")
    assert filled == sorted(booked), (orders, exchange.booked)
    assert not [o for o in orders if o["status"] == "intent"], orders
    positions = table(setup["ledger"], "positions")
    ours = positions[0]["qty"] + positions[0]["dust"] if positions else 0.0
    assert ours == pytest.approx(exchange.position(), abs=1e-9)
    assert abs(exchange.exposure()) <= CAP + 1e-9  # open orders included


#: Where the trader is killed: the condition that says it got there, and how it is held there.
STEPS = ["before_anything", "intent_committed", "booked_unanswered", "answer_unrecorded",
         "fill_recorded"]  # fmt: skip


@pytest.mark.parametrize("follow", ["same_hour", "next_hour"])
@pytest.mark.parametrize("step", STEPS)
def test_killed_at_each_step_of_an_order_then_run_again(
    setup, exchange, trading_hour, step, follow
):
    url, hour = setup["ledger"], trading_hour
    Ledger(url).migrate()  # the tables exist, so a test can lock one
    if step == "before_anything":  # its first look at the orders waits
        with table_locked(url, "orders", "ACCESS EXCLUSIVE"):
            process = cycle(setup, hour)
            time.sleep(3)
            process.kill()
    elif step == "intent_committed":  # the intent is committed; the POST waits to be booked
        exchange.delay_order_s = 2.0
        process = cycle(setup, hour)
        wait_until(lambda: any(o["status"] == "intent" for o in ledger_orders(setup)))
        time.sleep(0.5)
        process.kill()
        wait_until(lambda: len(exchange.booked) == 1)  # the POST in flight still books
        exchange.delay_order_s = 0.0
    elif step == "booked_unanswered":
        exchange.hang_after_order_s = 30
        process = cycle(setup, hour)
        wait_until(lambda: len(exchange.booked) == 1)
        process.kill()
        exchange.hang_after_order_s = 0
    elif step == "answer_unrecorded":  # the fill's transaction waits at the position
        with table_locked(url, "positions", "EXCLUSIVE"):
            process = cycle(setup, hour)
            wait_until(lambda: len(exchange.booked) == 1)
            time.sleep(1)
            process.kill()
    else:  # the fill is recorded; the hour's prediction waits
        with table_locked(url, "predictions", "EXCLUSIVE"):
            process = cycle(setup, hour)
            wait_until(lambda: any(o["status"] == "filled" for o in ledger_orders(setup)))
            time.sleep(0.5)
            process.kill()
    process.wait()
    follow_up = hour if follow == "same_hour" else hour + pd.Timedelta(hours=1)
    cycle_here(setup, follow_up)
    cycle_here(setup, follow_up + pd.Timedelta(hours=1))
    assert_consistent(setup, exchange)


def test_a_rerun_that_finds_the_model_down_still_reconciles(setup, exchange, trading_hour, serving):
    """Killed after the order was booked; the same hour's rerun finds the model down and
    records no_trade; the next hour must not buy again."""
    exchange.hang_after_order_s = 30
    process = cycle(setup, trading_hour)
    wait_until(lambda: len(exchange.booked) == 1)
    process.kill()
    process.wait()
    exchange.hang_after_order_s = 0
    down = cycle(setup, trading_hour, KLINECAST_INFERENCE_URL="http://127.0.0.1:9")
    finished(down, expect=1)
    assert [o["status"] for o in ledger_orders(setup)] == ["filled"]  # reconciled anyway
    cycle_here(setup, trading_hour + pd.Timedelta(hours=1))
    assert_consistent(setup, exchange)


@pytest.mark.parametrize("reuse_ids", [True, False], ids=["binance_rule", "strict"])
@pytest.mark.parametrize("fault", ["5xx", "html_200"])
def test_an_order_post_that_failed_after_booking_is_looked_up_not_resent(
    setup, exchange, trading_hour, fault, reuse_ids
):
    exchange.reuse_ids = reuse_ids
    if fault == "5xx":
        exchange.fail_after_booking = 1
    else:
        exchange.html_after_booking = 1
    finished(cycle(setup, trading_hour))
    assert exchange.order_posts() == 1 and len(exchange.booked) == 1
    (order,) = ledger_orders(setup)
    assert order["status"] == "filled" and order["may_exist"] is True  # the doubt is on record
    assert "may exist" in order["error_message"]
    assert_consistent(setup, exchange)


def test_a_read_timeout_after_booking_is_looked_up_not_resent(setup, exchange, trading_hour):
    """The exchange timeout is 1.5 s here; the stand-in holds the answer for 3."""
    trader_params(setup["params"], exchange_timeout_seconds=1.5)
    exchange.hang_after_order_s = 3
    finished(cycle(setup, trading_hour))
    assert exchange.order_posts() == 1 and len(exchange.booked) == 1
    assert_consistent(setup, exchange)


@pytest.mark.parametrize("trial", range(TRIALS))
def test_two_cycles_of_one_hour_at_once_send_one_order(setup, exchange, trading_hour, trial):
    """On a fresh database (each trial drops the ledger) with the exchange's latency: the
    second waits for the first's lock, then finds the hour traded."""
    exchange.delay_s = 0.15
    pair = [cycle(setup, trading_hour) for _ in range(2)]
    for process in pair:
        finished(process)
    assert len(exchange.booked) == 1
    assert_consistent(setup, exchange)


def test_a_second_cycle_that_waits_too_long_sends_nothing_and_says_busy(
    setup, exchange, trading_hour
):
    trader_params(setup["params"], lock_wait_seconds=1)
    # the answer is held past the first cycle's 10 s timeout: it holds the lock that long (then
    # finds its order by a lookup), however slowly the second process starts on a busy machine
    exchange.hang_after_order_s = 30
    first = cycle(setup, trading_hour)
    wait_until(lambda: len(exchange.booked) == 1)
    second = cycle(setup, trading_hour)
    out, err = second.communicate(timeout=120)
    assert second.returncode == 4 and "busy" in out and "another cycle of BTCUSDT" in out
    finished(first)
    assert len(exchange.booked) == 1
    assert_consistent(setup, exchange)


@pytest.mark.slow
def test_a_difference_with_the_exchange_halts_until_an_operator_resolves_it(
    setup, exchange, trading_hour
):
    finished(cycle(setup, trading_hour))
    booked = len(exchange.booked)
    exchange.balances["BTC"] += 0.5  # coins moved into the account by hand
    halted = cycle(setup, trading_hour + pd.Timedelta(hours=1))
    out, err = halted.communicate(timeout=120)
    assert halted.returncode == 3, out + err
    assert "halted (reconcile): the ledger holds" in out and "difference +0.50000000" in out
    assert len(exchange.booked) == booked  # nothing was sent
    finished(cycle(setup, trading_hour + pd.Timedelta(hours=2)), expect=3)  # still halted
    resolve = subprocess.run(
        ["klinecast", "trade", "resolve", "--params", str(setup["params"]), "--adopt", "ledger",
         "--by", "carol", "--note", "a deposit"],
        env=setup["env"], capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert resolve.returncode == 0 and "decided by carol" in resolve.stdout, resolve.stderr
    (halt,) = table(setup["ledger"], "halts")
    assert halt["resumed_by"] == "carol" and "a deposit" in halt["decision"]
    finished(cycle(setup, trading_hour + pd.Timedelta(hours=3)))
    exchange.balances["BTC"] -= 0.5  # (so that assert_consistent compares from 1 BTC)
    reconciled = table(setup["ledger"], "reconciliations")
    assert [r["agree"] for r in reconciled][-1] and not all(r["agree"] for r in reconciled)
