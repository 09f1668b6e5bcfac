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


def test_the_book_splits_its_capital_once_and_a_missing_hour_is_flat():
    """Never rebalanced: the book's equity is the weighted sum of the sleeves' equities, and an
    hour's return weighs each symbol by its sleeve's share of the book at the hour's start."""
    btc = frame("2022-01-01", 48, seed=1)
    eth = frame("2022-01-02", 24, seed=2)  # listed a day later
    book = portfolio.combine({"BTC": btc, "ETH": eth}, {"BTC": 0.25, "ETH": 0.75}, ["buy_and_hold"])
    assert len(book) == 48 and list(book.columns) == ["model", "buy_and_hold"]
    for column, source in (("model", "strategy_return"), ("buy_and_hold", "buy_and_hold_return")):
        sleeves = 0.25 * (1 + btc[source]).cumprod() + 0.75 * (1 + eth[source]).cumprod().reindex(
            book.index
        ).fillna(1.0)  # ETH's sleeve waits in cash for its listing
        assert np.allclose((1 + book[column]).cumprod(), sleeves, rtol=1e-12)
    # the second day's first hour by hand: BTC's sleeve has grown, ETH's has not
    grown = 0.25 * (1 + btc["strategy_return"].iloc[:24]).prod()
    hour = book.index[24]
    by_hand = (grown * btc.loc[hour, "strategy_return"] + 0.75 * eth.loc[hour, "strategy_return"]) / (
        grown + 0.75
    )
    assert book.loc[hour, "model"] == pytest.approx(by_hand, rel=1e-12)


def test_a_book_of_one_is_its_symbol_exactly():
    btc = frame("2022-01-01", 100, seed=5)
    book = portfolio.combine({"BTC": btc}, {"BTC": 1.0}, ["buy_and_hold"])
    assert (book["model"].to_numpy() == btc["strategy_return"].to_numpy()).all()


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
