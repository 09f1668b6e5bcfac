"""Live monitoring: PSI, the retrain rule and its cooldown, outputs, and the trigger targets.

PSI, the retrain rule and its cooldown (parametrized), the outputs (the Prometheus file is
parsed back), stuck intents, halts and reconcile differences reported, drift on real feature
rows, and the triggers against a local GitLab trigger endpoint, the local KFP API endpoint and a
real command.
"""

import base64
import datetime as dt
import json
import re
import struct
import sys
from urllib.parse import parse_qs

import numpy as np
import pandas as pd
import pytest
from prometheus_client.parser import text_string_to_metric_families

from klinecast.cli import main
from klinecast.config import Params, TradeParams
from klinecast.errors import KlinecastError
from klinecast.monitor import health as monitoring
from klinecast.platform import retrain
from klinecast.trader.ledger import Ledger
from tests.support.helpers import write_params
from tests.support.kfp_api_server import KfpApiServer
from tests.support.local_http import JsonHandler, LocalServer

START = pd.Timestamp("2021-12-01", tz="UTC")


def test_psi_is_small_for_the_same_distribution_and_large_for_a_shift():
    rng = np.random.default_rng(0)
    reference = rng.normal(size=5000)
    assert monitoring.psi(reference, rng.normal(size=2000)) < 0.02
    assert monitoring.psi(reference, rng.normal(loc=1.0, size=2000)) > 0.25
    assert np.isnan(monitoring.psi(reference[:5], reference))


def health(correct_of_last_24: int, trades: int = 30) -> monitoring.Health:
    last_24 = [True] * correct_of_last_24 + [False] * (24 - correct_of_last_24)
    correct = ([True] * 30 + last_24)[-trades:]
    outcomes = pd.DataFrame(
        {"target": 1, "correct": correct, "strategy_return": 0.001, "market_return": 0.0}
    )
    return monitoring.health(outcomes, monitoring.NO_DRIFT, TradeParams())


@pytest.mark.parametrize(
    ("correct", "trades", "last_hours_ago", "fires"),
    [
        (14, 30, None, True),  # 58 % < 60 %
        (15, 30, None, False),  # 62.5 %
        (14, 20, None, False),  # fewer trades than the window
        (14, 30, 5, False),  # in the cooldown
        (14, 30, 25, True),  # the cooldown is over
    ],
)
def test_retrain_rule_and_cooldown(correct, trades, last_hours_ago, fires):
    now = dt.datetime(2021, 12, 5, tzinfo=dt.UTC)
    last = None if last_hours_ago is None else now - dt.timedelta(hours=last_hours_ago)
    decision = monitoring.retrain_decision(
        health(correct, trades), TradeParams(), last_trigger=last, now=now
    )
    assert decision.retrain is fires, decision.reason


def seed_ledger(url: str, correct: list[bool], *, symbol: str = "BTCUSDT") -> None:
    ledger = Ledger(url)
    ledger.migrate()
    equity = 1.0
    for i, right in enumerate(correct):
        hour = (START + pd.Timedelta(hours=i)).to_pydatetime()
        ret = 0.002 if right else -0.002
        equity *= 1 + ret
        ledger.record_prediction(hour, symbol=symbol, prob_up=0.6, target=1, status="traded")
        ledger.record_outcome(
            {"hour": hour, "symbol": symbol, "close": 1.0, "next_close": 1.0, "actual_up": right, "target": 1,
             "correct": right, "strategy_return": ret, "market_return": ret},
            equity_row={"hour": hour, "equity": equity, "buy_and_hold": equity},
        )  # fmt: skip


def test_monitor_writes_outputs_and_triggers_once_per_cooldown(tmp_path, monkeypatch, capsys):
    url = f"sqlite:///{tmp_path}/ledger.db"
    monkeypatch.setenv("KLINECAST_LEDGER_URL", url)
    seed_ledger(url, [True] * 10 + [True] * 10 + [False] * 14)  # 10 of the last 24 right
    params = write_params(tmp_path / "params.yaml", {})
    marker = tmp_path / "fired"
    command = f"local:{sys.executable} -c \"open('{marker}', 'a').write('x')\""
    argv = ["monitor", "--params", str(params), "--out-dir", str(tmp_path / "out")]
    argv += ["--features", str(tmp_path / "none.parquet"), "--trigger", command]
    assert main([*argv, "--now", "2021-12-03T00:00:00Z"]) == 0
    assert marker.read_text() == "x"
    assert "triggered local command" in capsys.readouterr().out
    document = json.loads((tmp_path / "out/BTCUSDT/monitor.json").read_text())
    assert document["retrain"] and document["accuracy"] == pytest.approx(10 / 24)
    assert main([*argv, "--now", "2021-12-03T05:00:00Z"]) == 0  # within the cooldown
    assert marker.read_text() == "x" and "cooldown" in capsys.readouterr().out
    assert main([*argv, "--now", "2021-12-04T01:00:00Z"]) == 0  # 25 hours later
    assert marker.read_text() == "xx"
    metrics = {
        s.name: s.value
        for family in text_string_to_metric_families((tmp_path / "out/BTCUSDT/metrics.prom").read_text())
        for s in family.samples
    }
    assert metrics["klinecast_live_accuracy"] == pytest.approx(10 / 24)
    assert metrics["klinecast_live_trades"] == 34
    page = (tmp_path / "out/BTCUSDT/monitor.html").read_text()
    assert "34 trades; accuracy of the last 24: 42%" in page
    assert "Retrain: <b>yes</b> (42% of the last 24 trades right (&lt; 60%))" in page
    (png,) = re.findall(r"data:image/png;base64,([A-Za-z0-9+/=]+)", page)
    width, height = struct.unpack(">II", base64.b64decode(png)[16:24])  # the IHDR chunk
    assert base64.b64decode(png)[:8] == b"\x89PNG\r\n\x1a\n" and width > 500 and height > 300


def test_each_symbol_has_its_own_cooldown_and_its_trigger_names_it(tmp_path, monkeypatch, capsys):
    """Both symbols decayed: both fire (one's retrain delays no other's), each told which;
    then each waits out its own cooldown. A cooldown from before symbols had their own (the
    book's one state) still holds."""
    url = f"sqlite:///{tmp_path}/ledger.db"
    monkeypatch.setenv("KLINECAST_LEDGER_URL", url)
    for symbol in ("BTCUSDT", "ETHUSDT"):
        seed_ledger(url, [True] * 10 + [False] * 14, symbol=symbol)
    params = write_params(tmp_path / "params.yaml", {"data": {"symbols": ["BTCUSDT", "ETHUSDT"]}})
    marker = tmp_path / "fired"
    write = f"open('{marker}', 'a').write(os.environ['KLINECAST_RETRAIN_SYMBOL'] + ' ')"
    argv = ["monitor", "--params", str(params), "--out-dir", str(tmp_path / "out")]
    argv += ["--features", str(tmp_path / "none.parquet")]
    argv += ["--trigger", f'local:{sys.executable} -c "import os; {write}"']
    Ledger(url).set_state(monitoring.RETRAIN_STATE, "2021-12-02T23:00:00+00:00")  # the old key
    assert main([*argv, "--now", "2021-12-03T00:00:00Z"]) == 0
    assert not marker.exists() and capsys.readouterr().out.count("cooldown") == 2
    assert main([*argv, "--now", "2021-12-04T00:00:00Z"]) == 0
    assert marker.read_text() == "BTCUSDT ETHUSDT "
    assert main([*argv, "--now", "2021-12-04T05:00:00Z"]) == 0  # each within its own cooldown
    assert marker.read_text() == "BTCUSDT ETHUSDT "
    ledger = Ledger(url)
    for symbol in ("BTCUSDT", "ETHUSDT"):
        assert ledger.get_state(monitoring.retrain_state_key(symbol)).startswith("2021-12-04T00")


def monitor_traded_hours(tmp_path, monkeypatch, traded: int) -> pd.DataFrame:
    """`klinecast monitor` over a ledger whose last `traded` feature hours were traded."""
    from tests.support.model_fixtures import small_features

    url = f"sqlite:///{tmp_path}/ledger.db"
    monkeypatch.setenv("KLINECAST_LEDGER_URL", url)
    features_path = small_features(tmp_path / "features.parquet")
    features = pd.read_parquet(features_path)
    ledger = Ledger(url)
    ledger.migrate()
    for hour in features.index[-traded:]:
        ledger.record_prediction(hour.to_pydatetime(), symbol="BTCUSDT", target=1, status="traded")
    params = write_params(tmp_path / "params.yaml", {})  # trade.drift_min_samples: 48
    argv = ["monitor", "--params", str(params), "--out-dir", str(tmp_path / "out")]
    assert main([*argv, "--features", str(features_path)]) == 0
    return features


def test_drift_compares_live_hours_with_the_training_window(tmp_path, monkeypatch):
    features = monitor_traded_hours(tmp_path, monkeypatch, 48)
    document = json.loads((tmp_path / "out/BTCUSDT/monitor.json").read_text())
    drift = document["drift"]
    assert set(drift) == set(Params().features.indicators) & set(features.columns)
    # each PSI is the live hours' against the 90 days (--reference-days) before the first one
    live = features.index[-48:]
    reference = features[
        (features.index < live[0]) & (features.index >= live[0] - pd.Timedelta(days=90))
    ]
    for name, value in drift.items():
        expected = monitoring.psi(reference[name].to_numpy(), features.loc[live, name].to_numpy())
        assert value == pytest.approx(expected), name
    assert document["drift_note"] == "PSI over 48 traded hours"


def test_psi_is_near_zero_for_the_same_distribution_and_large_for_a_shifted_one():
    rng = np.random.default_rng(0)
    reference = rng.normal(size=5000)
    assert monitoring.psi(reference, rng.normal(size=2000)) < 0.02
    assert monitoring.psi(reference, rng.normal(loc=1.0, size=2000)) > 0.25  # "significant shift"


@pytest.mark.parametrize("traded", [1, 47])
def test_below_the_minimum_the_monitor_says_too_few_samples_and_gives_no_psi(
    tmp_path, monkeypatch, capsys, traded
):
    monitor_traded_hours(tmp_path, monkeypatch, traded)
    expected = f"too few samples: {traded} traded hour(s), PSI needs at least 48"
    assert expected in capsys.readouterr().out
    document = json.loads((tmp_path / "out/BTCUSDT/monitor.json").read_text())
    assert document["drift"] == {} and document["drift_samples"] == traded
    assert expected in (tmp_path / "out/BTCUSDT/monitor.html").read_text()
    prom = (tmp_path / "out/BTCUSDT/metrics.prom").read_text()
    assert "klinecast_feature_psi{" not in prom


def test_the_minimum_comes_from_params():
    features = pd.DataFrame(
        {"rsi_14": np.linspace(0, 100, 500)},
        index=pd.date_range("2021-01-01", periods=500, freq="h", tz="UTC"),
    )
    live = features.index[-5:]
    few = monitoring.feature_drift(features, live, ["rsi_14"], reference_days=10, min_samples=6)
    assert few.psi == {} and "too few samples: 5" in few.note
    enough = monitoring.feature_drift(features, live, ["rsi_14"], reference_days=10, min_samples=5)
    assert set(enough.psi) == {"rsi_14"} and enough.note == "PSI over 5 traded hours"


class _GitLab(JsonHandler):
    """GitLab's pipeline trigger API: POST .../trigger/pipeline with token and ref."""

    received: list = []

    def do_POST(self):
        body = parse_qs(self.rfile.read(int(self.headers["Content-Length"])).decode())
        _GitLab.received.append((self.path, body))
        if body.get("token") == ["trigger-token"]:
            self._send(201, {"id": 77, "ref": body["ref"][0]})
        else:
            self._send(404, {"message": "404 Not Found"})


def test_gitlab_trigger_speaks_the_pipeline_trigger_api(monkeypatch):
    with LocalServer(_GitLab) as server:
        project = f"{server.url}/api/v4/projects/42"
        monkeypatch.setenv("GITLAB_TRIGGER_TOKEN", "trigger-token")
        assert (
            retrain.trigger(f"gitlab:{project}@main", reason="58 %", symbol="BTCUSDT")
            == "GitLab pipeline 77 on main"
        )
        path, body = _GitLab.received[-1]
        assert path == "/api/v4/projects/42/trigger/pipeline"
        assert body["ref"] == ["main"] and body["variables[RETRAIN_REASON]"] == ["58 %"]
        assert body["variables[RETRAIN_SYMBOL]"] == ["BTCUSDT"]
        monkeypatch.setenv("GITLAB_TRIGGER_TOKEN", "wrong")
        with pytest.raises(KlinecastError, match="GitLab refused the trigger: HTTP 404"):
            retrain.trigger(f"gitlab:{project}@main", reason="x", symbol="BTCUSDT")


def test_kfp_trigger_submits_a_training_run(monkeypatch):
    with KfpApiServer() as server:
        fired = retrain.trigger(f"kfp:{server.url}", reason="x", symbol="BTCUSDT")
        (run,) = server.bodies("POST", "/apis/v2beta1/runs")
        assert fired == f"KFP run retrain-btcusdt (run-1) in experiment klinecast on {server.url}"
        assert run["display_name"] == "retrain-btcusdt"


def test_unknown_target_and_failing_command_are_clear():
    with pytest.raises(KlinecastError, match="unknown retrain target"):
        retrain.trigger("email:ops@example.com", reason="x", symbol="BTCUSDT")
    with pytest.raises(KlinecastError, match="exited 3"):
        retrain.trigger(
            f"local:{sys.executable} -c 'raise SystemExit(3)'", reason="x", symbol="BTCUSDT"
        )


def test_the_monitor_reports_stuck_intents_halts_and_reconcile_differences(
    tmp_path, monkeypatch, capsys
):
    from klinecast.trader.ledger import Order
    from klinecast.trader.tables import orders

    url = f"sqlite:///{tmp_path}/ledger.db"
    monkeypatch.setenv("KLINECAST_LEDGER_URL", url)
    ledger = Ledger(url)
    ledger.migrate()
    hour = pd.Timestamp("2021-12-03 01:00", tz="UTC").to_pydatetime()
    ledger.record_intent(Order("kc-BTCUSDT-2021120301-open", hour, "open", "BTCUSDT", "BUY", 0.001))
    with ledger.engine.begin() as c:  # made at the hour it is for (stuck is aged from this)
        c.execute(orders.update().values(created_at=hour))
    ledger.record_reconciliation(
        hour=hour, symbol="BTCUSDT", ledger_position=0.0, exchange_position=0.001,
        difference=0.001, tolerance=0.00001, agree=False,
    )  # fmt: skip
    ledger.halt("BTCUSDT", kind="reconcile", reason="the ledger holds 0 but the exchange 0.001")
    params = write_params(tmp_path / "params.yaml", {})
    argv = ["monitor", "--params", str(params), "--out-dir", str(tmp_path / "out")]
    argv += ["--features", str(tmp_path / "none.parquet"), "--now", "2021-12-03T04:00:00Z"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "1 stuck intent(s); BTCUSDT HALTED (reconcile: the ledger holds 0" in out
    assert "differs from the exchange by +0.00100000" in out
    trading = json.loads((tmp_path / "out/BTCUSDT/monitor.json").read_text())["trading"]
    assert trading["stuck_intents"] == ["kc-BTCUSDT-2021120301-open"]
    assert trading["halted"]["BTCUSDT"]["kind"] == "reconcile"
    metrics = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families((tmp_path / "out/BTCUSDT/metrics.prom").read_text())
        for s in family.samples
    }
    assert metrics[("klinecast_stuck_intents", ())] == 1
    assert metrics[("klinecast_halted", (("kind", "reconcile"), ("symbol", "BTCUSDT")))] == 1
    assert metrics[("klinecast_reconcile_difference", (("symbol", "BTCUSDT"),))] == 0.001
    assert "HALTED (reconcile" in (tmp_path / "out/BTCUSDT/monitor.html").read_text()
    # within the hour the intent is not stuck yet: a cycle resolves it
    assert main([*argv[:-1], "2021-12-03T01:30:00Z"]) == 0
    assert "0 stuck intent(s)" in capsys.readouterr().out
