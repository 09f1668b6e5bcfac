"""Local KFP pipeline run vs `make data && dvc repro`, same small config, same machine.

Both start from nothing: a fresh project copy, an empty Optuna storage, the shared mirror as
the data source. The two runs alternate --repeats times; each side keeps its fastest run, and
the result is their ratio (the machines are shared and noisy).

Usage: python benchmarks/bench_pipeline.py [--repeats 2]
Writes benchmarks/results/pipeline.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
MIRROR = REPO.parent / "shared" / "binance-mirror"
BIN = Path(sys.executable).parent


def small_params(path: Path, registry: Path) -> Path:
    raw = yaml.safe_load((REPO / "examples/small-params.yaml").read_text())
    raw["data"]["base_url"] = str(MIRROR)
    raw["publish"].update(registry=str(registry), gate_min_excess_return=-100.0)
    raw["tune"]["storage"] = f"sqlite:///{path.parent}/optuna.db"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def run(argv: list[str], cwd: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KLINECAST_", "KUBE"))}
    env["PATH"] = f"{BIN}:{env['PATH']}"
    done = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"{' '.join(argv)} failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")


def time_dvc(workdir: Path) -> float:
    """A project copy; then what `make run` does: ingest, dvc add, dvc repro."""
    for name in ("dvc.yaml", ".dvcignore"):
        shutil.copy(REPO / name, workdir / name)
    shutil.copytree(REPO / ".dvc", workdir / ".dvc", ignore=shutil.ignore_patterns("cache", "tmp"))
    shutil.copytree(REPO / "src", workdir / "src", ignore=shutil.ignore_patterns("__pycache__"))
    small_params(workdir / "params.yaml", workdir / "registry")
    run(["git", "init", "-q"], workdir)
    started = time.perf_counter()
    run(["klinecast", "ingest", "--no-progress"], workdir)
    run(["dvc", "add", "--quiet", "data/raw"], workdir)
    run(["dvc", "repro"], workdir)
    return time.perf_counter() - started


def time_pipeline(workdir: Path) -> float:
    params = small_params(workdir / "params.yaml", workdir / "registry")
    started = time.perf_counter()
    run(
        [
            "klinecast", "pipeline", "run", "--local", "--params", str(params),
            "--pipeline-root", str(workdir / "root"),
        ],
        workdir,
    )  # fmt: skip
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks/results/pipeline.json")
    args = parser.parse_args()
    times: dict[str, list[float]] = {"dvc_repro": [], "kfp_local": []}
    for repeat in range(args.repeats):
        for name, timer in (("dvc_repro", time_dvc), ("kfp_local", time_pipeline)):
            with tempfile.TemporaryDirectory() as tmp:
                times[name].append(timer(Path(tmp)))
            print(f"repeat {repeat + 1}: {name} {times[name][-1]:.1f} s", flush=True)
    best = {name: min(values) for name, values in times.items()}
    result = {
        "config": "examples/small-params.yaml (4 trials, one tune task of 2 workers, gate forced open)",
        "seconds": times,
        "best_seconds": best,
        "kfp_local_over_dvc_repro": best["kfp_local"] / best["dvc_repro"],
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
