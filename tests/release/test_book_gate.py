"""Publishing a book: each symbol's production moves only past its gate among the book's
(Holm's step-down over the symbols' largest p-values), and publishing the same bytes again
adds no version."""

import json

import pytest
import xgboost as xgb

from klinecast.book import Layout
from klinecast.cli import main
from klinecast.release import registry
from tests.support.helpers import write_params
from tests.support.model_fixtures import scorecard, small_metadata

SYMBOLS = ["BTCUSDT", "ETHUSDT", "XRPUSDT"]
OPEN = {"min_splits": 0, "min_features_used": 0, "min_trades": 0}


@pytest.fixture()
def book(tmp_path):
    """Three symbols' trained artifacts in a checkout, and params.yaml of the book."""
    params = write_params(
        tmp_path / "params.yaml",
        {"data": {"symbols": SYMBOLS}, "publish": {"registry": str(tmp_path / "registry"), **OPEN}},
    )
    return tmp_path, params


def train(root, symbol: str, p_value: float, *, trees: int = 2):
    booster = xgb.train(
        {"objective": "binary:logistic"}, xgb.DMatrix([[0.0], [1.0]], label=[0, 1]), trees
    )
    metadata = small_metadata(
        model_name=f"klinecast-{symbol.lower()}-1h", symbol=symbol,
        metrics=scorecard(excess=0.1, p_value=p_value),
    )  # fmt: skip
    registry.write_artifact(Layout(root).symbol(symbol).candidate, booster, metadata)


def publish_all(root, params) -> dict:
    assert main(["publish", "--params", str(params), "--root", str(root)]) == 0
    return {
        s: json.loads(Layout(root).symbol(s).receipt.read_text()) for s in SYMBOLS
    }  # fmt: skip


def test_alone_each_would_pass_but_the_book_holds_them_to_holm(book):
    root, params = book
    # each below 0.05 alone; Holm asks 0.05/3, 0.05/2, 0.05/1 of the sorted p-values
    for symbol, p in zip(SYMBOLS, (0.010, 0.030, 0.040), strict=True):
        train(root, symbol, p)
    receipts = publish_all(root, params)
    assert [receipts[s]["promoted"] for s in SYMBOLS] == [True, False, False]
    book_condition = {
        s: next(c for c in r["gate"]["conditions"] if c["name"] == "book_multiplicity")
        for s, r in receipts.items()
    }
    assert book_condition["BTCUSDT"]["held"] and "held to 0.05 / 3 = 0.0167" in (
        book_condition["BTCUSDT"]["detail"]
    )
    assert not book_condition["ETHUSDT"]["held"]  # 0.030 > 0.05 / 2
    own = [c for c in receipts["ETHUSDT"]["gate"]["conditions"] if c["name"] == "p_value"]
    assert own[0]["held"]  # its own p-value condition held: only the book's refused it
    store = registry.open_store(str(root / "registry"))
    assert registry.production(store, "klinecast-ethusdt-1h") is None


def test_a_book_of_one_is_its_own_gate(tmp_path):
    params = write_params(
        tmp_path / "params.yaml", {"publish": {"registry": str(tmp_path / "registry"), **OPEN}}
    )
    train(tmp_path, "BTCUSDT", 0.04)
    assert main(["publish", "--params", str(params), "--root", str(tmp_path)]) == 0
    receipt = json.loads(Layout(tmp_path).symbol("BTCUSDT").receipt.read_text())
    assert receipt["promoted"]  # 0.04 <= 0.05 / 1


def test_publishing_the_same_bytes_again_adds_no_version(book):
    root, params = book
    for symbol in SYMBOLS:
        train(root, symbol, 0.001)
    first = publish_all(root, params)
    again = publish_all(root, params)
    assert {s: r["version"] for s, r in again.items()} == {s: r["version"] for s, r in first.items()}
    store = registry.open_store(str(root / "registry"))
    assert registry.versions(store, "klinecast-btcusdt-1h") == [first["BTCUSDT"]["version"]]
    train(root, "BTCUSDT", 0.001, trees=3)  # a new model: a new version
    assert publish_all(root, params)["BTCUSDT"]["version"] != first["BTCUSDT"]["version"]


def test_the_book_needs_every_symbols_model(book, capsys):
    root, params = book
    train(root, "BTCUSDT", 0.001)
    argv = ["publish", "--params", str(params), "--root", str(root), "--symbol", "BTCUSDT"]
    assert main(argv) == 1
    assert "models/ETHUSDT/candidate does not exist; run `klinecast train --symbol ETHUSDT`" in (
        capsys.readouterr().err
    )
