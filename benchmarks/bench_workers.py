"""Tuning workers sharing one Optuna study on PostgreSQL: trials per hour with 1 and 2 workers,
and what several symbols times N workers would take.

Each worker is a `klinecast tune --workers 1 --first-worker K` process on the same study (as
tuners on several machines would share one), pinned to a core of its own (a pod with one CPU); all of them
stop once the study holds --trials complete trials.
Both cases run in this one process's lifetime, one after the other, on a fresh study each, and
are compared as a ratio (the machines are shared and noisy). Then every symbol's features
(--features, one file per symbol, e.g. the five-symbol example's) get one worker for a few
trials; the study's own trial durations give each symbol's cost per trial; and with several
symbols, one pooled study of all of them (tune.pooling: pooled) for as many trials, against the
sum of the symbols' own trials.

Usage: python benchmarks/bench_workers.py [--features data/BTCUSDT/features.parquet ...]
       [--params params.yaml] [--trials 12] [--symbol-trials 4] [--storage postgresql+psycopg2://postgres@127.0.0.1/test]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import yaml

from klinecast.book import LAYOUT

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def tune_processes(
    params: Path,
    *,
    root: Path,
    workers: int,
    trials: int,
    storage: str,
    symbol: str,
) -> float:
    """Starts `workers` tune processes on one fresh study, each on a core of its own; returns
    the wall seconds until all have stopped. root: the checkout whose data/<symbol>/
    features.parquet they read (a pooled study reads every symbol's); each writes its outputs
    in a checkout of its own that shares root's data."""
    cores = sorted(os.sched_getaffinity(0))
    if workers > len(cores):
        raise SystemExit(f"{workers} workers need {workers} cores; this machine gives {len(cores)}")
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as out:
        running = []
        for k in range(workers):
            own = Path(out) / f"w{k}"
            own.mkdir()
            (own / "data").symlink_to(root / "data")
            argv = [str(BIN / "klinecast"), "tune", "--params", str(params), "--symbol", symbol,
                    "--root", str(own), "--workers", "1", "--n-trials", str(trials),
                    "--storage", storage, "--no-progress", "--first-worker", str(k)]  # fmt: skip
            running.append(
                subprocess.Popen(
                    argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                    preexec_fn=lambda core=cores[k]: os.sched_setaffinity(0, {core}),
                )  # fmt: skip
            )
        for process in running:
            _, err = process.communicate()
            if process.returncode != 0:
                raise SystemExit(f"a tune worker failed:\n{err[-2000:]}")
    return time.perf_counter() - started


def fresh_params(base: Path, work: Path, symbol: str, *, pool: list[str] | None = None) -> Path:
    """base with data.symbols = [symbol] (or the pool, tune.pooling pooled) and a study name of
    its own (a fresh study)."""
    raw = yaml.safe_load(base.read_text())
    raw["data"]["symbols"] = pool or [symbol]
    raw["tune"]["pooling"] = "pooled" if pool else "per_symbol"
    if pool:
        raw["portfolio"] = {"weights": {}}
    raw["tune"]["study_name"] = f"bench-workers-{uuid.uuid4().hex[:8]}"
    path = work / f"params-{raw['tune']['study_name']}.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def trial_seconds(storage: str, prefix: str) -> float:
    """The mean duration of the complete trials of the study whose name starts with prefix
    (the tuner appends a fingerprint), without the process's start-up."""
    import optuna

    (summary,) = [s for s in optuna.get_all_study_summaries(storage) if s.study_name.startswith(prefix)]
    trials = optuna.load_study(study_name=summary.study_name, storage=storage).trials
    done = [t.duration.total_seconds() for t in trials if t.duration is not None]
    return sum(done) / len(done)


def symbol_of(features: Path) -> str:
    """data/<SYMBOL>/features.parquet -> SYMBOL."""
    return features.parent.name


def root_of(features: Path) -> Path:
    """data/<SYMBOL>/features.parquet -> the checkout it lies in."""
    return features.parent.parent.parent


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--features", type=Path, nargs="+", default=[LAYOUT.symbol("BTCUSDT").features],
        help="one feature file per symbol, data/<SYMBOL>/features.parquet; the first one runs "
        "the 1-vs-2-workers case",
    )  # fmt: skip
    parser.add_argument(
        "--params", type=Path, default=REPO / "params.yaml",
        help="the params the features were computed with (default: params.yaml)",
    )  # fmt: skip
    parser.add_argument("--trials", type=int, default=12)
    parser.add_argument("--symbol-trials", type=int, default=4)
    parser.add_argument(
        "--storage", default=os.environ.get("KLINECAST_BENCH_STORAGE",
                                            "postgresql+psycopg2://postgres@127.0.0.1:5432/test"),
    )  # fmt: skip
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/bench_workers.json"))
    args = parser.parse_args()
    for path in args.features:
        if not path.is_file():
            raise SystemExit(f"{path} does not exist; run `make run` (or the example) first")
    args.features = [path.resolve() for path in args.features]  # (a pooled study runs elsewhere)
    work = Path(tempfile.mkdtemp(prefix="bench-workers-"))
    first = args.features[0]
    shared = {}
    for workers in (1, 2):
        params = fresh_params(args.params, work, symbol_of(first))
        seconds = tune_processes(
            params, root=root_of(first), workers=workers, trials=args.trials,
            storage=args.storage, symbol=symbol_of(first),
        )  # fmt: skip
        shared[workers] = {"seconds": seconds, "trials_per_hour": args.trials * 3600 / seconds}
        print(f"{workers} worker(s): {args.trials} trials in {seconds:.1f} s", flush=True)
    per_symbol = {}
    for path in args.features:
        symbol = symbol_of(path)
        params = fresh_params(args.params, work, symbol)
        tune_processes(
            params, root=root_of(path), workers=1, trials=args.symbol_trials,
            storage=args.storage, symbol=symbol,
        )  # fmt: skip
        seconds = trial_seconds(args.storage, yaml.safe_load(params.read_text())["tune"]["study_name"])
        per_symbol[symbol] = {"seconds_per_trial": seconds}
        print(f"{symbol}: {seconds:.2f} s a trial, one worker", flush=True)
    pooled = None
    if len(args.features) > 1:  # one pooled study of every symbol, as tune.pooling: pooled runs
        pool = [symbol_of(path) for path in args.features]
        params = fresh_params(args.params, work, pool[0], pool=pool)
        tune_processes(
            params, root=root_of(first), workers=1, trials=args.symbol_trials,
            storage=args.storage, symbol=pool[0],
        )  # fmt: skip
        seconds = trial_seconds(args.storage, yaml.safe_load(params.read_text())["tune"]["study_name"])
        own = sum(s["seconds_per_trial"] for s in per_symbol.values())
        pooled = {"symbols": pool, "seconds_per_trial": seconds, "over_per_symbol_sum": seconds / own}
        print(f"pooled ({', '.join(pool)}): {seconds:.2f} s a trial, one worker "
              f"(x{seconds / own:.2f} the per-symbol trials' sum)", flush=True)  # fmt: skip
    n_trials = yaml.safe_load(args.params.read_text())["tune"]["n_trials"]
    serial = sum(s["seconds_per_trial"] for s in per_symbol.values()) * n_trials
    speedup = shared[2]["trials_per_hour"] / shared[1]["trials_per_hour"]
    document = {
        "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform()},
        "storage": args.storage.split("@")[-1],
        "shared_study": {"trials": args.trials, **{f"{k}_workers": v for k, v in shared.items()}},
        "two_over_one": speedup,
        "per_symbol": per_symbol,
        "pooled": pooled,
        "estimate": {
            "n_trials_per_symbol": n_trials,
            "one_worker_minutes": serial / 60,
            # a worker is a pod with one core, as here: N pods divide the serial trial time
            # while the study's storage keeps up (two_over_one measures it at 2)
            **{f"{n}_workers_minutes": serial / n / 60 for n in (2, 4, 8)},
        },
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(document, indent=2) + "\n")
    print(json.dumps(document, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
