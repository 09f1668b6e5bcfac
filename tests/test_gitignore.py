"""Whatever the documented flows write by default is either tracked or ignored by git."""

import argparse
import subprocess
from pathlib import Path

import pytest
import yaml

from klinecast.cli import build_parser
from klinecast.config import load_params
from tests.support.paths import REPO

#: Written by tools rather than klinecast: `dvc plots show`, the tests, make setup.
TOOL_OUTPUTS = ["dvc_plots/index.html", ".hypothesis/x", "build/ci-tools", ".venv/bin"]


def cli_default_paths(parser: argparse.ArgumentParser) -> set[str]:
    """Every Path default of every `klinecast` subcommand (inputs and outputs alike)."""
    found = set()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                found |= cli_default_paths(sub)
        elif isinstance(action.default, Path):
            found.add(str(action.default))
        elif isinstance(action.default, str) and action.default.startswith("sqlite:///"):
            found.add(action.default.removeprefix("sqlite:///"))
    return found


def params_paths() -> set[str]:
    params = load_params(REPO / "params.yaml")
    urls = (params.tune.storage, params.trade.ledger)
    return {u.removeprefix("sqlite:///") for u in urls if u.startswith("sqlite:///")} | {
        f"{params.publish.registry}/x"
    }


def dvc_outputs() -> set[str]:
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    found = set()
    for stage in stages.values():
        stage = stage.get("do", stage)  # a foreach stage: its outputs for the default symbol
        for kind in ("outs", "metrics", "plots"):
            for out in stage.get(kind, []):
                path = next(iter(out)) if isinstance(out, dict) else out
                found.add(path.replace("${item}", "BTCUSDT"))
    return found


def layout_paths() -> set[str]:
    """Where the stage commands read and write (klinecast.book.Layout), for the default symbol."""
    from dataclasses import astuple

    from klinecast.book import LAYOUT

    return {
        str(value)
        for value in (*astuple(LAYOUT.symbol("BTCUSDT")), *astuple(LAYOUT.book))
        if isinstance(value, Path)
    }


def unaccounted(paths, *, root: Path = REPO) -> list[str]:
    """Paths git neither tracks nor ignores (they would show in `git status`)."""
    left = []
    for path in sorted(paths):
        ignored = subprocess.run(["git", "check-ignore", "-q", "--no-index", path], cwd=root)
        tracked = subprocess.run(
            ["git", "ls-files", "--error-unmatch", path], cwd=root, capture_output=True
        )
        if ignored.returncode != 0 and tracked.returncode != 0:
            left.append(path)
    return left


def test_every_default_output_is_tracked_or_ignored():
    paths = cli_default_paths(build_parser()) | params_paths() | dvc_outputs() | layout_paths()
    assert {"ledger.db", "optuna.db", "reports/monitor", "build/replay-ledger.db"} <= paths
    assert {"data/BTCUSDT/features.parquet", "models/BTCUSDT/candidate", "data/raw"} <= paths
    assert unaccounted(paths | set(TOOL_OUTPUTS)) == []


@pytest.mark.parametrize("path", ["ledger.db", "dvc_plots/index.html", "reports/report.html"])
def test_the_check_would_catch_a_missing_pattern(path, tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    kept = [
        p for p in (REPO / ".gitignore").read_text().splitlines() if path.split("/")[0] not in p
    ]
    (repo / ".gitignore").write_text("\n".join(kept))
    assert unaccounted([path, ".venv/bin"], root=repo) == [path]
