"""The shadow book's bookkeeping and the promotion rule, on a SQLite ledger: a challenger that
does not answer holds its shadow position and never stops the hour; a newer challenger starts
its own book, flat; the rule promotes, rejects or keeps shadowing by the interval of the mean
daily difference, as computed by hand."""

import dataclasses
import logging

import numpy as np
import pandas as pd
import pytest

from klinecast.config import ChallengerParams, Params
from klinecast.monitor.promotion_rule import decide
from klinecast.research.strategy import StrategyRule
from klinecast.serving.client import InferenceError, Prediction
from klinecast.trader import shadow
from klinecast.trader.ledger import Ledger

RULE = StrategyRule("long_short", entry_band=0.0, exit_band=0.0, min_hold_hours=1)
PARAMS = Params()
START = pd.Timestamp("2022-01-01", tz="UTC")


def candles(hours: int, *, seed: int = 1) -> pd.DataFrame:
    index = pd.date_range(START, periods=hours + 1, freq="h")
    closes = 100.0 * np.cumprod(1.0 + np.random.default_rng(seed).normal(0, 0.01, hours + 1))
    return pd.DataFrame({"close": closes}, index=index)


def answers(probs, version="v-a"):
    """An ask that answers each hour with the next probability (None: the service is down)."""
    queue = list(probs)

    def ask(_candles):
        prob = queue.pop(0)
        if prob is None:
            raise InferenceError("the challenger's InferenceService answered 503")
        return Prediction(prob, version, "", RULE)

    return ask


def run(ledger, ask, frame, hours):
    for hour in frame.index[:hours]:
        shadow.call(ledger, ask, PARAMS, hour=hour, candles=frame.loc[:hour])
        shadow.settle(ledger, frame.loc[:hour], PARAMS)
    shadow.settle(ledger, frame, PARAMS)


def test_a_challenger_that_does_not_answer_holds_its_position_and_rerun_hours_stay(tmp_path):
    ledger = Ledger(f"sqlite:///{tmp_path}/l.db")
    ledger.migrate()
    frame = candles(4)
    run(ledger, answers([0.9, None, 0.1, 0.9]), frame, 4)
    calls = ledger.shadow_calls("BTCUSDT")
    assert [(c["status"], c["target"]) for c in calls] == [
        ("called", 1), ("no_call", 1), ("called", -1), ("called", 1),
    ]  # fmt: skip
    assert "answered 503" in calls[1]["reason"]
    shadow.call(ledger, answers([0.1]), PARAMS, hour=frame.index[3], candles=frame)  # a rerun
    assert ledger.shadow_calls("BTCUSDT")[-1]["target"] == 1  # the hour's call stays
    market = frame["close"].pct_change().shift(-1).to_numpy()[:4]
    cost = PARAMS.backtest.cost
    expected = [market[0] - cost, market[1], -market[2] - 2 * cost, market[3] - 2 * cost]
    outcomes = ledger.shadow_outcomes("BTCUSDT")
    np.testing.assert_allclose([o["strategy_return"] for o in outcomes], expected, rtol=1e-12)
    np.testing.assert_allclose(outcomes[-1]["equity"], np.prod(1 + np.array(expected)), rtol=1e-12)
    assert [o["correct"] for o in outcomes][1] is None  # a no-call is no call


def test_no_shadow_book_starts_while_the_challenger_does_not_answer(tmp_path, caplog):
    """No challenger in shadow is the usual state (its service answers 404 every hour): a
    note, not a warning; a book in progress that loses its challenger is a warning."""
    ledger = Ledger(f"sqlite:///{tmp_path}/l.db")
    ledger.migrate()
    with caplog.at_level(logging.INFO, logger="klinecast.trader"):
        run(ledger, answers([None, None]), candles(2), 2)
        assert ledger.shadow_calls("BTCUSDT") == []
        assert [r.levelno for r in caplog.records] == [logging.INFO, logging.INFO]
        caplog.clear()
        run(ledger, answers([0.9, None]), candles(4).iloc[2:], 2)
        assert [r.levelno for r in caplog.records] == [logging.WARNING]


def test_a_newer_challenger_starts_its_own_book_flat(tmp_path):
    ledger = Ledger(f"sqlite:///{tmp_path}/l.db")
    ledger.migrate()
    frame = candles(4)
    run(ledger, answers([0.9, 0.9]), frame.iloc[:3], 2)
    for hour in frame.index[2:4]:
        shadow.call(ledger, answers([0.9], "v-b"), PARAMS, hour=hour, candles=frame.loc[:hour])
    shadow.settle(ledger, frame, PARAMS)
    outcomes = ledger.shadow_outcomes("BTCUSDT")
    newer = [o for o in outcomes if o["version"] == "v-b"]
    market = frame["close"].pct_change().shift(-1).to_numpy()
    assert newer[0]["strategy_return"] == pytest.approx(market[2] - PARAMS.backtest.cost, rel=1e-12)
    assert newer[-1]["equity"] == pytest.approx(
        (1 + market[2] - PARAMS.backtest.cost) * (1 + market[3]), rel=1e-12
    )


def side_by_side(daily_difference, hours_a_day=24) -> shadow.SideBySide:
    days = len(daily_difference)
    hours = pd.date_range(START, periods=days * hours_a_day, freq="h")
    figures = shadow.BookFigures(0.0, float("nan"), 0, 0.0)
    index = pd.date_range(START, periods=days, freq="D")
    return shadow.SideBySide(
        "BTCUSDT", "v-a", hours, figures, figures, pd.Series(daily_difference, index=index),
        pd.DataFrame(),
    )  # fmt: skip


@pytest.mark.parametrize(
    ("differences", "shortfall", "action"),
    [
        ([0.002, 0.001, 0.003, 0.002, 0.001, 0.002, 0.002], 0.0, "promote"),
        ([-0.002, -0.001, -0.003, -0.002, -0.001, -0.002, -0.002], 0.0, "reject"),
        ([-0.002, -0.001, -0.003, -0.002, -0.001, -0.002, -0.002], 0.005, "promote"),
        ([0.02, -0.03, 0.01, -0.02, 0.03, -0.01, 0.0], 0.0, "shadow"),
    ],
)
def test_the_rule_decides_by_the_bounds_of_the_mean_daily_difference(differences, shortfall, action):
    from scipy import stats

    params = dataclasses.replace(ChallengerParams(), max_daily_shortfall=shortfall)
    decision = decide(side_by_side(differences), params)
    d = np.array(differences)
    reach = stats.t.ppf(0.9, len(d) - 1) * d.std(ddof=1) / np.sqrt(len(d))
    assert decision.evidence["lower"] == pytest.approx(d.mean() - reach, rel=1e-12)
    assert decision.evidence["upper"] == pytest.approx(d.mean() + reach, rel=1e-12)
    assert decision.evidence["challenger"]["hit_rate"] is None  # NaN is no JSON
    assert decision.action == action, decision.reason


def test_the_rule_waits_for_its_hours():
    decision = decide(side_by_side([0.01] * 6), ChallengerParams())  # 144 of 168 hours
    assert decision.action == "shadow"
    assert decision.reason == "144 of the 168 shadow hours the rule needs are settled"
    assert decide(None, ChallengerParams()).action == "shadow"


def test_the_rules_params_are_checked():
    from klinecast.config import ParamsError

    with pytest.raises(ParamsError, match="min_hours"):
        ChallengerParams(min_hours=12)
    with pytest.raises(ParamsError, match="confidence"):
        ChallengerParams(confidence=1.0)
