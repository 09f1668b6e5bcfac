"""The trader's own logic without servers: the orders of a position change, the book the rule
sees, outcomes priced by the backtest's formula, and an hour's orders sent once (a real SQLite
ledger and the paper broker)."""

import re

import numpy as np
import pandas as pd
import pytest

from klinecast.book import Book
from klinecast.config import Params
from klinecast.research.backtest import strategy_returns
from klinecast.research.strategy import Holding
from klinecast.trader import cycle
from klinecast.trader.brokers import PaperBroker, client_order_id
from klinecast.trader.cycle import (
    Trader,
    holding,
    reconcile_orders,
    reconcile_position,
    resolve,
    resume,
    settle,
)
from klinecast.trader.ledger import Ledger, Order
from tests.support.candle_factory import synthetic_candles

PARAMS = Params()
SYMBOL = PARAMS.data.symbol
SIZE = PARAMS.trade.quantity


@pytest.fixture()
def ledger(tmp_path):
    ledger = Ledger(f"sqlite:///{tmp_path / 'ledger.db'}")
    ledger.migrate()
    return ledger


def trade_to(trader: Trader, hour, *, target: int, price: float) -> int:
    """cycle.trade_to with the broker's rules and all of the position free; the orders sent."""
    reports = []
    rules = trader.broker.rules(trader.symbol)
    position, dust = trader.ledger.holding(trader.symbol)
    cycle.trade_to(trader, hour, target=target, price=price, rules=rules,
                   free=position + dust, reports=reports)  # fmt: skip
    return sum(1 for r in reports if r.sent)


def reconciled(trader: Trader, hour) -> float | None:
    """The difference the reconciliation halts on, or None."""
    rules = trader.broker.rules(trader.symbol)
    return reconcile_position(trader, hour, rules, explained_by=[])[0]


def booked_behind_the_ledger(trader: Trader, order: Order) -> None:
    """The paper exchange books the order; the ledger never hears of it."""
    trader.broker.place(order, price=100.0, rules=trader.broker.rules(trader.symbol))


@pytest.mark.parametrize(
    ("start", "target", "expected"),
    [
        (0, 0, []),
        (0, 1, [("open", "BUY")]),
        (1, 1, []),
        (1, 0, [("close", "SELL")]),
        (1, -1, [("close", "SELL"), ("open", "SELL")]),
        (-1, 1, [("close", "BUY"), ("open", "BUY")]),
    ],
)
def test_a_change_of_side_is_a_close_and_or_an_open(ledger, start, target, expected):
    candles = synthetic_candles(10)
    trade = trader(ledger, candles)
    if start:
        trade_to(trade, candles.index[0], target=start, price=100.0)
    before = len(ledger.orders())
    trade_to(trade, candles.index[1], target=target, price=100.0)
    assert [(o.leg, o.side) for o in ledger.orders()[before:]] == expected
    assert ledger.position(SYMBOL) == pytest.approx(target * SIZE)


def test_client_order_ids_fit_binances_rule():
    found = client_order_id("BTCUSDT", pd.Timestamp("2021-12-01 13:00", tz="UTC"), "close")
    assert found == "kc-BTCUSDT-2021120113-close"
    assert re.fullmatch(r"[.A-Z:/a-z0-9_-]{1,36}", found)


def trader(ledger: Ledger, candles: pd.DataFrame) -> Trader:
    def market(until, count):
        return candles.loc[:until].iloc[-count:]

    return Trader(
        PARAMS, ledger, PaperBroker(fee=PARAMS.backtest.fee, engine=ledger.engine), market, None
    )


def test_an_hours_orders_are_sent_once_and_the_position_follows(ledger):
    candles = synthetic_candles(10)
    hour = candles.index[5]
    trade = trader(ledger, candles)
    assert trade_to(trade, hour, target=1, price=100.0) == 1
    assert ledger.position("BTCUSDT") == pytest.approx(SIZE)
    assert trade_to(trade, hour, target=1, price=100.0) == 0  # nothing to change
    assert trade_to(trade, candles.index[6], target=-1, price=101.0) == 2  # a flip: two legs
    assert ledger.position("BTCUSDT") == pytest.approx(-SIZE)
    assert [o.leg for o in ledger.orders()] == ["open", "close", "open"]
    assert all(o.status == "filled" for o in ledger.orders())


def test_the_rule_sees_how_long_the_ledgers_position_is_held(ledger):
    candles = synthetic_candles(10)
    trade = trader(ledger, candles)
    for i, target in enumerate([1, 1, 1]):
        hour = candles.index[i]
        trade_to(trade, hour, target=target, price=100.0)
        ledger.record_prediction(
            hour.to_pydatetime(), symbol="BTCUSDT", target=target, close=100.0, status="traded"
        )
    assert holding(ledger, "BTCUSDT", candles.index[3]) == Holding(1, 3)
    assert holding(ledger, "BTCUSDT", candles.index[1]) == Holding(1, 1)


def test_settled_outcomes_are_priced_like_the_backtest(ledger):
    candles = synthetic_candles(12, seed=4)
    targets = [0, 1, 1, -1, -1, 0, 1, 1]
    for hour, target in zip(candles.index[: len(targets)], targets, strict=True):
        ledger.record_prediction(
            hour.to_pydatetime(), symbol="BTCUSDT", target=target, close=1.0, status="traded"
        )
    settle(ledger, candles, PARAMS)
    live = [r["strategy_return"] for r in ledger.outcomes("BTCUSDT")]
    closes = candles["close"].to_numpy()
    market = closes[1 : len(targets) + 1] / closes[: len(targets)] - 1
    cost = PARAMS.backtest.cost  # the fee and the slippage, per side
    assert cost > PARAMS.backtest.fee
    backtest = strategy_returns(np.array(targets), market, cost=cost)
    # the backtest also closes the book after its last hour; the live ledger does not
    backtest[-1] += cost * abs(targets[-1])
    np.testing.assert_allclose(live, backtest, rtol=0, atol=1e-15)
    equity, _ = ledger.last_equity("BTCUSDT")
    assert equity == pytest.approx(np.prod(1 + backtest))


def order_for(hour, leg="open", side="BUY") -> Order:
    return Order(client_order_id(SYMBOL, hour, leg), hour.to_pydatetime(), leg, SYMBOL, side, SIZE)


def test_an_intent_the_exchange_booked_is_recorded_filled_before_anything_else(ledger):
    """A crash after the order left: the ledger holds the intent, the exchange (here the paper
    broker's own book) the order. The next cycle, of any hour, records the fill first."""
    candles = synthetic_candles(10)
    trade = trader(ledger, candles)
    order = order_for(candles.index[2])
    ledger.record_intent(order)
    booked_behind_the_ledger(trade, order)  # booked; the ledger never heard back
    reconcile_orders(trade)
    assert ledger.order(order.client_order_id).status == "filled"
    assert ledger.position(SYMBOL) == pytest.approx(SIZE)
    assert reconciled(trade, candles.index[5]) is None  # they agree now
    assert trade_to(trade, candles.index[5], target=1, price=100.0) == 0  # already long


def test_an_intent_the_exchange_never_saw_is_recorded_absent(ledger):
    candles = synthetic_candles(10)
    trade = trader(ledger, candles)
    order = order_for(candles.index[2])
    ledger.record_intent(order)
    reconcile_orders(trade)
    found = ledger.order(order.client_order_id)
    assert found.status == "absent" and found.may_exist is False
    assert ledger.position(SYMBOL) == 0


def test_a_difference_with_the_exchange_halts_and_resolve_records_the_decision(ledger):
    candles = synthetic_candles(10)
    trade = trader(ledger, candles)
    assert reconciled(trade, candles.index[1]) is None  # the baseline: 0 held
    stray = order_for(candles.index[2])
    booked_behind_the_ledger(trade, stray)  # an order the ledger never knew of
    assert reconciled(trade, candles.index[3]) == pytest.approx(SIZE)
    halt = ledger.open_halt(SYMBOL)
    assert halt.kind == "reconcile" and "the exchange +0.00100000" in halt.reason
    done = resolve(trade, adopt="exchange", by="alice", note="a manual order")
    assert "takes the exchange's position +0.00100000" in done and "alice" in done
    assert ledger.open_halt(SYMBOL) is None and ledger.position(SYMBOL) == pytest.approx(SIZE)
    (closed,) = ledger.halts()
    assert closed.resumed_by == "alice" and "a manual order" in closed.decision
    assert reconciled(trade, candles.index[4]) is None


def test_resume_measures_the_kill_switch_from_a_new_base(ledger):
    from klinecast.trader.tables import equity

    candles = synthetic_candles(30)
    with ledger.engine.begin() as c:  # an earlier run lost 30 %
        c.execute(equity.insert().values(hour=candles.index[0], symbol=SYMBOL, equity=0.7, buy_and_hold=1.0))
    settle(ledger, candles, PARAMS)
    assert ledger.open_halt(SYMBOL).kind == "kill_switch"
    said = resume(ledger, SYMBOL, by="bob", note="reviewed")
    assert "cleared by bob" in said and "equity 0.7000" in said
    settle(ledger, candles, PARAMS)  # the same equity: -30 % overall, 0 % since the resume
    assert ledger.open_halt(SYMBOL) is None and ledger.equity_base(SYMBOL) == pytest.approx(0.7)


def test_the_book_trades_each_symbol_with_its_own_ledger_rows_and_halts_as_a_whole(tmp_path):
    from klinecast.config import params_from_mapping
    from klinecast.serving.client import Prediction
    from klinecast.trader.cycle import book_equity, run_book
    from klinecast.trader.ledger import BOOK

    params = params_from_mapping(
        {"data": {"symbols": ["BTCUSDT", "ETHUSDT"]},
         "portfolio": {"weights": {"BTCUSDT": 0.75, "ETHUSDT": 0.25}},
         "trade": {"book_kill_switch_return": -0.0005}}
    )  # fmt: skip
    ledger = Ledger(f"sqlite:///{tmp_path / 'book.db'}")
    ledger.migrate()
    markets = {"BTCUSDT": synthetic_candles(40, seed=1), "ETHUSDT": synthetic_candles(40, seed=2)}
    from klinecast.research.strategy import StrategyRule

    always_long = StrategyRule("long_only", 0.0, 0.0, 1)

    def trader_of(symbol):
        candles = markets[symbol]

        def market(until, count):
            return candles.loc[:until].iloc[-count:]

        def predict(_candles):
            return Prediction(0.9, f"v-{symbol}", "", always_long)

        broker = PaperBroker(fee=PARAMS.backtest.fee, engine=ledger.engine)
        return Trader(Book(params).for_symbol(symbol), ledger, broker, market, predict)

    traders = {symbol: trader_of(symbol) for symbol in params.data.symbols}
    hours = markets["BTCUSDT"].index[:6]
    results = [run_book(traders, params, hour=hour) for hour in hours]
    assert all(set(r.symbols) == {"BTCUSDT", "ETHUSDT"} for r in results)
    for symbol in params.data.symbols:  # each symbol's rows and position are its own
        assert ledger.prediction(hours[0].to_pydatetime(), symbol)["model_version"] == f"v-{symbol}"
        assert {o.symbol for o in ledger.orders()} == {"BTCUSDT", "ETHUSDT"}
    # the book's equity: 75 % of the capital in BTCUSDT and 25 % in ETHUSDT, each compounding
    returns = {"BTCUSDT": [], "ETHUSDT": []}
    for row in ledger.outcomes():
        returns[row["symbol"]].append(row["strategy_return"])
    assert min(map(len, returns.values())) >= 2  # settled hours before the halt
    expected = 0.75 * np.prod(np.add(1, returns["BTCUSDT"])) + 0.25 * np.prod(
        np.add(1, returns["ETHUSDT"])
    )
    assert book_equity(ledger, {"BTCUSDT": 0.75, "ETHUSDT": 0.25}) == pytest.approx(expected)
    # a book kill switch at -0.05 % (the fees of opening alone cost more) halts every symbol
    halted = [r for r in results if r.halt]
    assert halted and "the book's cumulative return" in halted[0].halt
    assert ledger.open_halt(BOOK) is not None
    later = run_book(traders, params, hour=markets["BTCUSDT"].index[7])
    assert {r.status for r in later.symbols.values()} == {"halted"} and later.exit_code == 3
    assert all(ledger.position(s) == 0 for s in params.data.symbols)  # flat while halted


def test_capital_split_sizes_each_symbols_position_and_holds_it(ledger):
    from klinecast.config import params_from_mapping

    params = params_from_mapping(
        {"data": {"symbols": ["BTCUSDT", "ETHUSDT"]},
         "portfolio": {"weights": {"BTCUSDT": 0.75, "ETHUSDT": 0.25}},
         "trade": {"capital": 1000.0, "max_quantity": 1000.0}}
    )  # fmt: skip
    params = Book(params).for_symbol("ETHUSDT")
    assert params.trade.capital == 250.0  # its share of the book's capital
    candles = synthetic_candles(10)
    trade = Trader(params, ledger, PaperBroker(fee=0.001, engine=ledger.engine), None, None)
    trade_to(trade, candles.index[0], target=1, price=100.0)
    assert ledger.position("ETHUSDT") == pytest.approx(2.5)  # 250 USDT at 100
    assert trade_to(trade, candles.index[1], target=1, price=80.0) == 0  # held: not re-sized
    assert ledger.position("ETHUSDT") == pytest.approx(2.5)
    trade_to(trade, candles.index[2], target=0, price=80.0)
    trade_to(trade, candles.index[3], target=1, price=80.0)  # a new position: 250 at 80
    assert ledger.position("ETHUSDT") == pytest.approx(3.125)
    capped = params_from_mapping({"trade": {"capital": 1000.0, "max_quantity": 0.01}})
    trade = Trader(capped, ledger, PaperBroker(fee=0.001, engine=ledger.engine), None, None)
    trade_to(trade, candles.index[4], target=1, price=100.0)
    assert ledger.position("BTCUSDT") == pytest.approx(0.01)  # the cap holds


def test_a_book_halt_neither_hides_a_symbols_own_halt_nor_is_cleared_by_it(ledger):
    from klinecast.trader.ledger import BOOK

    ledger.halt(BOOK, kind="kill_switch", reason="the book fell", equity_now=0.7)
    assert ledger.open_halt(SYMBOL).symbol == BOOK  # the symbol is halted by the book's
    ledger.halt(SYMBOL, kind="reconcile", reason="ledger and exchange differ")
    assert ledger.open_halt(SYMBOL).kind == "reconcile"  # its own difference comes first
    said = resume(ledger, "ETHUSDT", by="op", note="")
    assert said == "ETHUSDT was not halted; the book is halted (the book fell): `--symbol '*'`"
    assert ledger.own_halt(BOOK) is not None  # a symbol's resume leaves the book's halt
    assert "cleared" in resume(ledger, BOOK, by="op", note="ok", weights={SYMBOL: 1.0})
    assert ledger.own_halt(BOOK) is None and ledger.open_halt(SYMBOL).kind == "reconcile"
