"""The Book: one symbol or many is one path. Names, weights, caps, the storage string and the
file layout are decided here, once, and adding a symbol changes none of another's."""

from pathlib import Path

import pytest

from klinecast.book import (
    LAYOUT,
    Book,
    Layout,
    parse_storage,
    predictor_model_name,
    storage_string,
)
from klinecast.config import Params, params_from_mapping
from klinecast.errors import KlinecastError, ParamsError

TWO = params_from_mapping({"data": {"symbols": ["BTCUSDT", "ETHUSDT"]}})


def test_a_symbols_model_name_does_not_change_when_a_symbol_is_added():
    alone, book = Book(Params()), Book(TWO)
    assert alone.model_name("BTCUSDT") == book.model_name("BTCUSDT") == "klinecast-btcusdt-1h"
    assert book.model_name("ETHUSDT") == "klinecast-ethusdt-1h"
    assert alone.service_name == book.service_name == "klinecast"
    assert book.predictor_model_name("ETHUSDT") == predictor_model_name("klinecast", "ETHUSDT")
    assert predictor_model_name("klinecast", "ETHUSDT") == "klinecast-ethusdt"


def test_the_pattern_fills_in_the_interval_too():
    four = params_from_mapping(
        {
            "data": {"interval": "4h"},
            "features": {"indicators": ["rsi_14"], "min_history": 100},
            "publish": {"model_name": "research-{interval}-{symbol}"},
        }
    )
    assert Book(four).model_name("BTCUSDT") == "research-4h-btcusdt"


def test_one_symbol_of_several_is_narrowed_with_its_share_and_its_cap():
    params = params_from_mapping(
        {
            "data": {"symbols": ["BTCUSDT", "XRPUSDT"]},
            "trade": {"max_quantity": 0.01, "max_quantities": {"XRPUSDT": 5000}, "capital": 1000},
            "portfolio": {"weights": {"BTCUSDT": 0.75, "XRPUSDT": 0.25}},
        }
    )
    book = Book(params)
    assert book.weights == {"BTCUSDT": 0.75, "XRPUSDT": 0.25}
    xrp = book.for_symbol("XRPUSDT")
    assert xrp.data.symbols == ("XRPUSDT",) and xrp.data.symbol == "XRPUSDT"
    assert xrp.trade.max_quantity == 5000 and xrp.trade.max_quantities == {}
    assert xrp.trade.capital == 250 and xrp.portfolio.weights == {}
    assert book.for_symbol("BTCUSDT").trade.max_quantity == 0.01
    assert Book(xrp).model_name("XRPUSDT") == book.model_name("XRPUSDT")  # narrowing keeps names
    with pytest.raises(KlinecastError, match="SOLUSDT is not configured: data.symbols lists BTCUSDT, XRPUSDT"):
        book.for_symbol("SOLUSDT")
    with pytest.raises(KlinecastError, match="data.symbols lists BTCUSDT, XRPUSDT; this step works on one"):
        _ = params.data.symbol


def test_equal_weights_by_default_and_weight_zero_is_researched_not_traded():
    assert Book(TWO).weights == {"BTCUSDT": 0.5, "ETHUSDT": 0.5}
    assert Book(TWO).traded == ("BTCUSDT", "ETHUSDT")
    half = params_from_mapping(
        {
            "data": {"symbols": ["BTCUSDT", "ETHUSDT"]},
            "portfolio": {"weights": {"BTCUSDT": 1.0, "ETHUSDT": 0.0}},
        }
    )
    assert Book(half).traded == ("BTCUSDT",)


def test_caps_are_checked_against_the_books_symbols():
    with pytest.raises(
        ParamsError,
        match=r"trade.max_quantities: names SOLUSDT, not in data.symbols \(BTCUSDT, XRPUSDT\)",
    ):
        params_from_mapping(
            {"data": {"symbols": ["BTCUSDT", "XRPUSDT"]}, "trade": {"max_quantities": {"SOLUSDT": 30}}}
        )
    with pytest.raises(
        ParamsError,
        match=r"trade.max_quantities: XRPUSDT: expected a cap above 0 \(and, with capital 0, at "
        r"least quantity 0.001\), got 0.0001",
    ):
        params_from_mapping(
            {"data": {"symbols": ["BTCUSDT", "XRPUSDT"]}, "trade": {"max_quantities": {"XRPUSDT": 0.0001}}}
        )


def test_the_storage_string_is_built_and_read_in_one_place():
    uris = {"BTCUSDT": "s3://m/registry/klinecast-btcusdt-1h/versions/v1", "ETHUSDT": "/m/eth"}
    text = storage_string(uris)
    assert text == "BTCUSDT=s3://m/registry/klinecast-btcusdt-1h/versions/v1,ETHUSDT=/m/eth"
    assert parse_storage(text) == uris
    assert Book(TWO).storage_string(uris.__getitem__) == text
    for bad, why in [
        ("BTCUSDT=/a,BTCUSDT=/b", "named twice"),
        ("BTCUSDT=/a,/b", r"expected SYMBOL=URI"),
        ("btcusdt=/a", "expected an upper-case pair"),
        ("", r"expected SYMBOL=URI"),
    ]:
        with pytest.raises(ValueError, match=why):
            parse_storage(bad)
    with pytest.raises(ValueError, match="holds ','"):
        storage_string({"BTCUSDT": "s3://a,b"})


def test_the_layout_is_one_record_rooted_anywhere():
    files = LAYOUT.symbol("ETHUSDT")
    assert files.features == Path("data/ETHUSDT/features.parquet")
    assert files.best_params == Path("reports/symbols/ETHUSDT/tune/best_params.json")
    assert files.candidate == Path("models/ETHUSDT/candidate")
    assert LAYOUT.book.pool == Path("reports/pool.json")
    rooted = Layout(Path("/run/book")).symbol("ETHUSDT")
    assert rooted.features == Path("/run/book/data/ETHUSDT/features.parquet")
    assert Book(TWO).files("ETHUSDT") == files


def test_the_old_names_are_what_the_old_rule_gave():
    """`klinecast registry migrate` copies from these: one symbol was model_name itself."""
    assert Book(Params()).legacy_model_name("klinecast-btcusdt-1h", "BTCUSDT") == (
        "klinecast-btcusdt-1h"
    )
    assert Book(TWO).legacy_model_name("klinecast-1h", "ETHUSDT") == "klinecast-1h-ethusdt"
