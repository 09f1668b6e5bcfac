"""The book: the symbols' hourly returns combined at their capital shares, and tested against
the baselines combined the same way."""

import numpy as np
import pandas as pd
import pytest

from klinecast.research import portfolio


def frame(start: str, hours: int, *, seed: int, drift: float = 0.0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    index = pd.date_range(start, periods=hours, freq="1h", tz="UTC")
    market = rng.normal(0, 0.01, hours)
    return pd.DataFrame(
        {"strategy_return": market + drift, "buy_and_hold_return": market}, index=index
    )


def test_the_book_is_the_weighted_sum_and_a_missing_hour_is_flat():
    btc = frame("2022-01-01", 48, seed=1)
    eth = frame("2022-01-02", 24, seed=2)  # listed a day later
    book = portfolio.combine({"BTC": btc, "ETH": eth}, {"BTC": 0.25, "ETH": 0.75}, ["buy_and_hold"])
    assert len(book) == 48 and list(book.columns) == ["model", "buy_and_hold"]
    first_day, second_day = book.index[:24], book.index[24:]
    assert np.allclose(book.loc[first_day, "model"], 0.25 * btc.loc[first_day, "strategy_return"])
    expected = 0.25 * btc.loc[second_day, "strategy_return"] + 0.75 * eth["strategy_return"]
    assert np.allclose(book.loc[second_day, "model"], expected)


def test_book_metrics_of_a_known_series():
    m = portfolio.book_metrics(np.array([0.1, -0.5, 0.2]))
    assert m.cumulative_return == pytest.approx(1.1 * 0.5 * 1.2 - 1)
    assert m.max_drawdown == pytest.approx(-0.5) and m.hours == 3


def test_a_book_that_adds_a_steady_edge_beats_its_baseline_and_one_that_adds_none_does_not():
    symbols = {"A": frame("2022-01-01", 2000, seed=3, drift=0.002), "B": frame("2022-01-01", 2000, seed=4, drift=0.002)}
    book = portfolio.combine(symbols, {"A": 0.5, "B": 0.5}, ["buy_and_hold"])
    test = portfolio.tests_against_baselines(book, ["buy_and_hold"], reps=500, seed=0)["buy_and_hold"]
    assert test.excess_return > 0 and test.p_value < 0.01
    same = {s: f.assign(strategy_return=f["buy_and_hold_return"]) for s, f in symbols.items()}
    book = portfolio.combine(same, {"A": 0.5, "B": 0.5}, ["buy_and_hold"])
    test = portfolio.tests_against_baselines(book, ["buy_and_hold"], reps=500, seed=0)["buy_and_hold"]
    assert test.excess_return == 0 and test.p_value == 1.0
