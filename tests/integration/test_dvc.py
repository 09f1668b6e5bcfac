"""DVC over the real project files: data.dvc versioning, dvc repro, and an S3 round trip."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.support.helpers import create_remote_bucket, write_params
from tests.support.model_fixtures import SMALL_FEATURES
from tests.support.paths import REPO

BIN = Path(sys.executable).parent

pytestmark = [pytest.mark.integration, pytest.mark.e2e]
DATA_TARGETS = ("data.dvc", "candles", "reference", "features")  # the model stages have not run here
#: What the shared stages write without cross-asset features or pooling: the same every time.
SHARED = ("data/reference.parquet", "reports/pool.json")


def sh(*argv, cwd, env=None) -> str:
    environ = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}", **(env or {})}
    done = subprocess.run(argv, cwd=cwd, env=environ, capture_output=True, text=True)
    assert done.returncode == 0, f"{argv} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout + done.stderr


@pytest.fixture()
def project(tmp_path):
    """A git + DVC checkout of the project's pipeline files, with a short data span."""
    root = tmp_path / "project"
    root.mkdir()
    for name in ("dvc.yaml", "data.dvc", ".dvcignore"):
        shutil.copy(REPO / name, root / name)
    shutil.copytree(REPO / ".dvc", root / ".dvc", ignore=shutil.ignore_patterns("cache", "tmp"))
    shutil.copytree(
        REPO / "src", root / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info")
    )
    # Hourly features only: the day-scale ones need 4,900 candles, more than these months hold.
    write_params(
        root / "params.yaml",
        {
            "data": {"start": "2021-01-01"},
            "features": {
                "indicators": list(SMALL_FEATURES.indicators),
                "min_history": SMALL_FEATURES.min_history,
            },
        },
    )
    sh("git", "init", "-q", cwd=root)
    return root


def tracked_files(root: Path) -> dict[Path, bytes]:
    """The DVC-tracked data: raw archives and the stage outputs."""
    data = root / "data"
    return {
        p.relative_to(root): p.read_bytes()
        for p in data.rglob("*")
        if p.is_file() and p.name != ".gitignore"
    }


def make_data(root: Path, url: str, end: str) -> None:
    """What `make data` runs."""
    sh("klinecast", "ingest", "--base-url", url, "--end", end, "--no-progress", cwd=root)
    sh("dvc", "add", "--quiet", "data/raw", cwd=root)


def test_data_dvc_changes_exactly_when_new_data_arrives(project, mirror_server):
    make_data(project, mirror_server.url, "2021-03-31")
    first = (project / "data.dvc").read_text()
    assert "path: data/raw" in first and "nfiles: 6" in first
    assert not (project / "data/raw.dvc").exists()
    make_data(project, mirror_server.url, "2021-03-31")
    assert (project / "data.dvc").read_text() == first
    make_data(project, mirror_server.url, "2021-04-30")
    assert (project / "data.dvc").read_text() != first
    assert "nfiles: 8" in (project / "data.dvc").read_text()


def test_dvc_repro_runs_the_stages_then_is_a_no_op(project, mirror_server):
    make_data(project, mirror_server.url, "2021-04-30")
    out = sh("dvc", "repro", "features", cwd=project)
    assert "Running stage 'candles@BTCUSDT'" in out and "Running stage 'features@BTCUSDT'" in out
    features = (project / "data/BTCUSDT/features.parquet").read_bytes()
    lock = (project / "dvc.lock").read_text()
    out = sh("dvc", "repro", "features", cwd=project)
    assert "Running stage" not in out and "Data and pipelines are up to date" in out
    assert (project / "data/BTCUSDT/features.parquet").read_bytes() == features
    assert (project / "dvc.lock").read_text() == lock
    metrics = json.loads(
        sh("dvc", "metrics", "show", "--json", "reports/symbols/BTCUSDT/candles.json", cwd=project)
    )
    candles = metrics[""]["data"]["reports/symbols/BTCUSDT/candles.json"]["data"]
    assert candles["files"] == 4 and candles["first"] == "2021-01-01T00:00:00+00:00"
    assert candles["rows"] + candles["missing_candles"] == 2880  # every hour of Jan..Apr 2021


def test_adding_a_symbol_runs_only_its_own_data_stages(project, mirror_server):
    """The shared reference and pool stages re-read the data, and write the same bytes, so no
    other symbol's features or tuning re-run; a pooled model's pool record does change."""
    make_data(project, mirror_server.url, "2021-04-30")
    sh("dvc", "repro", "pool", cwd=project)
    btc = (project / "data/BTCUSDT/features.parquet").read_bytes()
    shared = {name: (project / name).read_bytes() for name in SHARED}
    raw = yaml.safe_load((project / "params.yaml").read_text())
    raw["data"]["symbols"] = ["BTCUSDT", "ETHUSDT"]
    (project / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    make_data(project, mirror_server.url, "2021-04-30")
    assert len(list((project / "data/raw/ETHUSDT").glob("*.zip"))) == 4
    out = sh("dvc", "repro", "pool", cwd=project)
    assert "Running stage 'candles@ETHUSDT'" in out and "Running stage 'features@ETHUSDT'" in out
    assert "Running stage 'candles@BTCUSDT'" not in out
    assert "Running stage 'features@BTCUSDT'" not in out
    assert (project / "data/BTCUSDT/features.parquet").read_bytes() == btc
    assert {name: (project / name).read_bytes() for name in SHARED} == shared
    # pooled: one model over both, so every symbol's tune depends on both symbols' features
    # the pool stage runs the pooled study: the small example's search, on these four months
    small = yaml.safe_load((REPO / "examples/small-params.yaml").read_text())
    raw["tune"] = small["tune"] | {"pooling": "pooled", "n_trials": 2, "holdout_days": 0,
                                   "storage": f"sqlite:///{project}/optuna.db"}  # fmt: skip
    raw["backtest"] = small["backtest"]
    (project / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    out = sh("dvc", "repro", "pool", cwd=project)
    assert "Running stage 'pool'" in out and "Running stage 'features@" not in out
    record = json.loads((project / "reports/pool.json").read_text())
    assert record["pooling"] == "pooled" and sorted(record["symbols"]) == ["BTCUSDT", "ETHUSDT"]
    assert record["weights"] == {"BTCUSDT": 0.5, "ETHUSDT": 0.5}


def test_dvc_push_and_pull_round_trip_through_s3(project, mirror_server, moto_s3):
    make_data(project, mirror_server.url, "2021-02-28")
    sh("dvc", "repro", "features", cwd=project)
    before = tracked_files(project)
    create_remote_bucket(moto_s3)
    out = sh("dvc", "push", *DATA_TARGETS, cwd=project, env=moto_s3)
    assert "pushed" in out
    shutil.rmtree(project / ".dvc/cache")
    for path in before:
        (project / path).unlink()
    sh("dvc", "pull", *DATA_TARGETS, cwd=project, env=moto_s3)
    after = tracked_files(project)
    assert after == before
    assert len([p for p in after if p.suffix == ".zip"]) == 2


def test_make_data_push_then_pull_into_a_fresh_clone_reproduces_the_features(
    project, mirror_server, moto_s3, tmp_path
):
    """Push from one clone, pull into a fresh one; `dvc repro` gives the same feature file."""
    make = ["make", "-f", str(REPO / "Makefile"), f"BIN={BIN}", "SETUP="]
    make_data(project, mirror_server.url, "2021-02-28")
    sh("dvc", "repro", "features", cwd=project)
    features = (project / "data/BTCUSDT/features.parquet").read_bytes()
    create_remote_bucket(moto_s3)
    sh(*make, "data-push", cwd=project, env=moto_s3)
    sh("git", "add", "-A", cwd=project)
    sh("git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "data", cwd=project)

    fresh = tmp_path / "fresh"
    sh("git", "clone", "-q", str(project), str(fresh), cwd=tmp_path)
    assert not (fresh / "data/raw").exists()
    sh(*make, "data-pull", cwd=fresh, env=moto_s3)
    assert len(list((fresh / "data/raw/BTCUSDT").glob("*.zip"))) == 2
    sh("dvc", "repro", "features", cwd=fresh)
    assert (fresh / "data/BTCUSDT/features.parquet").read_bytes() == features
    lock = yaml.safe_load((fresh / "dvc.lock").read_text())
    original = yaml.safe_load((project / "dvc.lock").read_text())
    outs = lock["stages"]["features@BTCUSDT"]["outs"][0]
    assert outs["md5"] == original["stages"]["features@BTCUSDT"]["outs"][0]["md5"]
