"""The seed's setup against the defaults, on the same candles and split, side by side.

For each params file (examples/seed-params.yaml, then params.yaml) it runs the modeling chain
through the CLI in a scratch directory, as `dvc repro` would: features -> tune -> evaluate ->
train -> publish (to a scratch registry). It writes, per file, the out-of-sample figures:
returns before and after costs, trades, fees paid, exposure, accuracy with its interval, every
baseline (the trend rules and the volatility target included) before and after costs with its
Sharpe, each declared baseline's excess and p-value, the largest of them, the in-sample deflated
Sharpe, the gate's conditions and decision, and the in-sample figures of the best trial.

Usage: python benchmarks/compare_rules.py [--candles data/BTCUSDT/candles.parquet]
(`make bench-compare`; JSON in benchmarks/results/compare_rules.json)
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from klinecast.book import Layout

RUNS = {"seed": Path("examples/seed-params.yaml"), "default": Path("params.yaml")}
STAGES = ("features", "tune", "evaluate", "train", "publish")


def run_stages(work: Path, stages, *, extra: dict | None = None, label: str) -> dict[str, float]:
    """Runs `klinecast <stage> --params params.yaml` in work for each stage, as `dvc repro`
    would (tune without its progress bar), with extra arguments per stage; returns each
    stage's seconds.

    Raises:
        SystemExit: a stage failed, named with label and the end of its stderr.
    """
    klinecast = Path(sys.executable).parent / "klinecast"
    seconds = {}
    for stage in stages:
        argv = [klinecast, stage, "--params", work / "params.yaml", *(extra or {}).get(stage, [])]
        if stage == "tune":
            argv.append("--no-progress")
        started = time.perf_counter()
        done = subprocess.run(argv, cwd=work, capture_output=True, text=True)
        seconds[stage] = round(time.perf_counter() - started, 1)
        if done.returncode != 0:
            raise SystemExit(f"{label}: klinecast {stage} failed:\n{done.stderr[-2000:]}")
    return seconds


def run_chain(params: Path, candles: Path, work: Path) -> dict:
    raw = yaml.safe_load(params.read_text())
    raw["tune"]["storage"] = f"sqlite:///{work}/optuna.db"
    raw["publish"]["registry"] = str(work / "registry")
    (work / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    own = Layout(work).symbol(raw["data"]["symbols"][0])
    own.candles.parent.mkdir(parents=True, exist_ok=True)
    own.candles.unlink(missing_ok=True)
    own.candles.symlink_to(candles.resolve())
    seconds = run_stages(work, STAGES, extra={"tune": ["--workers", "2"]}, label=str(params))
    metrics = json.loads(own.metrics.read_text())
    receipt = json.loads(own.receipt.read_text())
    best = json.loads(own.best_params.read_text())
    model, significance = metrics["model"], metrics["significance"]
    keep = (
        "return_before_fees", "cumulative_return", "fees_paid", "trades", "exposure",
        "mean_holding_hours", "accuracy", "accuracy_low", "accuracy_high", "classifier_accuracy",
        "classifier_accuracy_low", "classifier_accuracy_high", "sharpe", "max_drawdown", "slippage_paid",
    )  # fmt: skip
    return {
        "params": str(params),
        "features": len(raw["features"]["indicators"]),
        "candidate": metrics["candidate"],
        "out_of_sample": {
            "span": metrics["span"],
            "model": {k: model[k] for k in keep},
            "baselines": {
                name: {
                    k: m[k] for k in ("return_before_fees", "cumulative_return", "sharpe", "trades")
                }
                for name, m in metrics["baselines"].items()
            },
            "declared": significance["declared"],
            "max_p_baseline": significance["max_p_baseline"],
            "max_p_value": significance["max_p_value"],
            "deflated_sharpe": significance["deflated_sharpe"],
            "probabilistic_sharpe": significance["probabilistic_sharpe"],
            "trials_run": significance["trials_run"],
        },
        "gate": receipt["gate"],
        "promoted": receipt["promoted"],
        "in_sample_best_trial": best["in_sample"],
        "search": best["search"],
        "seconds": seconds,
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--candles", type=Path, default=Path("data/BTCUSDT/candles.parquet"))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/compare_rules.json"))
    args = parser.parse_args()
    if not args.candles.is_file():
        raise SystemExit(f"{args.candles} is missing: run `make run` first")
    results = {}
    for name, params in RUNS.items():
        with tempfile.TemporaryDirectory(prefix=f"compare-{name}-") as tmp:
            results[name] = run_chain(params, args.candles, Path(tmp))
        oos = results[name]["out_of_sample"]
        print(
            f"{name:8s} after fees {oos['model']['cumulative_return']:+.2%} "
            f"(before {oos['model']['return_before_fees']:+.2%}), {oos['model']['trades']} "
            f"trades, largest p {oos['max_p_value']:.3f} ({oos['max_p_baseline']}), "
            f"deflated Sharpe in sample {oos['deflated_sharpe']:.2f}, "
            f"promoted {results[name]['promoted']}",
            flush=True,
        )
    document = {
        "what": "the seed's setup vs the defaults, same candles and split, out of sample",
        "machine": {"platform": platform.platform(), "python": platform.python_version()},
        "runs": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(document, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
