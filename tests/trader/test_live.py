"""The trader as the CronJob assembles it from params."""

import dataclasses

import pytest

from klinecast.config import Params
from klinecast.errors import KlinecastError
from klinecast.trader import live
from klinecast.trader.brokers import BinanceTestnetBroker, PaperBroker


def params(tmp_path, broker: str) -> Params:
    base = Params()
    trade = dataclasses.replace(base.trade, broker=broker, ledger=f"sqlite:///{tmp_path}/l.db")
    return dataclasses.replace(base, trade=trade)


def test_the_paper_broker_needs_no_keys(tmp_path, monkeypatch):
    monkeypatch.delenv(live.KEY_ENV, raising=False)
    trader = live.trader(params(tmp_path, "paper"))
    assert isinstance(trader.broker, PaperBroker)


def test_testnet_without_keys_is_refused_naming_both_variables(tmp_path, monkeypatch):
    monkeypatch.delenv(live.KEY_ENV, raising=False)
    monkeypatch.setenv(live.SECRET_ENV, "s")
    with pytest.raises(KlinecastError, match=r"\$BINANCE_API_KEY and \$BINANCE_API_SECRET"):
        live.trader(params(tmp_path, "testnet"))


def test_testnet_with_keys_trades_through_binance(tmp_path, monkeypatch):
    monkeypatch.setenv(live.KEY_ENV, "k")
    monkeypatch.setenv(live.SECRET_ENV, "s")
    assert isinstance(live.trader(params(tmp_path, "testnet")).broker, BinanceTestnetBroker)
