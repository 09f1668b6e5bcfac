"""README's quickstart on a fresh copy of the repository: `make run` on the shared mirror.

The main job must change no tracked file but dvc.lock, be a no-op the second time, and leave
pages (DVC plots, tuning pages, the report) that draw without internet.
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.support.browser import inked_share, visit
from tests.support.helpers import explain
from tests.support.paths import REPO, SHARED

BIN = Path(sys.executable).parent
pytestmark = [pytest.mark.integration, pytest.mark.e2e]


def run(argv, *, cwd: Path) -> str:
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}", "KLINECAST_SHARED": str(SHARED)}
    env.pop("KLINECAST_BASE_URL", None)  # mirror mode, as on a development machine
    done = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=1200)
    assert done.returncode == 0, explain(done)
    return done.stdout + done.stderr


def make(*targets, cwd: Path) -> str:
    """The repository's own Makefile, with this venv instead of a new one."""
    return run(["make", *targets, f"BIN={BIN}", "SETUP="], cwd=cwd)


def git_status(root: Path) -> list[str]:
    return run(["git", "status", "--porcelain"], cwd=root).splitlines()


@pytest.fixture(scope="module")
def clone(tmp_path_factory) -> Path:
    """The working tree's files (tracked, and new ones not ignored) as a fresh git repository."""
    root = tmp_path_factory.mktemp("fresh") / "klinecast"
    listed = run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=REPO)
    for name in filter(None, listed.split("\0")):
        source = REPO / name
        if source.is_file():
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, root / name)
    run(["git", "init", "-q"], cwd=root)
    run(["git", "add", "-A"], cwd=root)
    run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "clone"], cwd=root)
    return root


@pytest.fixture(scope="module")
def main_job(clone):
    """`make run` twice; what git and the outputs looked like after each."""
    first = make("run", cwd=clone)
    after_first = git_status(clone)
    registry = clone / "models/registry/klinecast-btcusdt-1h/versions"
    versions = sorted(p.name for p in registry.iterdir())
    second = make("run", cwd=clone)
    return {
        "first": first,
        "after_first": after_first,
        "versions": versions,
        "second": second,
        "after_second": git_status(clone),
        "versions_after_second": sorted(p.name for p in registry.iterdir()),
    }


def test_make_run_changes_no_tracked_file_but_dvc_lock(main_job):
    assert "Running stage 'evaluate@BTCUSDT'" in main_job["first"]
    assert "Running stage 'portfolio'" in main_job["first"]
    assert {line[3:] for line in main_job["after_first"]} <= {"dvc.lock"}, main_job["after_first"]


def test_make_run_runs_the_committed_params_on_the_mirror_through_2022_05(clone, main_job):
    assert "exp run" not in main_job["first"]  # no experiment rewrites params.yaml any more
    assert (clone / "params.yaml").read_bytes() == (REPO / "params.yaml").read_bytes()
    assert (clone / "data.dvc").read_bytes() == (REPO / "data.dvc").read_bytes()
    metrics = yaml.safe_load((clone / "reports/symbols/BTCUSDT/metrics.json").read_text())
    assert metrics["span"]["first_hour"].startswith("2022-01-01")
    assert metrics["span"]["last_hour"].startswith("2022-05-31")


def test_a_second_make_run_is_a_no_op_and_records_nothing(clone, main_job):
    assert "Running stage" not in main_job["second"]
    assert "Data and pipelines are up to date" in main_job["second"]
    assert main_job["after_second"] == main_job["after_first"]
    assert main_job["versions_after_second"] == main_job["versions"]
    assert run(["dvc", "exp", "list", "--all-commits", "--name-only"], cwd=clone).strip() == ""


def test_dvc_plots_show_draws_the_model_and_every_baseline_offline(clone, main_job, tmp_path):
    make("build/dvc-plots-template.html", f"VEGA_TOOLS={REPO}/build/vega", cwd=clone)
    run(["dvc", "plots", "show"], cwd=clone)
    page = clone / "dvc_plots/index.html"
    text = page.read_text()
    for strategy in ("model", "buy_and_hold", "trend_100d", "trend_200d", "vol_target"):
        assert f'"field": "{strategy}"' in text, strategy
    seen = visit(page, screenshot=tmp_path / "dvc-plots.png", count=("canvas", "svg.marks"))
    assert seen.outside_requests == [] and seen.errors == []
    assert seen.counts["canvas"] + seen.counts["svg.marks"] == 1
    assert inked_share(tmp_path / "dvc-plots.png") > 0.01
    assert {line[3:] for line in git_status(clone)} <= {"dvc.lock"}  # dvc_plots/ is ignored


@pytest.mark.parametrize(
    ("page", "drawn"),
    [
        ("reports/symbols/BTCUSDT/tune/optimization_history.html", "svg.main-svg"),
        ("reports/symbols/BTCUSDT/tune/param_importances.html", "svg.main-svg"),
        ("reports/symbols/BTCUSDT/tune/parallel_coordinate.html", "svg.main-svg"),
        ("reports/symbols/BTCUSDT/report.html", "img"),
        ("reports/portfolio.html", "img"),
    ],
)
def test_tuning_pages_and_the_report_draw_offline(clone, main_job, page, drawn, tmp_path):
    seen = visit(clone / page, screenshot=tmp_path / "page.png", count=(drawn,))
    assert seen.outside_requests == [] and seen.errors == []
    assert seen.counts[drawn] >= 1 and seen.broken_images == 0
    assert inked_share(tmp_path / "page.png") > 0.01
