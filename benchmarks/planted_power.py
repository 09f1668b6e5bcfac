"""How weak an edge the default search still finds: the planted-signal chain over strengths
and seeds.

For each strength and seed it writes the planted-signal project (tests/support/planted.py:
four synthetic years in sample, three out, the edge in the 24-hour taker-buy share) and runs
`klinecast tune`, `evaluate`, `train` and `publish` on it with params.yaml as committed, as
the planted test does for strength 0.007 and seed 0. Per run: the oracle's Sharpe after costs
(the one-line rule on the planted feature), the model's, its AUC, changes, the chosen rule's
shape, the largest p-value of the declared baselines and whether the gate passed.

Usage: python benchmarks/planted_power.py [--strengths 0.005,0.006,0.007] [--seeds 0,1]
(`make bench-planted`; about 3 minutes a run on 2 cores; JSON in
benchmarks/results/planted_power.json)
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.support, from the repo

from benchmarks.compare_rules import run_stages  # noqa: E402
from tests.support.planted import oracle_sharpe, planted_project  # noqa: E402

STAGES = ("tune", "evaluate", "train", "publish")


def run_one(strength: float, seed: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="planted-") as tmp:
        work = Path(tmp)
        frame = planted_project(work, strength=strength, seed=seed)
        seconds = run_stages(work, STAGES, label=f"strength {strength} seed {seed}")
        metrics = json.loads((work / "reports/symbols/BTCUSDT/metrics.json").read_text())
        receipt = json.loads((work / "reports/symbols/BTCUSDT/publish.json").read_text())
        model, significance = metrics["model"], metrics["significance"]
        candidate = metrics["candidate"]
        return {
            "strength": strength,
            "seed": seed,
            "oracle_sharpe": round(oracle_sharpe(frame), 3),
            "model_sharpe": round(model["sharpe"], 3),
            "return_after_costs": round(model["cumulative_return"], 4),
            "return_before_costs": round(model["return_before_fees"], 4),
            "changes": model["trades"],
            "roc_auc": round(model["roc_auc"], 4),
            "rule": {k: candidate[k] for k in ("cadence_hours", "horizon_hours", "side")}
            | {"anchored": candidate["anchored"], "look_back_days": candidate["look_back_days"]},
            "max_p_value": significance["max_p_value"],
            "max_p_baseline": significance["max_p_baseline"],
            "deflated_sharpe_in_sample": round(significance["deflated_sharpe"], 3),
            "gate_passed": receipt["gate"]["passed"],
            "seconds": round(sum(seconds.values()), 1),
        }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--strengths", default="0.005,0.006,0.007")
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/planted_power.json"))
    args = parser.parse_args()
    strengths = [float(s) for s in args.strengths.split(",")]
    seeds = [int(s) for s in args.seeds.split(",")]
    runs = []
    for strength in strengths:
        for seed in seeds:
            result = run_one(strength, seed)
            runs.append(result)
            print(
                f"strength {strength} seed {seed}: oracle Sharpe {result['oracle_sharpe']:.2f}, "
                f"model {result['model_sharpe']:.2f} (AUC {result['roc_auc']:.3f}, "
                f"{result['changes']} changes, {result['rule']}), largest p "
                f"{result['max_p_value']:.3f} ({result['max_p_baseline']}), gate "
                f"{'passed' if result['gate_passed'] else 'refused'}; {result['seconds']} s",
                flush=True,
            )
    document = {
        "what": "the planted-signal chain (params.yaml as committed) over strengths and seeds",
        "machine": {"platform": platform.platform(), "python": platform.python_version()},
        "runs": runs,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(document, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
