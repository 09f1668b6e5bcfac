"""The trader against the exchange's real rules (issue 32), each case reproduced against the
Binance stand-in (tests/support/binance_server.py), which applies the symbol filters, takes a
BUY's commission in the base asset, can leave orders open, books requests late and enforces
timestamp + recvWindow. The cycles run in this process, through python-binance and the testnet
broker as the CronJob assembles them (`live.trader`), on a SQLite ledger; only the model's
answer is scripted (a probability per hour), so that each case opens, holds and closes when it
needs to.

The numbers in the test names are the issue's numbered failures.
"""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from klinecast.config import params_from_mapping
from klinecast.research.strategy import StrategyRule
from klinecast.serving.client import Prediction
from klinecast.trader import live
from klinecast.trader.cycle import run_book, run_once
from tests.support.binance_server import API_KEY, API_SECRET, BinanceServer
from tests.support.candle_factory import synthetic_candles
from tests.support.helpers import table, write_params

pytestmark = pytest.mark.integration
BIN = Path(sys.executable).parent
#: Above 0.5 the rule is long, below it flat: every hour may change, no minimum hold.
LONG, FLAT = 0.9, 0.1
RULE = StrategyRule("long_only", 0.0, 0.0, 1, 1)
SIZE = 0.001  # BTC per position, and the cap
HISTORY = 5600  # hours: more than the trader asks for (features.min_history plus 10 %)


def market(level: float, *, seed: int = 0) -> pd.DataFrame:
    """Hourly candles around `level` (USDT) from 2021-01-01, valid by every candle rule."""
    candles = synthetic_candles(HISTORY, seed=seed)
    scale = level / float(candles["close"].iloc[0])
    for column in ("open", "high", "low", "close", "quote_volume", "taker_buy_quote_volume"):
        candles[column] = candles[column] * scale
    return candles


CANDLES = market(50_000.0)
HOURS = CANDLES.index[-12:]


@pytest.fixture()
def pod(tmp_path, monkeypatch):
    """The CronJob pod's environment (the testnet keys) and its ledger."""
    monkeypatch.setenv("BINANCE_API_KEY", API_KEY)
    monkeypatch.setenv("BINANCE_API_SECRET", API_SECRET)
    return {"ledger": f"sqlite:///{tmp_path / 'ledger.db'}", "tmp": tmp_path}


def serving_exchange(candles, monkeypatch):
    server = BinanceServer(candles)
    monkeypatch.setenv("KLINECAST_BINANCE_URL", server.url)
    return server


@pytest.fixture()
def exchange(monkeypatch):
    with serving_exchange(CANDLES, monkeypatch) as server:
        yield server


def trade_params(pod, **trade):
    values = {"broker": "testnet", "request": "candles", "ledger": pod["ledger"],
              "quantity": SIZE, "max_quantity": SIZE, "exchange_timeout_seconds": 2.0} | trade  # fmt: skip
    return params_from_mapping({"trade": values})


def scripted(trader, prob: float):
    """The trader with the model's answer fixed to prob for its next cycle."""

    def predict(candles):
        return Prediction(prob, "v-test", str(candles.index[-1] + pd.Timedelta(hours=1)), RULE)

    trader.predict = predict
    return trader


def cycle(trader, exchange, hour, prob):
    """One cycle of the hour, the exchange's market at that hour."""
    exchange.market_hour = hour
    return run_once(scripted(trader, prob), hour=hour)


def rows(pod, name: str) -> list[dict]:
    return table(pod["ledger"], name)


def ledger_position(pod) -> float:
    """The ledger's holding of the symbol: its position and any dust it keeps (0: none yet)."""
    return sum(row["qty"] + row["dust"] for row in rows(pod, "positions"))


def hours_of(records: list[dict]) -> set[pd.Timestamp]:
    """The rows' hours, in UTC (SQLite hands them back as text)."""
    stamps = (pd.Timestamp(r["hour"]) for r in records)
    return {s.tz_localize("UTC") if s.tzinfo is None else s.tz_convert("UTC") for s in stamps}


def wait_for_arrivals(exchange, *, seconds: float = 15) -> None:
    """Until every order POST has reached the stand-in's matching engine (booked or refused)."""
    deadline = time.monotonic() + seconds
    while exchange.arrivals < exchange.order_posts():
        assert time.monotonic() < deadline, "an order never reached the engine"
        time.sleep(0.05)


def test_1_a_fee_in_the_base_asset_leaves_no_top_up_and_a_close_sells_what_is_free(pod, exchange):
    trader = live.trader(trade_params(pod))
    opened = cycle(trader, exchange, HOURS[0], LONG)
    assert opened.status == "traded" and exchange.position() == pytest.approx(0.000999, abs=1e-12)
    held = cycle(trader, exchange, HOURS[1], LONG)  # long still: the fee is no reason to buy
    assert held.status == "traded" and exchange.order_posts() == 1
    closed = cycle(trader, exchange, HOURS[2], FLAT)
    assert closed.status == "traded" and exchange.refused == []
    sold = exchange.booked[-1]
    assert (sold["side"], sold["executedQty"]) == ("SELL", "0.00099000")  # free, to the step
    assert exchange.position() == pytest.approx(0.000009, abs=1e-12)  # dust below the step
    after = cycle(trader, exchange, HOURS[3], FLAT)
    assert after.status == "traded" and exchange.order_posts() == 2
    assert [r["status"] for r in rows(pod, "predictions")] == ["traded"] * 4
    assert all(r["agree"] for r in rows(pod, "reconciliations"))
    (position,) = rows(pod, "positions")
    assert position["qty"] == 0 and position["dust"] == pytest.approx(0.000009, abs=1e-12)


@pytest.fixture(scope="module")
def five_markets():
    levels = {"BTCUSDT": 48_917.3, "ETHUSDT": 4_012.7, "BNBUSDT": 531.9, "SOLUSDT": 187.33,
              "XRPUSDT": 0.8123}  # fmt: skip
    return {s: market(level, seed=i) for i, (s, level) in enumerate(levels.items())}


def test_2_the_five_symbol_book_sizes_every_order_to_its_symbols_filters(
    pod, five_markets, monkeypatch
):
    with serving_exchange(five_markets, monkeypatch) as exchange:
        params = params_from_mapping({
            "data": {"symbols": list(five_markets)},
            "trade": {"broker": "testnet", "request": "symbol", "ledger": pod["ledger"],
                      "capital": 1000.0, "max_quantities": {"ETHUSDT": 1.0, "BNBUSDT": 5.0,
                      "SOLUSDT": 30.0, "XRPUSDT": 5000.0}},
        })  # fmt: skip
        traders = {s: scripted(t, LONG) for s, t in live.book(params).items()}
        exchange.market_hour = HOURS[0]
        result = run_book(traders, params, hour=HOURS[0])
    assert {s: r.status for s, r in result.symbols.items()} == dict.fromkeys(five_markets, "traded")
    assert exchange.refused == [] and len(exchange.booked) == 5
    for order in exchange.booked:  # each a multiple of its step, worth its share of the capital
        rules = exchange.rules[order["symbol"]]
        steps = float(order["executedQty"]) / float(rules.step)
        assert steps == pytest.approx(round(steps), abs=1e-6)
        assert 190 < float(order["cummulativeQuoteQty"]) <= 200


@pytest.mark.parametrize("landing_s", [3.0, 6.5], ids=["within_its_window", "after_its_window"])
def test_3_a_request_that_lands_late_is_never_booked_twice(pod, exchange, landing_s):
    """The POST times out (2 s); the stand-in books it 3 s after it was sent, or refuses it
    once its recvWindow (5 s) has passed. Either way the exchange holds one order's worth."""
    trader = live.trader(trade_params(pod))
    exchange.late_landings = [landing_s]
    result = cycle(trader, exchange, HOURS[0], LONG)
    wait_for_arrivals(exchange)
    assert len(exchange.booked) == 1, exchange.booked
    assert result.status == "traded"
    assert ledger_position(pod) == pytest.approx(exchange.position(), abs=1e-9)
    (order,) = rows(pod, "orders")
    assert order["status"] == "filled" and order["may_exist"]  # the doubt is on record


def test_4_an_order_left_new_moves_nothing_until_it_fills(pod, exchange):
    trader = live.trader(trade_params(pod))
    exchange.leave_open = "NEW"
    cycle(trader, exchange, HOURS[0], LONG)
    (order,) = rows(pod, "orders")
    assert order["status"] == "open" and order["fill_price"] is None
    assert ledger_position(pod) == 0
    exchange.refuse_cancels = 1  # still open at the next cycle, and the cancel fails
    held = cycle(trader, exchange, HOURS[1], LONG)
    assert held.status == "traded" and exchange.order_posts() == 1  # the open order is exposure
    assert rows(pod, "halts") == []
    exchange.fill_open()
    filled = cycle(trader, exchange, HOURS[2], LONG)
    assert filled.status == "traded" and rows(pod, "halts") == []
    (order,) = rows(pod, "orders")
    assert order["status"] == "filled" and order["fill_price"] > 0 and order["fee"] > 0
    assert ledger_position(pod) == pytest.approx(exchange.position(), abs=1e-12)


def test_4_a_doubtful_post_that_is_open_at_the_exchange_is_exposure_not_a_refusal(pod, exchange):
    """A 502 after booking, then a lookup that finds the order NEW: it is open, and the next
    hour buys nothing more while it is; the exchange never holds more than the cap."""
    trader = live.trader(trade_params(pod))
    exchange.leave_open, exchange.fail_after_booking = "NEW", 1
    first = cycle(trader, exchange, HOURS[0], LONG)
    assert first.status == "traded"
    assert [o["status"] for o in rows(pod, "orders")] == ["open"]
    exchange.refuse_cancels = 1
    cycle(trader, exchange, HOURS[1], LONG)
    assert exchange.exposure() <= SIZE + 1e-12 and exchange.order_posts() == 1
    exchange.fill_open()
    cycle(trader, exchange, HOURS[2], LONG)
    assert exchange.exposure() <= SIZE + 1e-12 and rows(pod, "halts") == []
    assert ledger_position(pod) == pytest.approx(exchange.position(), abs=1e-12)


def test_4_a_partly_filled_order_moves_the_position_by_what_executed(pod, exchange):
    trader = live.trader(trade_params(pod))
    exchange.leave_open = "PARTIALLY_FILLED"
    cycle(trader, exchange, HOURS[0], LONG)
    assert [o["status"] for o in rows(pod, "orders")] == ["open"]
    assert ledger_position(pod) == pytest.approx(0.0005 * 0.999, abs=1e-12)
    exchange.leave_open = None
    cycle(trader, exchange, HOURS[1], LONG)  # cancelled at the next cycle; the half is held
    (order,) = rows(pod, "orders")
    assert order["status"] == "canceled" and order["executed_qty"] == pytest.approx(0.0005)
    assert exchange.open_orders() == [] and rows(pod, "halts") == []
    assert ledger_position(pod) == pytest.approx(exchange.position(), abs=1e-12)


def test_4_a_halt_that_a_late_fill_explains_clears_itself(pod, exchange):
    """The open order fills between the cycle's lookup of it and its read of the balance: the
    balance shows a fill the ledger has not seen, and the symbol halts; the next cycle's
    lookup records the fill, the two agree, and the halt ends on record."""
    trader = live.trader(trade_params(pod))
    exchange.leave_open = "NEW"
    cycle(trader, exchange, HOURS[0], LONG)
    exchange.refuse_cancels, exchange.fill_before_next_account = 1, True
    halted = cycle(trader, exchange, HOURS[1], LONG)
    assert halted.status == "halted" and exchange.order_posts() == 1
    later = cycle(trader, exchange, HOURS[2], LONG)
    assert later.status == "traded" and exchange.order_posts() == 1  # held: nothing more
    (halt,) = rows(pod, "halts")
    assert halt["resumed_by"] == "klinecast" and "late fill of kc-BTCUSDT-" in halt["decision"]
    assert ledger_position(pod) == pytest.approx(exchange.position(), abs=1e-12)


def test_5_rerunning_a_traded_hour_after_a_difference_keeps_its_record(pod, exchange):
    trader = live.trader(trade_params(pod))
    cycle(trader, exchange, HOURS[0], LONG)
    (before,) = rows(pod, "predictions")
    exchange.balances["BTC"] += 0.5  # coins moved into the account by hand
    rerun = cycle(trader, exchange, HOURS[0], LONG)
    assert rerun.status == "halted"
    assert rows(pod, "predictions") == [before]  # the traded hour is not rewritten
    from klinecast.trader.cycle import resolve

    resolve(trader, adopt="ledger", by="carol", note="a deposit")
    for hour in HOURS[1:3]:
        cycle(trader, exchange, hour, LONG)
    assert HOURS[0] in hours_of(rows(pod, "outcomes"))  # the held hour counts in the equity


def test_6_an_hour_older_than_one_on_record_is_refused_and_nothing_is_sent(pod, exchange):
    trader = live.trader(trade_params(pod))
    cycle(trader, exchange, HOURS[1], LONG)
    posts = exchange.order_posts()
    behind = cycle(trader, exchange, HOURS[0], FLAT)  # a clock an hour behind
    assert behind.status == "failed" and behind.exit_code != 0
    assert "older than" in behind.reason
    assert exchange.order_posts() == posts
    assert hours_of(rows(pod, "predictions")) == {HOURS[1]}
    (failure,) = rows(pod, "failures")
    assert failure["stage"] == "clock" and "older than" in failure["message"]


FAULTS = {
    "market_data": lambda ex: ex.fail_paths.update({"GET /api/v3/klines": 100}),
    "account": lambda ex: ex.fail_paths.update({"GET /api/v3/account": 100}),
    "clock": lambda ex: setattr(ex, "clock_offset_ms", -3000.0),  # the pod 3 s ahead
}


@pytest.mark.parametrize("stage", list(FAULTS))
def test_7_a_market_data_account_or_clock_failure_is_a_row(pod, exchange, stage):
    trader = live.trader(trade_params(pod))
    FAULTS[stage](exchange)
    result = cycle(trader, exchange, HOURS[0], LONG)
    assert result.exit_code == 1 and exchange.order_posts() == 0
    (failed,) = rows(pod, "predictions")
    assert (failed["status"], failed["stage"]) == ("failed", stage), failed
    if stage == "clock":
        assert failed["error_code"] == -1021 and "ahead" in failed["reason"]
    assert [f["stage"] for f in rows(pod, "failures")] == [stage]


def test_7_refusals_are_rows_and_the_monitor_counts_the_hours_without_a_trade(pod, exchange):
    from klinecast.monitor import health

    trader = live.trader(trade_params(pod))
    exchange.refuse_orders = [(-1013, "Filter failure: NOTIONAL")] * 2
    results = [cycle(trader, exchange, hour, LONG) for hour in HOURS[:2]]
    assert [r.exit_code for r in results] == [1, 1]
    failed = rows(pod, "predictions")
    assert [(r["status"], r["stage"], r["error_code"]) for r in failed] == [
        ("failed", "refusal", -1013)
    ] * 2
    assert "Filter failure: NOTIONAL" in failed[0]["reason"]
    (order, _) = rows(pod, "orders")
    assert order["status"] == "rejected" and order["error_code"] == -1013
    now = (HOURS[1] + pd.Timedelta(minutes=90)).to_pydatetime()
    trading = health.trading_state(trader.ledger, symbol="BTCUSDT", now=now)
    assert trading.idle_hours == {"BTCUSDT": 2}
    assert "BTCUSDT: 2 hours in a row without a trade" in trading.summary


def test_7_a_failing_symbol_of_a_book_is_on_record_and_the_others_trade(
    pod, five_markets, monkeypatch
):
    markets = {s: five_markets[s] for s in ("BTCUSDT", "ETHUSDT")}
    with serving_exchange(markets, monkeypatch) as exchange:
        del exchange.rules["ETHUSDT"]  # the exchange does not list it (delisted)
        params = params_from_mapping({
            "data": {"symbols": list(markets)},
            "trade": {"broker": "testnet", "request": "symbol", "ledger": pod["ledger"],
                      "max_quantities": {"ETHUSDT": 1.0}},
        })  # fmt: skip
        traders = {s: scripted(t, LONG) for s, t in live.book(params).items()}
        exchange.market_hour = HOURS[0]
        result = run_book(traders, params, hour=HOURS[0])
    assert result.symbols["BTCUSDT"].status == "traded" and result.exit_code == 1
    (eth,) = [r for r in rows(pod, "predictions") if r["symbol"] == "ETHUSDT"]
    assert eth["status"] == "failed" and eth["stage"] == "filters"
    assert "ETHUSDT" in eth["reason"]


def test_8_float_noise_is_no_difference_with_the_exchange(pod, exchange, tmp_path):
    from klinecast.monitor import health, page

    trader = live.trader(trade_params(pod))
    cycle(trader, exchange, HOURS[0], LONG)  # 0.001 BTC bought, 0.000999 held
    cycle(trader, exchange, HOURS[1], LONG)
    latest = rows(pod, "reconciliations")[-1]
    assert latest["agree"] and latest["difference"] != 0  # the noise of 1.000999 - 1.0
    now = (HOURS[1] + pd.Timedelta(minutes=90)).to_pydatetime()
    trading = health.trading_state(trader.ledger, symbol="BTCUSDT", now=now)
    assert "differs" not in trading.summary
    empty = pd.DataFrame(columns=["hour", "target", "correct", "strategy_return", "market_return"])
    state = health.health(empty, health.NO_DRIFT, trader.params.trade)
    prom = health.prometheus_text(state, symbol="BTCUSDT", trading=trading)
    assert 'klinecast_reconcile_difference{symbol="BTCUSDT"} 0.0' in prom
    html = page.render(state, empty, health.Decision(False, "-"), trading)
    assert "#fde8e8" not in html  # no red banner


def test_9_a_reconcile_halt_says_what_is_held_and_resume_points_to_resolve(pod, exchange, capsys):
    from klinecast.cli import main
    from klinecast.cli.trade import report

    trader = live.trader(trade_params(pod))
    cycle(trader, exchange, HOURS[0], LONG)
    exchange.balances["BTC"] += 0.5
    halted = cycle(trader, exchange, HOURS[1], LONG)
    report(halted, symbol="BTCUSDT")
    line = capsys.readouterr().out
    assert "halted" in line and "flat" not in line and "long" in line
    params = write_params(pod["tmp"] / "params.yaml", {"trade": {"ledger": pod["ledger"]}})
    code = main(["trade", "resume", "--params", str(params)])
    said = capsys.readouterr().out
    assert code != 0 and "trade resolve" in said


def test_9_the_summary_counts_orders_not_posts(pod, exchange, capsys):
    """The first POST fails before it is booked; after the lookup (and the order's recvWindow)
    it is sent again: one order, two POSTs."""
    from klinecast.cli.trade import report

    trader = live.trader(trade_params(pod))
    exchange.fail_paths["POST /api/v3/order"] = 1
    result = cycle(trader, exchange, HOURS[0], LONG)
    assert exchange.order_posts() == 2 and len(exchange.booked) == 1
    report(result, symbol="BTCUSDT")
    line = capsys.readouterr().out
    assert line.count("\n") == 1 and "1 order" in line and "2 order" not in line
    assert "BUY 0.001" in line and "filled" in line


def test_9_a_command_prints_no_library_info_lines(pod, tmp_path):
    params = write_params(tmp_path / "params.yaml", {"trade": {"ledger": pod["ledger"]}})
    done = subprocess.run(
        [BIN / "klinecast", "trade", "resume", "--params", str(params)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "INFO" not in done.stderr, done.stderr
    assert done.stdout.count("\n") == 1


def test_9_a_stuck_intent_is_aged_from_its_creation(pod):
    from klinecast.monitor import health
    from klinecast.trader.brokers import client_order_id
    from klinecast.trader.ledger import Ledger, Order
    from klinecast.trader.tables import orders

    ledger = Ledger(pod["ledger"])
    ledger.migrate()
    now = dt.datetime(2021, 12, 1, 12, 5, tzinfo=dt.UTC)
    old_hour = now - dt.timedelta(hours=5)  # a late cycle of an old hour, sent just now
    order = Order(client_order_id("BTCUSDT", old_hour, "open"), old_hour, "open", "BTCUSDT",
                  "BUY", SIZE)  # fmt: skip
    ledger.record_intent(order)
    with ledger.engine.begin() as c:
        c.execute(orders.update().values(created_at=now - dt.timedelta(minutes=10)))
    assert health.trading_state(ledger, symbol="BTCUSDT", now=now).stuck_intents == ()
    with ledger.engine.begin() as c:
        c.execute(orders.update().values(created_at=now - dt.timedelta(hours=2)))
    stuck = health.trading_state(ledger, symbol="BTCUSDT", now=now).stuck_intents
    assert stuck == (order.client_order_id,)
