import json
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from klinecast.book import Layout
from klinecast.cli import main
from tests.support.candle_factory import csv_bytes, kline_rows, synthetic_candles, zip_bytes
from tests.support.helpers import write_params
from tests.support.model_fixtures import SMALL_FEATURES
from tests.support.paths import REPO

KLINECAST = Path(sys.executable).parent / "klinecast"


@pytest.fixture()
def workdir(tmp_path, monkeypatch):
    shutil.copy(REPO / "params.yaml", tmp_path / "params.yaml")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("KLINECAST_BASE_URL", raising=False)
    return tmp_path


def ingest_mirror(url: str) -> int:
    return main(["ingest", "--base-url", url, "--end", "2021-12-31", "--no-progress"])


def test_console_script_help_lists_every_command_with_its_own_summary():
    """Each command's summary is its own text (the description above mentions some commands
    too, so a name alone proves nothing)."""
    import argparse

    from klinecast.cli import build_parser

    out = subprocess.run([KLINECAST, "--help"], capture_output=True, text=True, check=True).stdout
    (commands,) = [a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)]
    listed = [
        line.split()[0] for line in out.splitlines() if line.startswith("    ") and line.split()
    ]
    summaries = {a.dest: a.help for a in commands._choices_actions}
    assert set(summaries) == set(commands.choices) and set(summaries) <= set(listed)
    flat = " ".join(out.split())
    for name, summary in summaries.items():
        assert summary and " ".join(summary.split())[:40] in flat, name
    out = subprocess.run(
        [KLINECAST, "ingest", "--help"], capture_output=True, text=True, check=True
    ).stdout
    assert "KLINECAST_BASE_URL" in out and ".CHECKSUM" in out


def test_stages_end_to_end_on_the_mirror(workdir, mirror_server, capsys):
    write_params(workdir / "params.yaml", {"data": {"start": "2021-06-01"}})
    assert ingest_mirror(mirror_server.url) == 0
    assert "7 downloaded" in capsys.readouterr().out
    assert main(["candles"]) == 0
    report = json.loads((workdir / "reports/symbols/BTCUSDT/candles.json").read_text())
    assert report["rows"] == len(pd.read_parquet("data/BTCUSDT/candles.parquet"))
    assert report["first"] == "2021-06-01T00:00:00+00:00"
    assert report["last"] == "2021-12-31T23:00:00+00:00"
    assert main(["features"]) == 0
    frame = pd.read_parquet("data/BTCUSDT/features.parquet")
    assert list(frame.columns)[:3] == ["ma_ratio_5", "ma_ratio_10", "ma_ratio_15"]
    feature_report = json.loads((workdir / "reports/symbols/BTCUSDT/features.json").read_text())
    assert feature_report["rows"] == len(frame)


def test_env_base_url_is_used(workdir, mirror_server, monkeypatch, capsys):
    write_params(workdir / "params.yaml", {"data": {"start": "2021-12-01"}})
    monkeypatch.setenv("KLINECAST_BASE_URL", mirror_server.url)
    assert main(["ingest", "--end", "2021-12-31", "--no-progress"]) == 0
    assert f"from {mirror_server.url}" in capsys.readouterr().out


def test_bad_archive_fails_clearly_and_keeps_the_previous_candles(workdir, mirror, capsys):
    raw = workdir / "data/raw/BTCUSDT"
    raw.mkdir(parents=True)
    good = synthetic_candles(48, start="2021-01-01")
    (raw / "BTCUSDT-1h-2021-01.zip").write_bytes(zip_bytes({"a.csv": csv_bytes(kline_rows(good))}))
    assert main(["candles"]) == 0
    before = (workdir / "data/BTCUSDT/candles.parquet").read_bytes()
    broken = synthetic_candles(24, start="2021-02-01")
    rows = kline_rows(broken)
    rows[6][2] = str(float(rows[6][3]) / 2)  # high below low
    (raw / "BTCUSDT-1h-2021-02.zip").write_bytes(zip_bytes({"b.csv": csv_bytes(rows)}))
    capsys.readouterr()
    assert main(["candles"]) == 1
    err = capsys.readouterr().err
    assert (
        "klinecast candles: error: BTCUSDT-1h-2021-02.zip, row 7: high is below open or close"
        in err
    )
    assert "Traceback" not in err
    assert (workdir / "data/BTCUSDT/candles.parquet").read_bytes() == before
    assert not list((workdir / "data").rglob(".*part"))


def test_overlapping_archives_are_named(workdir, capsys):
    raw = workdir / "data/raw/BTCUSDT"
    raw.mkdir(parents=True)
    month = synthetic_candles(744, start="2021-01-01")
    (raw / "BTCUSDT-1h-2021-01.zip").write_bytes(zip_bytes({"a.csv": csv_bytes(kline_rows(month))}))
    (raw / "BTCUSDT-1h-2021-01-31.zip").write_bytes(
        zip_bytes({"b.csv": csv_bytes(kline_rows(month.iloc[-24:]))})
    )
    assert main(["candles"]) == 1
    assert (
        "BTCUSDT-1h-2021-01-31.zip, row 1: its first candle 2021-01-31 00:00:00+00:00 overlaps BTCUSDT-1h-2021-01.zip"
        in capsys.readouterr().err
    )


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["candles"], "no BTCUSDT 1h archives; run `make data`"),
        (["features"], "data/BTCUSDT/candles.parquet does not exist; run `klinecast candles --symbol BTCUSDT`"),
        (["ingest", "--base-url", "/no/such/dir"], "is not a directory or an http(s) URL"),
        (["ingest", "--base-url", "ftp://x"], "unsupported scheme 'ftp'"),
    ],
)
def test_missing_inputs_get_a_clear_message(workdir, capsys, argv, message):
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_bad_params_stop_before_any_work(workdir, capsys):
    (workdir / "params.yaml").write_text("data:\n  intervall: 1h\n")
    assert main(["candles"]) == 1
    assert "params: data.intervall: unknown key" in capsys.readouterr().err


def test_damaged_parquet_is_reported(workdir, capsys):
    (workdir / "data/BTCUSDT").mkdir(parents=True)
    (workdir / "data/BTCUSDT/candles.parquet").write_bytes(b"not parquet")
    assert main(["features"]) == 1
    assert "is not a readable Parquet file" in capsys.readouterr().err


def test_measure_reports_whether_params_min_history_suffices(workdir, mirror, capsys):
    shutil.copytree(mirror / "data/spot/monthly/klines/BTCUSDT/1h", workdir / "data/raw/BTCUSDT")
    assert main(["candles"]) == 0
    assert main(["features", "--measure", "--samples", "60"]) == 0
    assert "params features.min_history = 4900 (ok)" in capsys.readouterr().out
    params = workdir / "params.yaml"
    # the hourly features need 540 candles; 100 is above their longest window (24), below that
    raw = yaml.safe_load(params.read_text())
    raw["features"] = {"indicators": list(SMALL_FEATURES.indicators), "min_history": 100}
    params.write_text(yaml.safe_dump(raw, sort_keys=False))
    assert main(["features", "--measure", "--samples", "60"]) == 1
    assert "(TOO SMALL)" in capsys.readouterr().out


def test_an_unknown_broker_is_refused_before_any_work(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("KLINECAST_BROKER", "mainnet")
    monkeypatch.setenv("KLINECAST_LEDGER_URL", f"sqlite:///{tmp_path}/ledger.db")
    assert main(["trade", "once", "--params", str(REPO / "params.yaml")]) != 0
    err = capsys.readouterr().err
    assert "trade.broker: expected paper or testnet, got 'mainnet' (from $KLINECAST_BROKER)" in err


def test_version_prints_the_package_version(capsys):
    import tomllib

    expected = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.strip() == f"klinecast {expected}"


def test_features_of_too_few_candles_say_so_and_write_nothing(tmp_path, capsys):
    """Four months of candles cannot feed the 200-day average: a clear error, not an empty
    file or a traceback."""
    files = Layout(tmp_path).symbol("BTCUSDT")
    files.candles.parent.mkdir(parents=True)
    synthetic_candles(24 * 120).to_parquet(files.candles)
    pd.DataFrame().to_parquet(Layout(tmp_path).book.reference)
    argv = ["features", "--params", str(REPO / "params.yaml"), "--root", str(tmp_path)]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert "no feature rows: the 2880 candles are fewer than the longest indicator window" in err
    assert "(4800 candles)" in err and "Traceback" not in err
    assert not files.features.exists() and not files.features_report.exists()


def test_replay_of_several_symbols_reads_each_ones_candles(tmp_path, capsys):
    params = write_params(tmp_path / "params.yaml", {"data": {"symbols": ["BTCUSDT", "ETHUSDT"]}})
    argv = ["trade", "replay", "--params", str(params), "--start", "2021-12-01"]
    assert main([*argv, "--end", "2021-12-02", "--candles", str(tmp_path / "c.parquet")]) == 1
    assert (
        "--candles: give one file per replayed symbol (BTCUSDT, ETHUSDT), in that order; got 1"
    ) in capsys.readouterr().err
