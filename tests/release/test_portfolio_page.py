"""The book over several symbols: each symbol's gate decides what is traded, the portfolio has
its own gate, and a symbol whose outputs are missing is named."""

import json

import numpy as np
import pandas as pd
import pytest

from klinecast import atomic
from klinecast.book import Layout
from klinecast.config import params_from_mapping
from klinecast.errors import KlinecastError
from klinecast.release.portfolio_page import evaluate_book, render
from tests.support.model_fixtures import FIXTURE_BASELINES
from tests.support.model_fixtures import scorecard as metrics

PARAMS = params_from_mapping(
    {
        "data": {"symbols": ["BTCUSDT", "ETHUSDT"]},
        "backtest": {"bootstrap_reps": 300},
        "portfolio": {"weights": {"BTCUSDT": 0.6, "ETHUSDT": 0.4}},
    }
)


def write_symbol(reports, symbol, *, passed: bool, drift: float, seed: int, start="2022-01-01"):
    files = Layout(reports).symbol(symbol)
    rng = np.random.default_rng(seed)
    index = pd.date_range(start, "2022-05-31 23:00", freq="1h", tz="UTC")
    market = rng.normal(0, 0.01, len(index))
    predictions = pd.DataFrame({"strategy_return": market + drift}, index=index)
    for name in FIXTURE_BASELINES:
        predictions[f"{name}_return"] = market
    atomic.write_parquet(files.predictions, predictions)
    atomic.write_json(files.metrics, metrics().as_dict())
    atomic.write_json(files.receipt, {"gate": {"passed": passed}})
    later = start != "2022-01-01"
    atomic.write_json(
        files.best_params,
        {"data": {"first_usable_hour": f"{start}T00:00:00+00:00", "starts_later": later}},
    )


def test_only_symbols_whose_own_gate_passed_are_traded_and_the_book_has_its_gate(tmp_path):
    write_symbol(tmp_path, "BTCUSDT", passed=True, drift=0.002, seed=1)
    write_symbol(tmp_path, "ETHUSDT", passed=False, drift=0.002, seed=2, start="2022-02-01")
    book, returns = evaluate_book(PARAMS, Layout(tmp_path).symbol)
    assert book.traded == ("BTCUSDT",)
    assert [line.weight for line in book.symbols] == [0.6, 0.4]
    assert book.symbols[1].starts_later and not book.symbols[0].starts_later
    assert book.gate.passed  # both books add 0.2 % an hour to the same market
    assert set(book.tests) == set(FIXTURE_BASELINES)
    # January: ETHUSDT was not listed, so its 40 % waited in cash while BTCUSDT's 60 % compounded
    btc = pd.read_parquet(Layout(tmp_path).symbol("BTCUSDT").predictions).loc["2022-01"]
    january = returns.loc["2022-01"]
    book_equity = (1 + january["model"]).cumprod()
    assert np.allclose(book_equity, 0.6 * (1 + btc["strategy_return"]).cumprod() + 0.4, rtol=1e-12)
    page = render(book, returns)
    assert "The portfolio gate <b>passed</b>" in page and "<b>BTCUSDT</b>" in page
    assert "after in_sample_start: trained from its first usable hour" in page
    assert json.loads(json.dumps(book.as_dict()))["traded"] == ["BTCUSDT"]


def test_a_book_without_an_edge_is_refused_by_its_gate(tmp_path):
    write_symbol(tmp_path, "BTCUSDT", passed=True, drift=0.0, seed=1)
    write_symbol(tmp_path, "ETHUSDT", passed=True, drift=0.0, seed=2)
    book, _ = evaluate_book(PARAMS, Layout(tmp_path).symbol)
    assert not book.gate.passed
    assert "FAILED: largest p-value of 4 declared baselines" in " ".join(book.gate.reasons())


def test_a_symbol_without_outputs_is_named(tmp_path):
    write_symbol(tmp_path, "BTCUSDT", passed=True, drift=0.0, seed=1)
    with pytest.raises(
        KlinecastError,
        match=r"^ETHUSDT: .*symbols/ETHUSDT/predictions.parquet does not exist; run `dvc repro` "
        r"\(its evaluate and publish stages\) first$",
    ):
        evaluate_book(PARAMS, Layout(tmp_path).symbol)


def test_a_symbols_report_says_when_its_rows_start_after_the_in_sample_start(tmp_path):
    from klinecast.release import report

    tune = tmp_path / "tune"
    tune.mkdir()
    span = {"symbol": "ETHUSDT", "in_sample_start": "2018-01-01",
            "first_usable_hour": "2021-01-02T00:00:00+00:00", "starts_later": True}  # fmt: skip
    (tune / "best_params.json").write_text(json.dumps({"data": span}))
    found = report._data_span(tune / "trials.csv")
    assert found == span
    assert report._later_start(found) == (
        "<p class='warn'>ETHUSDT's rows start 2021-01-02 00:00, after split.in_sample_start "
        "2018-01-01 (listed later, or its features' warm-up): it was tuned and trained from its "
        "first usable hour.</p>"
    )
    assert report._later_start(span | {"starts_later": False}) == ""
    assert report._data_span(tmp_path / "elsewhere" / "trials.csv") is None


def test_a_pooled_models_report_says_so():
    from klinecast.release import report

    span = {"symbol": "ETHUSDT", "pooled": ["BTCUSDT", "ETHUSDT"], "starts_later": False}
    assert report._pooled(span) == (
        "<p class='note'>A pooled model: one booster fitted on the rows of BTCUSDT, ETHUSDT, "
        "traded here by ETHUSDT's copy of the rule. Its study maximised the book's objective, so "
        "the in-sample column is the book's (the symbols at their weights); the out-of-sample "
        "column is this symbol's own.</p>"
    )
    assert report._pooled(span | {"pooled": None}) == "" and report._pooled(None) == ""
