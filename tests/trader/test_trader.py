"""`klinecast trade once` against real local servers: the KServe model servers, a Binance REST
endpoint speaking the wire format (over the mirror's candles), SQLite and PostgreSQL ledgers."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from klinecast.cli import main
from klinecast.release import registry
from klinecast.retries import RetrySettings
from klinecast.serving.offline import offline_probabilities
from klinecast.trader.ledger import Ledger
from tests.support.binance_server import API_KEY, API_SECRET, BinanceServer
from tests.support.helpers import (
    NAME,
    RULE,
    drop_ledger,
    free_port,
    offline_book,
    table,
    write_params,
)

pytestmark = pytest.mark.integration
BIN = Path(sys.executable).parent
NOW = "2021-12-01T05:01:00Z"  # trades the candle that opened at 04:00
HOUR = pd.Timestamp("2021-12-01 04:00", tz="UTC")


@pytest.fixture()
def exchange(mirror_candles):
    with BinanceServer(mirror_candles.loc[:"2021-12-31 23:00"]) as server:
        yield server


@pytest.fixture(params=["sqlite"])
def trader_env(request, tmp_path, serving, exchange, monkeypatch):
    """params.yaml for the testnet broker, and the environment a CronJob pod would have."""
    params = write_params(  # candles: these servers have no online store
        tmp_path / "params.yaml",
        {"publish": {"service_name": NAME}, "trade": {"broker": "testnet", "request": "candles"}},
    )
    ledger = f"sqlite:///{tmp_path}/ledger.db"
    if request.param == "postgresql":
        ledger = request.getfixturevalue("postgres")
        drop_ledger(ledger)
    env = {
        "KLINECAST_LEDGER_URL": ledger,
        "KLINECAST_INFERENCE_URL": serving.transformer_url,
        "KLINECAST_BINANCE_URL": exchange.url,
        "BINANCE_API_KEY": API_KEY,
        "BINANCE_API_SECRET": API_SECRET,
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return {"params": params, "ledger": ledger, "env": env}


def trade(env, *argv, now=NOW) -> int:
    return main(["trade", *argv, "--params", str(env["params"]), "--now", now])


@pytest.mark.parametrize("trader_env", ["sqlite", "postgresql"], indirect=True)
def test_one_cycle_trades_and_a_second_run_in_the_hour_sends_nothing(trader_env, exchange, capsys):
    assert trade(trader_env, "once") == 0
    out = capsys.readouterr().out
    assert "hour 2021-12-01 04:00 UTC: traded" in out
    (prediction,) = table(trader_env["ledger"], "predictions")
    assert prediction["status"] == "traded" and 0 <= prediction["prob_up"] <= 1
    target = prediction["target"]
    orders = table(trader_env["ledger"], "orders")
    assert len(orders) == (1 if target else 0) == exchange.order_posts()
    if target:
        assert orders[0]["client_order_id"] == "kc-BTCUSDT-2021120104-open"
        assert orders[0]["status"] == "filled" and orders[0]["fee"] > 0
    assert trade(trader_env, "once") == 0  # the same hour again
    assert "already_traded" in capsys.readouterr().out
    assert exchange.order_posts() == len(orders)
    assert len(table(trader_env["ledger"], "predictions")) == 1


def test_inference_down_means_no_trade_and_the_reason_is_recorded(trader_env, exchange, capsys):
    os.environ["KLINECAST_INFERENCE_URL"] = f"http://127.0.0.1:{free_port()}"
    assert trade(trader_env, "once") == 1
    assert "no_trade" in capsys.readouterr().out
    (prediction,) = table(trader_env["ledger"], "predictions")
    assert prediction["status"] == "no_trade" and "unreachable" in prediction["reason"]
    assert exchange.order_posts() == 0


def test_a_bad_inference_answer_means_no_trade(trader_env, exchange):
    os.environ["KLINECAST_INFERENCE_URL"] = exchange.url  # answers 404 with a Binance body
    assert trade(trader_env, "once") == 1
    (prediction,) = table(trader_env["ledger"], "predictions")
    assert "answered HTTP 404" in prediction["reason"]
    assert exchange.order_posts() == 0


def test_exchange_5xx_is_retried_then_succeeds(trader_env, exchange):
    exchange.fail_next = 2
    assert trade(trader_env, "once") == 0
    assert ("GET", "/api/v3/klines") in exchange.calls


def test_exchange_down_fails_loudly_and_a_later_run_trades_once(trader_env, exchange, capsys):
    exchange.fail_next = 100
    assert trade(trader_env, "once") == 1
    out = capsys.readouterr().out  # the cycle's line, and its row, say what failed
    assert "failed (filters)" in out and "failed 4 times; last: HTTP 503" in out
    (failed,) = table(trader_env["ledger"], "predictions")
    assert failed["status"] == "failed" and "HTTP 503" in failed["reason"]
    exchange.fail_next = 0
    assert trade(trader_env, "once") == 0
    assert exchange.order_posts() == len(table(trader_env["ledger"], "orders"))


def until_an_order_is_sent(env, exchange) -> int:
    """trade once hour after hour from NOW until an order is attempted; its exit code."""
    for hour in pd.date_range(HOUR, periods=24, freq="h"):
        code = trade(env, "once", now=f"{hour + pd.Timedelta(minutes=61):%Y-%m-%dT%H:%M}Z")
        if code != 0 or exchange.order_posts():
            return code
    pytest.fail("the model stayed flat for 24 hours")


def test_insufficient_balance_fails_at_once_with_binances_message(trader_env, exchange, capsys):
    exchange.insufficient_balance = True
    assert until_an_order_is_sent(trader_env, exchange) == 1
    assert exchange.order_posts() == 1  # a -2010 is not retried
    out = capsys.readouterr().out
    assert "failed (refusal)" in out and "Binance error -2010: Account has insufficient balance" in out
    (order,) = table(trader_env["ledger"], "orders")
    # what failed is on record; no position change was recorded
    assert order["status"] == "rejected" and order["error_code"] == -2010
    assert "insufficient balance" in order["error_message"] and order["may_exist"] in (0, False)
    assert table(trader_env["ledger"], "positions") == []


def test_wrong_keys_are_refused_without_logging_them(trader_env, exchange, capsys, monkeypatch):
    monkeypatch.setenv("BINANCE_API_SECRET", "not-the-secret")
    assert until_an_order_is_sent(trader_env, exchange) == 1
    captured = capsys.readouterr()
    # the signed read of the account (reconciling first) is refused: nothing is sent
    assert "Binance error -1022: Signature for this request is not valid" in captured.out
    assert "not-the-secret" not in captured.out + captured.err
    assert API_KEY not in captured.out + captured.err
    assert exchange.orders == {}


def test_a_timeout_is_retried(trader_env, exchange):
    from klinecast.data import market as binance

    exchange.delay_s = 1.0
    client = binance.client(url=exchange.url, retry=RetrySettings(timeout_s=0.3))
    quick = RetrySettings(attempts=2, backoff_s=0.01, timeout_s=0.3)
    with pytest.raises(binance.ExchangeError, match="failed 2 times; last: ReadTimeout"):
        binance.closed_candles(
            client, symbol="BTCUSDT", interval="1h", until=HOUR, count=10, retry=quick
        )


def test_database_down_sends_nothing(trader_env, exchange, capsys):
    os.environ["KLINECAST_LEDGER_URL"] = f"postgresql://postgres:pw@127.0.0.1:{free_port()}/x"
    assert trade(trader_env, "once") == 1
    err = capsys.readouterr().err
    assert "is unavailable" in err and ":pw@" not in err
    assert exchange.calls == []


def test_killed_between_order_and_ledger_write_then_rerun(trader_env, exchange):
    """SIGKILL while the exchange holds back the answer to a booked order."""
    exchange.hang_after_order_s = 30
    env = {**os.environ, **trader_env["env"], "PATH": f"{BIN}:{os.environ['PATH']}"}
    argv = ["klinecast", "trade", "once", "--params", str(trader_env["params"]), "--now"]
    # an hour the model trades in (flat hours send no order): find one first
    for hour in pd.date_range("2021-12-01 04:00", periods=24, freq="h", tz="UTC"):
        process = subprocess.Popen(
            [*argv, f"{hour + pd.Timedelta(minutes=61):%Y-%m-%dT%H:%M}Z"], env=env
        )
        deadline = time.monotonic() + 60
        while process.poll() is None and not exchange.orders and time.monotonic() < deadline:
            time.sleep(0.05)
        if exchange.orders:
            break
    assert exchange.orders, "the model stayed flat for 24 hours"
    process.send_signal(signal.SIGKILL)
    process.wait()
    (client_id,) = exchange.orders
    (intent,) = [
        o for o in table(trader_env["ledger"], "orders") if o["client_order_id"] == client_id
    ]
    assert intent["status"] == "intent"  # the crash lost the fill, not the intent
    exchange.hang_after_order_s = 0
    rerun = subprocess.run([*argv, f"{hour + pd.Timedelta(minutes=61):%Y-%m-%dT%H:%M}Z"], env=env)
    assert rerun.returncode == 0
    assert exchange.order_posts() == 1  # reconciled by client order id, not sent again
    (order,) = [
        o for o in table(trader_env["ledger"], "orders") if o["client_order_id"] == client_id
    ]
    assert order["status"] == "filled" and order["exchange_order_id"] == "1"
    (position,) = table(trader_env["ledger"], "positions")
    # a BUY's commission is taken in BTC (Binance's default): the account holds 0.000999
    assert position["qty"] == pytest.approx(0.000999 if order["side"] == "BUY" else -0.001)


def test_kill_switch_halts_flattens_and_resume_clears_it(trader_env, exchange, capsys):
    ledger = Ledger(trader_env["ledger"])
    ledger.migrate()
    from klinecast.trader.tables import equity

    with ledger.engine.begin() as c:  # an earlier run lost 30 %
        c.execute(
            equity.insert().values(
                hour=HOUR - pd.Timedelta(hours=5), symbol="BTCUSDT", equity=0.7, buy_and_hold=1.0
            )
        )
    assert trade(trader_env, "once") == 3  # halted: a CronJob sees a failure
    out = capsys.readouterr().out
    assert "halted" in out and "-30.00% fell below -20.00%" in out
    assert exchange.order_posts() == 0  # flat already: nothing to close
    assert trade(trader_env, "once", now="2021-12-01T06:01:00Z") == 3
    assert "halted" in capsys.readouterr().out
    resume = ["trade", "resume", "--params", str(trader_env["params"])]
    assert main([*resume, "--by", "alice", "--note", "reviewed the losses"]) == 0
    assert "cleared by alice" in capsys.readouterr().out
    (halt,) = table(trader_env["ledger"], "halts")
    assert halt["resumed_by"] == "alice" and "reviewed the losses" in halt["decision"]
    assert halt["equity_base"] == pytest.approx(0.7) and halt["resumed_at"] is not None
    # the equity stays 0.7; the next cycle measures from it and trades
    assert trade(trader_env, "once", now="2021-12-01T07:01:00Z") == 0
    assert "traded" in capsys.readouterr().out


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_ledger_schema_migrates_once_and_keeps_rows(backend, tmp_path, postgres):
    url = f"sqlite:///{tmp_path}/l.db" if backend == "sqlite" else postgres
    drop_ledger(url)
    ledger = Ledger(url)
    assert ledger.migrate() == "0005"
    ledger.record_prediction(
        HOUR.to_pydatetime(), symbol="BTCUSDT", prob_up=0.7, target=1, status="traded"
    )
    assert ledger.migrate() == "0005"  # again: nothing recreated, nothing lost
    assert ledger.prediction(HOUR.to_pydatetime(), "BTCUSDT")["prob_up"] == 0.7
    rows = table(url, "prediction_outcomes")
    assert rows[0]["prob_up"] == 0.7 and rows[0]["actual_up"] is None


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_a_single_symbol_ledger_is_migrated_to_several_symbols_with_nothing_lost(
    backend, tmp_path, postgres
):
    import sqlalchemy as sa

    from klinecast.trader import schema

    url = f"sqlite:///{tmp_path}/l.db" if backend == "sqlite" else postgres
    drop_ledger(url)
    engine = sa.create_engine(url)
    assert schema.upgrade(engine, "0002") == "0002"  # the ledger the one-symbol trader kept
    hours = [HOUR - pd.Timedelta(hours=h) for h in (2, 1)]
    utc = sa.DateTime(timezone=True)  # the columns of 0002, typed as its code wrote them
    predictions = sa.table("predictions", sa.column("hour", utc), sa.column("symbol"),
                           sa.column("prob_up"), sa.column("target"), sa.column("status"),
                           sa.column("created_at", utc))  # fmt: skip
    outcomes = sa.table("outcomes", *(sa.column(n) for n in (
        "close", "next_close", "actual_up", "target", "correct", "strategy_return",
        "market_return")), sa.column("hour", utc))  # fmt: skip
    equity = sa.table("equity", sa.column("hour", utc), sa.column("equity"),
                      sa.column("buy_and_hold"))  # fmt: skip
    halts = sa.table("halts", sa.column("symbol"), sa.column("kind"), sa.column("reason"),
                     sa.column("halted_at", utc))  # fmt: skip
    with engine.begin() as c:  # its rows (no symbol on outcomes and equity)
        for hour, ret in zip(hours, (0.01, -0.02), strict=True):
            at = hour.to_pydatetime()
            c.execute(predictions.insert().values(hour=at, symbol="ETHUSDT", prob_up=0.6,
                                                  target=1, status="traded", created_at=at))
            c.execute(outcomes.insert().values(hour=at, close=1, next_close=1, actual_up=True,
                                               target=1, correct=True, strategy_return=ret,
                                               market_return=ret))  # fmt: skip
            c.execute(equity.insert().values(hour=at, equity=1 + ret, buy_and_hold=1))
        c.execute(halts.insert().values(symbol="ETHUSDT", kind="kill_switch", reason="test",
                                        halted_at=HOUR.to_pydatetime()))  # fmt: skip
    engine.dispose()
    ledger = Ledger(url)
    assert ledger.migrate() == "0005"
    assert [r["strategy_return"] for r in ledger.outcomes("ETHUSDT")] == [0.01, -0.02]
    assert ledger.last_equity("ETHUSDT") == (0.98, 1.0)
    assert [r["hour"] for r in ledger.traded_predictions("ETHUSDT")] == [h.to_pydatetime() for h in hours]
    assert ledger.open_halt("ETHUSDT").reason == "test"
    # a second symbol at the same hours now has rows of its own
    ledger.record_prediction(hours[0].to_pydatetime(), symbol="BTCUSDT", target=0, status="traded")
    assert ledger.prediction(hours[0].to_pydatetime(), "ETHUSDT")["prob_up"] == 0.6
    rows = table(url, "prediction_outcomes")
    assert sorted((r["symbol"], r["strategy_return"]) for r in rows) == [
        ("BTCUSDT", None), ("ETHUSDT", -0.02), ("ETHUSDT", 0.01),
    ]  # fmt: skip


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_a_ledger_of_0003_gets_the_exchange_rules_columns_with_nothing_lost(
    backend, tmp_path, postgres
):
    """0003 -> 0004: a filled order's executed quantity is its quantity, every prediction its
    hour's first attempt, every position without dust; the hour's record can then be
    corrected by a later attempt, and the view shows the newest."""
    import sqlalchemy as sa

    from klinecast.trader import schema

    url = f"sqlite:///{tmp_path}/l.db" if backend == "sqlite" else postgres
    drop_ledger(url)
    engine = sa.create_engine(url)
    assert schema.upgrade(engine, "0003") == "0003"
    utc = sa.DateTime(timezone=True)  # the columns of 0003, typed as its code wrote them
    at = HOUR.to_pydatetime()
    predictions = sa.table("predictions", sa.column("hour", utc), sa.column("symbol"),
                           sa.column("target"), sa.column("status"), sa.column("reason"),
                           sa.column("created_at", utc))  # fmt: skip
    orders = sa.table("orders", *(sa.column(n) for n in ("client_order_id", "leg", "symbol",
                      "side", "qty", "status", "fill_price", "fee")), sa.column("hour", utc),
                      sa.column("created_at", utc), sa.column("updated_at", utc))  # fmt: skip
    positions = sa.table("positions", sa.column("symbol"), sa.column("qty"), sa.column("hour", utc))
    with engine.begin() as c:
        c.execute(predictions.insert().values(hour=at, symbol="BTCUSDT", target=0,
                                              status="no_trade", reason="model down",
                                              created_at=at))  # fmt: skip
        for cid, status in (("kc-BTCUSDT-2021120104-open", "filled"),
                            ("kc-BTCUSDT-2021120105-open", "intent")):  # fmt: skip
            c.execute(orders.insert().values(client_order_id=cid, hour=at, leg="open",
                                             symbol="BTCUSDT", side="BUY", qty=0.001,
                                             status=status, created_at=at, updated_at=at))  # fmt: skip
        c.execute(positions.insert().values(symbol="BTCUSDT", qty=0.001, hour=at))
    engine.dispose()
    ledger = Ledger(url)
    assert ledger.migrate() == "0005"
    filled, intent = sorted(ledger.orders(), key=lambda o: o.client_order_id)
    assert (filled.status, filled.executed_qty, filled.exchange_status) == ("filled", 0.001, "FILLED")
    assert (intent.status, intent.executed_qty) == ("intent", 0.0)
    assert ledger.holding("BTCUSDT") == (0.001, 0.0)
    (record,) = ledger.hour_records("BTCUSDT")
    assert (record["attempt"], record["status"], record["reason"]) == (1, "no_trade", "model down")
    ledger.record_prediction(at, symbol="BTCUSDT", prob_up=0.7, target=1, status="traded")
    rows = sorted(table(url, "predictions"), key=lambda r: r["attempt"])
    assert [(r["attempt"], r["status"], r["corrects"]) for r in rows] == [
        (1, "no_trade", None), (2, "traded", 1),
    ]  # fmt: skip
    (shown,) = table(url, "prediction_outcomes")
    assert shown["status"] == "traded" and shown["prob_up"] == 0.7


def test_replay_equals_the_offline_backtest(
    trader_env, serving, artifact, mirror_candles, tmp_path, capsys
):
    candles_path = tmp_path / "candles.parquet"
    history = mirror_candles.loc[:"2021-12-31 23:00"]
    history.to_parquet(candles_path)
    ledger = f"sqlite:///{tmp_path}/replay.db"
    argv = [
        "trade",
        "replay",
        "--params",
        str(trader_env["params"]),
        "--candles",
        str(candles_path),
    ]
    assert main([*argv, "--start", "2021-12-01", "--end", "2021-12-03", "--ledger", ledger]) == 0
    assert "72 hours, 72 traded" in capsys.readouterr().out

    predictions = pd.DataFrame(table(ledger, "predictions")).set_index("hour").sort_index()
    hours = pd.DatetimeIndex(pd.to_datetime(predictions.index, utc=True))
    # the backtest's one pass of the model's rule (RULE: hysteresis, minimum hold, cadence) over
    # the hours, against the trader's hour-by-hour decisions with its ledger's book; the
    # backtest's book holds on after the last hour, as the trader's does (offline_book)
    assert registry.read_artifact_metadata(artifact).rule == RULE
    proba, position, returns = offline_book(history, artifact, hours)
    np.testing.assert_allclose(predictions["prob_up"].to_numpy(), proba, atol=1e-6)
    assert (predictions["target"].to_numpy() == position).all()
    assert len(set(position)) == 3 and (np.diff(position) != 0).sum() > 3  # the rule is exercised
    backtest = np.cumprod(1.0 + returns)
    curve = pd.DataFrame(table(ledger, "equity")).sort_values("hour")["equity"].to_numpy()
    np.testing.assert_allclose(curve, backtest, rtol=1e-12)
    assert len(table(ledger, "orders")) == np.count_nonzero(np.diff(position, prepend=0)) + sum(
        1 for a, b in zip(np.r_[0, position[:-1]], position, strict=True) if a * b < 0
    )  # one order per change, two per flip


def test_the_trader_asks_by_symbol_by_default(
    artifact, exchange, online_settings, tmp_path, monkeypatch, capsys
):
    """The online store synced from the exchange, servers that read it, and a paper hour."""
    from klinecast.config import Params
    from klinecast.serving import feature_sync
    from klinecast.serving.local import LocalServing

    now = pd.Timestamp(NOW)
    source = feature_sync.binance_source(exchange.url)
    assert (
        feature_sync.sync(Params(), settings=online_settings, source=source, now=now).written == 1
    )
    params = write_params(tmp_path / "params.yaml", {"publish": {"service_name": NAME}})
    ledger = f"sqlite:///{tmp_path}/ledger.db"
    with LocalServing(
        NAME, str(artifact), free_port(), free_port(), log_dir=tmp_path / "logs",
        online=online_settings, now=NOW,
    ) as local:  # fmt: skip
        for key, value in {
            "KLINECAST_LEDGER_URL": ledger,
            "KLINECAST_INFERENCE_URL": local.transformer_url,
            "KLINECAST_BINANCE_URL": exchange.url,
        }.items():
            monkeypatch.setenv(key, value)
        assert main(["trade", "once", "--params", str(params), "--now", NOW]) == 0
    assert "hour 2021-12-01 04:00 UTC: traded" in capsys.readouterr().out
    (prediction,) = table(ledger, "predictions")
    assert prediction["feature_time"] == "2021-12-01T05:00:00+00:00"
    history = exchange.candles.loc[:HOUR]
    expected = offline_probabilities(history, artifact).loc[HOUR]
    assert prediction["prob_up"] == pytest.approx(expected, abs=1e-6)  # the store's features


def test_readmes_offline_paper_hour(
    artifact, mirror_server, online_settings, tmp_path, monkeypatch, capsys
):
    """README's "Run it locally (paper)": sync the store from the mirror's archives, serve with
    the clock at a past hour, and trade that hour by symbol with the market from a candle file."""
    import datetime as dt

    from klinecast.config import DataParams
    from klinecast.data.build import build_candles
    from klinecast.serving.local import LocalServing
    from tests.support.paths import MIRROR_MONTHLY

    params = write_params(
        tmp_path / "params.yaml",
        {
            "publish": {"service_name": NAME},
            "online": {
                "redis": online_settings.redis,
                "registry": online_settings.registry,
                "project": online_settings.project,
            },
        },
    )
    candles, _ = build_candles(MIRROR_MONTHLY, DataParams(end=dt.date(2022, 5, 31)))
    candles.to_parquet(tmp_path / "candles.parquet")
    sync = ["features", "sync", "--params", str(params), "--base-url", mirror_server.url]
    sync += ["--archive-cache", str(tmp_path / "archives"), "--now", "2022-06-01T00:05:00Z"]
    assert main(sync) == 0
    ledger = f"sqlite:///{tmp_path}/ledger.db"
    with LocalServing(
        NAME, str(artifact), free_port(), free_port(), log_dir=tmp_path / "logs",
        online=online_settings, now="2022-06-01T00:10:00Z",
    ) as local:  # fmt: skip
        monkeypatch.setenv("KLINECAST_INFERENCE_URL", local.transformer_url)
        monkeypatch.setenv("KLINECAST_LEDGER_URL", ledger)
        argv = ["trade", "once", "--params", str(params), "--now", "2022-06-01T00:10:00Z"]
        assert main([*argv, "--candles", str(tmp_path / "candles.parquet")]) == 0
    out = capsys.readouterr().out
    assert "hour 2022-05-31 23:00 UTC: traded" in out
    (prediction,) = table(ledger, "predictions")
    assert prediction["feature_time"] == "2022-06-01T00:00:00+00:00"  # the store's newest row
    expected = offline_probabilities(candles, artifact).iloc[-1]
    assert prediction["prob_up"] == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_a_ledger_of_the_earlier_schema_is_upgraded_in_place(backend, tmp_path, postgres):
    """A ledger klinecast's own migration table made (schema_version 1), with a kill switch
    held in its state table: Alembic takes it over, every row stays, the halt moves to halts."""
    import sqlalchemy as sa
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    from klinecast.trader import schema
    from klinecast.trader.tables import state

    url = f"sqlite:///{tmp_path}/old.db" if backend == "sqlite" else postgres
    drop_ledger(url)
    engine = sa.create_engine(url)
    config = Config()
    config.set_main_option("script_location", str(schema.MIGRATIONS))
    scripts = ScriptDirectory.from_config(config)
    from alembic.runtime.environment import EnvironmentContext

    with engine.begin() as connection:  # the old code's tables: revision 0001's
        with EnvironmentContext(
            config, scripts, fn=lambda rev, ctx: scripts._upgrade_revs("0001", rev),
            destination_rev="0001",
        ) as env:  # fmt: skip
            env.configure(
                connection=connection, target_metadata=None, version_table=schema.VERSION_TABLE
            )
            env.run_migrations()
        connection.execute(sa.text(f"DROP TABLE {schema.VERSION_TABLE}"))
        connection.execute(sa.text("CREATE TABLE schema_version (version INTEGER PRIMARY KEY)"))
        connection.execute(sa.text("INSERT INTO schema_version VALUES (1)"))
        utc = sa.DateTime(timezone=True)  # revision 0001's table, as its code wrote it
        predictions = sa.table("predictions", sa.column("hour", utc), sa.column("symbol"),
                               sa.column("prob_up"), sa.column("target"), sa.column("status"),
                               sa.column("created_at", utc))  # fmt: skip
        connection.execute(
            predictions.insert().values(
                hour=HOUR.to_pydatetime(),
                symbol="BTCUSDT",
                prob_up=0.7,
                target=1,
                status="traded",
                created_at=HOUR.to_pydatetime(),
            )  # fmt: skip
        )
        connection.execute(
            state.insert().values(
                key="halted",
                value="cumulative return -25% fell below -20%",
                updated_at=HOUR.to_pydatetime(),
            )  # fmt: skip
        )
    ledger = Ledger(url)
    assert ledger.migrate() == "0005"
    assert ledger.prediction(HOUR.to_pydatetime(), "BTCUSDT")["prob_up"] == 0.7
    halt = ledger.open_halt("BTCUSDT")
    assert halt.kind == "kill_switch" and "-25%" in halt.reason
    assert ledger.get_state("halted") is None
    assert ledger.migrate() == "0005"
    engine.dispose()
