"""The whole training pipeline, run by kfp.local on the mirror (served over HTTP), small config.

The whole training pipeline through `kfp.local` on the mirror (2 tuning workers on one study,
every task's outputs, publish and deploy), and bad params stopping it at its first step.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import optuna
import pandas as pd
import pytest
import yaml

from klinecast.book import Layout
from tests.support.helpers import explain
from tests.support.paths import REPO

BIN = Path(sys.executable).parent
pytestmark = [pytest.mark.integration, pytest.mark.e2e]

SMALL = yaml.safe_load((REPO / "examples/small-params.yaml").read_text())


def write_small_pipeline_params(path: Path, **sections) -> Path:
    """examples/small-params.yaml with sections' keys replaced."""
    raw = {name: dict(values) for name, values in SMALL.items()}
    for name, values in sections.items():
        raw[name].update(values)
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def run_local(workdir: Path, params: Path, *extra: str) -> subprocess.CompletedProcess:
    env = {
        k: v for k, v in os.environ.items() if k not in ("KUBECONFIG", "KUBERNETES_SERVICE_HOST")
    }
    env |= {
        "PATH": f"{BIN}:{env['PATH']}",
        "KLINECAST_OPTUNA_STORAGE": f"sqlite:///{workdir}/optuna.db",
    }
    argv = ["klinecast", "pipeline", "run", "--local", "--params", str(params)]
    argv += ["--pipeline-root", str(workdir / "root")]
    return subprocess.run(
        [*argv, *extra], cwd=workdir, env=env, capture_output=True, text=True, timeout=900
    )


def task_outputs(workdir: Path) -> Path:
    (run,) = (workdir / "root").iterdir()
    return run


def test_training_pipeline_runs_locally_end_to_end(tmp_path, mirror_server):
    params = write_small_pipeline_params(
        tmp_path / "small.yaml",
        data={"base_url": mirror_server.url},
        # any model passes the gate, so publish and deploy run too
        publish={
            "registry": str(tmp_path / "registry"),
            "gate_min_excess_return": -100.0,
            "gate_max_p_value": 1.0,
            "min_splits": 0,
            "min_features_used": 0,
            "min_trades": 0,
        },
    )
    # a params key and a pipeline parameter, as `--set` takes them
    done = run_local(tmp_path, params, "--set", "tune.workers=2", "--set", "backtest.fee=0.0005")
    assert done.returncode == 0, explain(done)
    assert "klinecast-training succeeded" in done.stdout
    root = task_outputs(tmp_path)
    assert {p.name for p in root.iterdir()} == {
        "validate-params", "ingest", "reference", "for-loop-1-iteration-0", "pool",
        "for-loop-2-iteration-0", "publish", "report", "portfolio", "deploy",
    }  # one symbol: one branch of each ParallelFor over the book's symbols  # fmt: skip
    data, run = root / "for-loop-1-iteration-0", root / "for-loop-2-iteration-0"
    assert {p.name for p in data.iterdir()} == {"candles", "features"}
    assert {p.name for p in run.iterdir()} == {"tune", "evaluate", "train"}
    published = Layout(root / "publish/receipts").symbol("BTCUSDT")  # laid out as a checkout

    # One tune task ran the study with tune.workers processes, in seeded batches: exactly
    # n_trials trials, each a distinct draw.
    storage = f"sqlite:///{tmp_path}/optuna.db"
    (summary,) = optuna.get_all_study_summaries(storage)
    trials = optuna.load_study(study_name=summary.study_name, storage=storage).trials
    assert len(trials) == 4
    distinct = {tuple(sorted(t.params.items())) for t in trials}
    assert len(distinct) == len(trials)
    best = json.loads((run / "tune/best_params").read_text())
    assert best["study_name"] == summary.study_name
    assert sum(best["trials"].values()) == len(trials)

    # The components ran the library: features equal a direct call on the pipeline's candles.
    from klinecast.config import load_params
    from klinecast.research.features import compute_features

    candles = pd.read_parquet(data / "candles/candles")
    settings = load_params(params)
    direct = compute_features(
        candles, indicators=settings.features.indicators, interval=settings.data.interval_delta
    )
    pd.testing.assert_frame_equal(pd.read_parquet(data / "features/features"), direct.frame)

    metrics = json.loads((run / "evaluate/metrics_json").read_text())
    assert set(metrics["baselines"]) == {
        "buy_and_hold", "always_short", "momentum", "coin_flip", "trend_20d", "trend_50d",
        "vol_target",
    }  # fmt: skip
    assert metrics["fee_per_side"] == 0.0005  # the --set reached the run's params.yaml
    assert metrics["span"]["first_hour"].startswith("2021-01-01")
    executor = json.loads((run / "evaluate/executor_output.json").read_text())
    logged = executor["artifacts"]["metrics"]["artifacts"][0]["metadata"]
    assert logged["cumulative_return"] == pytest.approx(metrics["model"]["cumulative_return"])
    assert logged["buy_and_hold_return"] == pytest.approx(
        metrics["baselines"]["buy_and_hold"]["cumulative_return"]
    )
    confusion = executor["artifacts"]["classification"]["artifacts"][0]["metadata"]
    matrix = confusion["confusionMatrix"]["rows"]
    labelled = pd.read_parquet(run / "evaluate/predictions")["label"].notna().sum()
    assert sum(sum(row["row"]) for row in matrix) == labelled  # hours whose horizon is known
    assert metrics["span"]["hours"] - labelled < 24
    assert logged["max_p_value"] == pytest.approx(metrics["significance"]["max_p_value"])
    assert logged["trend_50d_return"] == pytest.approx(
        metrics["baselines"]["trend_50d"]["cumulative_return"]
    )
    summary = (root / "publish/summary").read_text()
    assert "| BTCUSDT |" in summary and "| passed | production |" in summary
    page = Layout(root / "report/reports").symbol("BTCUSDT").report.read_text()
    assert page.startswith("<!doctype html>") and "promoted to production" in page
    book = json.loads((root / "portfolio/figures").read_text())  # the book of one, its gate
    assert [line["symbol"] for line in book["symbols"]] == ["BTCUSDT"]
    assert book["traded"] == ["BTCUSDT"]  # its own gate passed (forced open)
    assert (root / "portfolio/page").read_text().startswith("<!doctype html>")

    receipt = json.loads(published.receipt.read_text())
    assert receipt["promoted"] and receipt["gate"]["passed"]
    pointer = json.loads((tmp_path / "registry/klinecast-btcusdt-1h/production.json").read_text())
    assert pointer["version"] == receipt["version"]
    assert "deploy: skipped: not in a Kubernetes cluster" in done.stdout + done.stderr
    assert f"klinecast/klinecast -> {{'BTCUSDT': '{receipt['version']}'}}" in done.stdout


def test_two_symbols_run_as_two_branches_each_with_its_model(tmp_path, mirror_server):
    params = write_small_pipeline_params(
        tmp_path / "two.yaml",
        data={"base_url": mirror_server.url, "symbols": ["BTCUSDT", "ETHUSDT"], "start": "2021-01-01"},
        split={"in_sample_start": "2021-02-01", "in_sample_end": "2021-05-31",
               "out_of_sample_start": "2021-06-01", "out_of_sample_end": "2021-06-30"},
        tune={"holdout_days": 30},  # of 120 in-sample days
        publish={"registry": str(tmp_path / "registry"), "gate_min_excess_return": -100.0,
                 "gate_max_p_value": 1.0, "min_splits": 0, "min_features_used": 0, "min_trades": 0},
    )  # fmt: skip
    done = run_local(tmp_path, params)
    assert done.returncode == 0, explain(done)
    root = task_outputs(tmp_path)
    for loop in ("for-loop-1", "for-loop-2"):
        branches = sorted(p.name for p in root.glob(f"{loop}-iteration-*"))
        assert branches == [f"{loop}-iteration-0", f"{loop}-iteration-1"]
    symbols = set()
    for branch in ("for-loop-1-iteration-0", "for-loop-1-iteration-1"):
        candles = pd.read_parquet(root / branch / "candles/candles")
        assert candles.index[0] == pd.Timestamp("2021-01-01", tz="UTC")
    for symbol in ("BTCUSDT", "ETHUSDT"):
        receipt = json.loads(Layout(root / "publish/receipts").symbol(symbol).receipt.read_text())
        symbols.add(receipt["uri"].split("/")[-3])
    for branch in ("for-loop-2-iteration-0", "for-loop-2-iteration-1"):
        metrics = json.loads((root / branch / "evaluate/metrics_json").read_text())
        assert metrics["span"]["first_hour"].startswith("2021-06-01")
    # each symbol's model under its own name, the same whether the book holds one or two
    assert symbols == {"klinecast-btcusdt-1h", "klinecast-ethusdt-1h"}
    # beside the models, the registry keeps each symbol's looks at its out-of-sample span
    assert sorted(p.name for p in (tmp_path / "registry").iterdir()) == sorted([*symbols, "_looks"])
    assert sorted(p.name for p in (tmp_path / "registry/_looks").iterdir()) == ["BTCUSDT", "ETHUSDT"]
    # one deploy of the book, after both published
    assert "deploy: skipped: not in a Kubernetes cluster" in done.stdout


def test_bad_params_stop_the_pipeline_at_its_first_step(tmp_path):
    # 31 in-sample days before the 30-day hold-out < look_back_days high 60 + step_days 15
    params = write_small_pipeline_params(
        tmp_path / "bad.yaml", split={"in_sample_start": "2020-11-01"}
    )
    done = run_local(tmp_path, params)
    assert done.returncode == 1
    output = done.stdout + done.stderr
    assert "fewer than look_back_days high (60) + step_days (15)" in output
    assert "the local klinecast-training pipeline failed" in output
    # the error line itself names the failing task and its own error, not just "task failed"
    (error,) = [line for line in done.stderr.splitlines() if "pipeline: error:" in line]
    assert "task 'validate-params': klinecast.errors.KlinecastError: invalid params: the in-sample" in error
    assert {p.name for p in task_outputs(tmp_path).iterdir()} == {"validate-params"}


def test_a_pooled_cross_asset_book_gives_the_models_dvc_repro_gives(tmp_path, mirror_server):
    """What `dvc repro` runs, Kubeflow runs: a pooled model with cross-asset features, two
    symbols, through kfp.local, and the same stages through the CLI (as dvc.yaml calls them) on
    the same archives: each symbol's model.json is the same, byte for byte."""
    import hashlib

    from klinecast.book import Layout
    from klinecast.cli import main

    sections = dict(
        data={"base_url": mirror_server.url, "symbols": ["BTCUSDT", "ETHUSDT"],
              "start": "2021-01-01"},
        features={"cross_asset": ["log_return_1"], "reference": "BTCUSDT"},
        split={"in_sample_start": "2021-02-01", "in_sample_end": "2021-05-31",
               "out_of_sample_start": "2021-06-01", "out_of_sample_end": "2021-06-30"},
        tune={"pooling": "pooled", "storage": f"sqlite:///{tmp_path}/cli-optuna.db",
              "holdout_days": 30},
        publish={"registry": str(tmp_path / "registry")},
    )  # fmt: skip
    params = write_small_pipeline_params(tmp_path / "pooled.yaml", **sections)
    done = run_local(tmp_path, params)
    assert done.returncode == 0, explain(done)
    root = task_outputs(tmp_path)
    assert json.loads((root / "pool/executor_output.json").read_text())["artifacts"]["book"][
        "artifacts"
    ][0]["metadata"]["pooled"] == ["BTCUSDT", "ETHUSDT"]
    models = {}
    for branch in ("for-loop-2-iteration-0", "for-loop-2-iteration-1"):
        metadata = json.loads((root / branch / "train/model/metadata.json").read_text())
        assert metadata["pooled"] == ["BTCUSDT", "ETHUSDT"]
        assert "btcusdt_log_return_1" in metadata["feature_names"]
        models[metadata["symbol"]] = (root / branch / "train/model/model.json").read_bytes()

    checkout = tmp_path / "checkout"
    cli = ["--params", str(params), "--root", str(checkout)]
    assert main(["ingest", *cli, "--no-progress"]) == 0
    assert main(["candles", *cli]) == 0
    assert main(["candles", "--reference", *cli]) == 0
    for stage in ("features", "pool", "tune", "evaluate", "train"):
        argv = [stage, *cli] + (["--no-progress"] if stage in ("pool", "tune") else [])
        assert main(argv) == 0, stage
    for symbol, model in models.items():
        ours = Layout(checkout).symbol(symbol).candidate / "model.json"
        assert hashlib.sha256(ours.read_bytes()).hexdigest() == hashlib.sha256(model).hexdigest()
