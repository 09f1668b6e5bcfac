"""Two power benchmark runs on the same series, side by side: how a lever (or the trial count)
changed each shape's model, series by series.

Runs are matched on (shape, strength, seed); a book's run (`--symbols K`) is matched through
its first symbol, whose series is the one-symbol run's. Per shape: the mean model Sharpe and
AUC out of sample, the passes, and how often the two chose the same shape of model (the same
cadence and window kind, a label and a look-back within a factor of 2 of each other).

Usage: python benchmarks/power_compare.py A.json B.json [--out comparison.json]
(prints a Markdown table; `--out` writes the same figures as JSON)
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def first_symbol(run: dict) -> dict:
    """A run's figures for its first symbol: the run itself, or a book's first symbol (whose
    own gate, before Holm over the book, is what a one-symbol run's gate is)."""
    if "symbols" not in run:
        return run
    first = run["symbols"][min(run["symbols"])]
    return {**run, **first, "passed": first["own_gate_passed"]}


def same_shape(a: dict, b: dict) -> bool:
    """Two chosen trials of one shape: cadence and window kind equal, label and look-back
    within a factor of 2."""

    def near(x: float, y: float) -> bool:
        return max(x, y) <= 2 * min(x, y)

    return (
        a["cadence_hours"] == b["cadence_hours"]
        and a["anchored"] == b["anchored"]
        and near(a["horizon_hours"], b["horizon_hours"])
        and near(a["look_back_days"], b["look_back_days"])
    )


def compare(left: dict, right: dict) -> list[dict]:
    """Per shape, the matched series' figures in each run."""

    def keyed(document: dict) -> dict:
        return {(r["shape"], r["strength"], r["seed"]): first_symbol(r) for r in document["runs"]}

    a, b = keyed(left), keyed(right)
    shared = sorted(set(a) & set(b))
    rows = []
    for shape in sorted({key[0] for key in shared}):
        keys = [key for key in shared if key[0] == shape]
        rows.append(
            {
                "shape": shape,
                "series": len(keys),
                **{
                    f"{side}_{name}": summary
                    for side, runs in (("a", a), ("b", b))
                    for name, summary in _figures([runs[k] for k in keys]).items()
                },
                "same_shape": sum(same_shape(a[k]["chosen"], b[k]["chosen"]) for k in keys),
                "same_cadence": sum(
                    a[k]["chosen"]["cadence_hours"] == b[k]["chosen"]["cadence_hours"] for k in keys
                ),
            }
        )
    return rows


def _figures(runs: list[dict]) -> dict:
    aucs = [r["roc_auc"] for r in runs if r["roc_auc"] is not None]
    return {
        "model_sharpe": round(sum(r["model_sharpe"] for r in runs) / len(runs), 2),
        "roc_auc": round(sum(aucs) / len(aucs), 3) if aucs else None,
        "passed": sum(bool(r["passed"]) for r in runs),
    }


def table(rows: list[dict], names: tuple[str, str]) -> str:
    a, b = names
    lines = [
        f"| shape | series | {a}: Sharpe, AUC, passed | {b}: Sharpe, AUC, passed "
        "| same shape chosen | same cadence |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for row in rows:
        cells = [
            f"{row[f'{side}_model_sharpe']:.2f}, {row[f'{side}_roc_auc']}, "
            f"{row[f'{side}_passed']} of {row['series']}"
            for side in ("a", "b")
        ]
        lines.append(
            f"| {row['shape']} | {row['series']} | {cells[0]} | {cells[1]} "
            f"| {row['same_shape']} of {row['series']} | {row['same_cadence']} of {row['series']} |"
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("a", type=Path)
    parser.add_argument("b", type=Path)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    left, right = (json.loads(path.read_text()) for path in (args.a, args.b))
    rows = compare(left, right)
    if not rows:
        print(f"{args.a} and {args.b} share no series (shape, strength, seed)", file=sys.stderr)
        return 1
    print(table(rows, (args.a.stem, args.b.stem)))
    if args.out:
        args.out.write_text(json.dumps({"a": str(args.a), "b": str(args.b), "rows": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
