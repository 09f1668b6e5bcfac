"""The power benchmark: how often the shipped search and gate find a planted edge, by shape and
strength, and how often they pass on series with no edge at all (the size).

Each series (tests/support/planted.py) has four years in sample and three out, as the mirror's
split: planted edges of three shapes (day-aligned, a trailing window at any hour, two features
together), each at several strengths and seeds, and null series (GARCH(1,1) with Student-t
innovations, driftless). Each runs the chain a user runs, in process: the default features,
`tune` over params.yaml's search space (with --trials trials, one process and one thread per
series), `evaluate` out of sample, `train`, and the gate (`release.gate.gate`) on the
scorecard and the final model. A run passes when the gate passes.

With --symbols K, each run is a book of K symbols, each its own series of the same shape and
strength (the first is the one-symbol run's series): researched per symbol, or with
`--set tune.pooling=pooled` as one model on every symbol's rows (`run_book`). The book passes
when any symbol passes its gate and Holm's condition over the book.

Power per shape and strength and the size are proportions with Wilson 95 % intervals. The
oracle (the one-line rule on the planted feature, after costs) says how strong each edge is, on
one scale for every shape.

Usage: python benchmarks/power.py [--trials 16] [--seeds 5] [--nulls 20] [--jobs 2]
       [--set tune.search_space.max_depth=[2,4] ...] [--only day_aligned,null] [--symbols 3]
(`make bench-power`; JSON in benchmarks/results/power.json, rewritten after every series (in
the order they were submitted) and marked partial until the last, the plot in
benchmarks/results/power.png)
"""

from __future__ import annotations

import argparse
import concurrent.futures
import multiprocessing
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.support, from the repo

#: The strengths of each shape: about an oracle Sharpe of 1, 1.5 and 2.5 after costs over the
#: three test years (measured on seeds 0-2; each run reports its own oracle).
STRENGTHS = {
    "day_aligned": (0.004, 0.0055, 0.008),
    "trailing": (0.0035, 0.005, 0.008),
    "interaction": (0.008, 0.011, 0.016),
}
NULL = "null"
#: The oracle's p-values need less precision than the gate's (Monte-Carlo error 0.007 near 0.05).
ORACLE_REPS = 1000


def params_for(workdir: Path, overrides: list[str], trials: int):
    """params.yaml as committed, the split moved onto the synthetic years, the study inside
    workdir, and each --set key=value applied."""
    from klinecast.config import params_from_mapping
    from tests.support.paths import REPO
    from tests.support.planted import SPLIT

    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    raw["split"] = dict(SPLIT)
    raw["tune"].update(storage=f"sqlite:///{workdir}/optuna.db", n_trials=trials, workers=1)
    for item in overrides:
        key, value = item.split("=", 1)
        *parents, name = key.split(".")
        node = raw
        for part in parents:
            node = node.setdefault(part, {})
        node[name] = yaml.safe_load(value)
    return params_from_mapping(raw)


def planted_series(shape: str, strength: float, seed: int):
    """One symbol's candles: a planted edge of shape and strength, or a null series."""
    from tests.support.planted import null_candles, shaped_candles

    if shape == NULL:
        return null_candles(seed=seed)
    return shaped_candles(shape, strength=strength, seed=seed)


#: Apart enough that a book's symbols never share a series with another seed's.
SEED_STEP = 1000
#: A book's symbols are named by letter: PLANTEDAUSDT, PLANTEDBUSDT, ...
MAX_SYMBOLS = 26


def book_symbols(count: int) -> list[str]:
    """The names of a planted book's symbols.

    Raises:
        ValueError: count is not 1..MAX_SYMBOLS.
    """
    if not 1 <= count <= MAX_SYMBOLS:
        raise ValueError(f"a planted book holds 1 to {MAX_SYMBOLS} symbols, not {count}")
    return [f"PLANTED{chr(ord('A') + j)}USDT" for j in range(count)]


def book_seeds(seed: int, count: int) -> list[int]:
    """The seeds of a planted book's series: symbol j's is seed + SEED_STEP * j, so the first
    is the one-symbol run's series of the same seed."""
    return [seed + SEED_STEP * j for j in range(count)]


def saved(frame, work: Path, symbol: str) -> Path:
    """A symbol's features written where the study reads them."""
    path = work / f"{symbol}.parquet"
    frame.to_parquet(path)
    return path


def research(frame, params, path: Path, *, pool=None, frames=None):
    """tune (one process, one thread) on the features at path, the chosen trial, the final
    model and its complexity: the chain's in-sample half. A pooled model's pool and every
    symbol's features go in pool and frames."""
    from klinecast.research import training, tuning
    from klinecast.research.model import complexity

    study = tuning.tune(
        features_path=path, params=params, storage_url=params.tune.storage,
        n_trials=params.tune.n_trials, workers=1, nthread=1, pool=pool,
    )  # fmt: skip
    tuned = tuning.chosen(study)
    final = training.train_final(frame, params, tuned.candidate, pool=frames)
    return tuned, complexity(final.booster)


def run_series(job: dict) -> dict:
    """One series through tune, evaluate, train and the gate; its figures."""
    from klinecast.release.gate import gate
    from klinecast.research import evaluation
    from klinecast.research.features import compute_features
    from tests.support.planted import oracle_sharpe

    shape, strength, seed = job["shape"], job["strength"], job["seed"]
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="power-") as tmp:
        work = Path(tmp)
        params = params_for(work, job["overrides"], job["trials"])
        candles = planted_series(shape, strength, seed)
        frame = compute_features(
            candles, indicators=params.features.indicators, interval=candles.index.freq
        ).frame
        clock = {"features": time.perf_counter() - started}
        tuned, learned = research(frame, params, saved(frame, work, params.data.symbol))
        clock["tune and train"] = time.perf_counter() - started
        evaluated = evaluation.evaluate(frame, params, tuned)
        scored = evaluated.scorecard
        decided = gate(scored, learned, params.publish)
        clock["evaluate"] = time.perf_counter() - started
        ceiling = None if shape == NULL else oracle_gate(shape, frame, evaluated.predictions, params)
        clock["oracle"] = time.perf_counter() - started
    model, significance, candidate = scored.model, scored.significance, scored.candidate
    return {
        "shape": shape,
        "strength": strength,
        "seed": seed,
        "oracle_sharpe": None if shape == NULL else round(oracle_sharpe(frame, shape), 3),
        "model_sharpe": round(model.sharpe, 3),
        "return_after_costs": round(model.cumulative_return, 4),
        "return_before_costs": round(model.return_before_fees, 4),
        "changes": model.trades,
        "roc_auc": None if model.roc_auc is None else round(model.roc_auc, 4),
        "chosen": chosen_shape(candidate),
        "features_used": list(learned.features_used),
        "in_sample_sharpe": tuned.in_sample.get("sharpe"),
        "max_p_value": significance.max_p_value,
        "max_p_baseline": significance.max_p_baseline,
        "deflated_sharpe_in_sample": significance.deflated_sharpe,
        "oracle_max_p_value": None if ceiling is None else ceiling[0],
        "oracle_passes": None if ceiling is None else ceiling[1],
        "failed": [c.name for c in decided.conditions if not c.held],
        "passed": decided.passed,
        "seconds": round(time.perf_counter() - started, 1),
        "clock": {k: round(v, 1) for k, v in clock.items()},
    }


def chosen_shape(candidate) -> dict:
    """The levers of the chosen trial that tell one model's shape from another's."""
    return {
        "cadence_hours": candidate.rule.cadence_hours,
        "horizon_hours": candidate.horizon_hours,
        "anchored": candidate.hp.anchored,
        "look_back_days": candidate.hp.look_back_days,
        "booster": candidate.hp.booster,
        "n_features": candidate.hp.n_features,
        "parallel_trees": candidate.hp.parallel_trees,
        "sample_weights": candidate.hp.sample_weights,
        "primary": candidate.rule.primary,
    }


def run_book(job: dict) -> dict:
    """A book of job["symbols"] symbols, each its own series of the same shape and strength:
    researched per symbol (a study, model and gate each) or pooled (one study and model on
    every symbol's rows, each symbol's rule scored and gated on its own), as tune.pooling
    says; then the book's gates (Holm over the symbols). The book passes when any symbol
    passes its book gate: what the trader would trade."""
    from klinecast.book import Book
    from klinecast.release.gate import book_gates, gate
    from klinecast.research import evaluation
    from klinecast.research.features import compute_features
    from klinecast.research.pooled import Pool
    from tests.support.planted import oracle_sharpe

    shape, strength, seed = job["shape"], job["strength"], job["seed"]
    names = book_symbols(job["symbols"])
    seeds = dict(zip(names, book_seeds(seed, len(names)), strict=True))
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="power-") as tmp:
        work = Path(tmp)
        overrides = [f"data.symbols=[{','.join(names)}]", *job["overrides"]]
        book = Book(params_for(work, overrides, job["trials"]))
        frames = {}
        for name in names:
            candles = planted_series(shape, strength, seeds[name])
            frames[name] = compute_features(
                candles, indicators=book.params.features.indicators, interval=candles.index.freq
            ).frame
        settings = {name: book.for_symbol(name) for name in names}
        cards, learned, tuned = {}, {}, {}
        if book.params.tune.pooling == "pooled":
            paths = {n: saved(f, work, n) for n, f in frames.items()}
            pool = Pool({n: str(p) for n, p in paths.items()}, book.weights)
            first = settings[names[0]]
            found, shaped = research(
                frames[names[0]], first, paths[names[0]], pool=pool, frames=frames
            )
            results = evaluation.pooled_out_of_sample(frames, first, found.candidate)
            for name in names:
                tuned[name], learned[name] = found, shaped
                cards[name] = evaluation.scorecard(
                    results[name], settings[name], found.candidate, search=found.search,
                    in_sample=found.in_sample, holdout=found.holdout,
                )  # fmt: skip
        else:
            for name in names:
                tuned[name], learned[name] = research(
                    frames[name], settings[name], saved(frames[name], work, name)
                )
                cards[name] = evaluation.evaluate(frames[name], settings[name], tuned[name]).scorecard
        own = {n: gate(cards[n], learned[n], book.params.publish) for n in names}
        booked = book_gates(own, book.params.publish)
        oracles = {
            n: None if shape == NULL else round(oracle_sharpe(frames[n], shape), 3) for n in names
        }
    symbols = {
        n: {
            "seed": seeds[n],
            "oracle_sharpe": oracles[n],
            "model_sharpe": round(cards[n].model.sharpe, 3),
            "return_after_costs": round(cards[n].model.cumulative_return, 4),
            "changes": cards[n].model.trades,
            "roc_auc": None if cards[n].model.roc_auc is None else round(cards[n].model.roc_auc, 4),
            "chosen": chosen_shape(cards[n].candidate),
            "max_p_value": cards[n].significance.max_p_value,
            "own_gate_passed": own[n].passed,
            "passed": booked[n].passed,
        }
        for n in names
    }
    planted = [o for o in oracles.values() if o is not None]
    return {
        "shape": shape,
        "strength": strength,
        "seed": seed,
        "pooling": book.params.tune.pooling,
        "oracle_sharpe": round(sum(planted) / len(planted), 3) if planted else None,
        "model_sharpe": round(sum(s["model_sharpe"] for s in symbols.values()) / len(names), 3),
        "roc_auc": symbols[names[0]]["roc_auc"],
        "changes": sum(s["changes"] for s in symbols.values()),
        "chosen": symbols[names[0]]["chosen"],
        "max_p_value": symbols[names[0]]["max_p_value"],  # the first symbol's, as roc_auc
        "smallest_max_p_value": min(
            (s["max_p_value"] for s in symbols.values() if s["max_p_value"] == s["max_p_value"]),
            default=float("nan"),
        ),  # the book's closest symbol to its gate's p-value condition (NaNs left out)
        "oracle_passes": None,
        "failed": [] if any(s["passed"] for s in symbols.values()) else ["every symbol's book gate"],
        "passed": any(s["passed"] for s in symbols.values()),
        "first_passed_own_gate": symbols[names[0]]["own_gate_passed"],
        "symbols": symbols,
        "seconds": round(time.perf_counter() - started, 1),
    }


def oracle_gate(shape: str, frame, predictions, params) -> tuple[float, bool]:
    """The oracle against the same declared baselines on the same hours, after the same costs:
    its largest p-value and whether it would clear the gate's excess and p-value conditions.
    No model can pass where the oracle cannot: this is the ceiling of the power."""
    import numpy as np

    from klinecast.research import baselines, stats
    from klinecast.research.backtest import strategy_returns
    from tests.support.planted import oracle_positions

    position = oracle_positions(shape, frame).reindex(predictions.index).to_numpy()
    market = predictions["next_return"].to_numpy()
    returns = strategy_returns(position, market, cost=params.backtest.cost)
    worst, beats = 0.0, True
    for name in baselines.declared("long_only", params.backtest):
        benchmark = predictions[f"{name}_return"].to_numpy()
        worst = max(worst, stats.bootstrap_p_value(
            returns, benchmark, reps=ORACLE_REPS, seed=params.tune.seed
        ))  # fmt: skip
        beats &= bool(np.prod(1 + returns) > np.prod(1 + benchmark))
    return round(worst, 4), bool(beats and worst <= params.publish.gate_max_p_value)


def summarise(runs: list[dict]) -> dict:
    """Power per shape and strength, and the size, each with its Wilson 95 % interval."""
    from klinecast.research.stats import wilson_interval

    groups: dict[tuple[str, float], list[dict]] = {}
    for run in runs:
        groups.setdefault((run["shape"], run["strength"]), []).append(run)
    table = []
    for (shape, strength), members in sorted(groups.items()):
        passed = sum(r["passed"] for r in members)
        low, high = wilson_interval(passed, len(members))
        oracles = [r["oracle_sharpe"] for r in members if r["oracle_sharpe"] is not None]
        table.append(
            {
                "shape": shape,
                "strength": strength,
                "runs": len(members),
                "passed": passed,
                "rate": passed / len(members),
                "interval": [round(low, 3), round(high, 3)],
                "mean_oracle_sharpe": round(sum(oracles) / len(oracles), 2) if oracles else None,
                "mean_model_sharpe": round(sum(r["model_sharpe"] for r in members) / len(members), 2),
                # (a book's runs have no oracle gate: None, not 0)
                "oracle_passed": None
                if all(r["oracle_passes"] is None for r in members)
                else sum(bool(r["oracle_passes"]) for r in members),
            }
        )
    return {"power": [row for row in table if row["shape"] != NULL],
            "size": [row for row in table if row["shape"] == NULL]}  # fmt: skip


def plot(summary: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(7, 4.2))
    for shape in STRENGTHS:
        rows = [r for r in summary["power"] if r["shape"] == shape]
        if not rows:
            continue
        x = [r["mean_oracle_sharpe"] for r in rows]
        y = [r["rate"] for r in rows]
        errors = [[r["rate"] - r["interval"][0] for r in rows], [r["interval"][1] - r["rate"] for r in rows]]
        axis.errorbar(x, y, yerr=errors, marker="o", capsize=3, label=shape)
    for row in summary["size"]:
        axis.axhspan(row["interval"][0], row["interval"][1], color="grey", alpha=0.2)
        axis.axhline(row["rate"], color="grey", linestyle="--", label=f"size (null) {row['rate']:.2f}")
    axis.axhline(0.8, color="black", linewidth=0.6, linestyle=":")
    axis.axvline(1.5, color="black", linewidth=0.6, linestyle=":")
    axis.set(xlabel="oracle Sharpe after costs, out of sample (mean of the seeds)",
             ylabel="share of runs the gate passed", ylim=(-0.02, 1.02),
             title="Power of the default search and gate (Wilson 95 % intervals)")  # fmt: skip
    axis.legend(loc="upper left", fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def write(args: argparse.Namespace, runs: list[dict], *, minutes: float, of: int) -> dict:
    """The JSON of the runs so far (`partial` until all `of` are in), atomically; the summary."""
    from klinecast import atomic

    summary = summarise(runs)
    document = {
        "what": "power and size of the default search and gate on planted and null series",
        "trials": args.trials,
        "overrides": args.overrides,
        "symbols": args.symbols,
        "minutes": round(minutes, 1),
        "partial": len(runs) < of,
        "machine": {"platform": platform.platform(), "python": platform.python_version(),
                    "cores": os.cpu_count(), "jobs": args.jobs},  # fmt: skip
        "summary": summary,
        "runs": runs,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    atomic.write_json(args.out, document)
    return summary


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--trials", type=int, default=16)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--nulls", type=int, default=20)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--only", default="", help="shapes to run (and/or null), comma-separated")
    parser.add_argument("--strength-index", default="", help="which strengths, e.g. 1 or 0,2")
    parser.add_argument(
        "--symbols", type=int, default=1,
        help="symbols per series: a book of that many planted series (run_book)",
    )  # fmt: skip
    parser.add_argument("--set", action="append", default=[], dest="overrides")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/power.json"))
    args = parser.parse_args()
    try:
        book_symbols(args.symbols)  # 1..MAX_SYMBOLS, before any series runs
    except ValueError as error:
        parser.error(str(error))
    if args.symbols == 1 and any(o.startswith("tune.pooling=") for o in args.overrides):
        parser.error("tune.pooling needs a book: pass --symbols 2 or more")
    only = set(filter(None, args.only.split(",")))
    picked = [int(i) for i in filter(None, args.strength_index.split(","))]
    jobs = [
        {"shape": shape, "strength": strength, "seed": seed}
        for shape, strengths in STRENGTHS.items() if not only or shape in only
        for i, strength in enumerate(strengths) if not picked or i in picked
        for seed in range(args.seeds)
    ]  # fmt: skip
    if not only or NULL in only:
        jobs += [{"shape": NULL, "strength": 0.0, "seed": seed} for seed in range(args.nulls)]
    # seed by seed, every shape and the nulls in turn: a run cut short still has a balanced part
    jobs.sort(key=lambda job: (job["seed"], job["shape"] == NULL, job["shape"], job["strength"]))
    for job in jobs:
        job.update(trials=args.trials, overrides=args.overrides, symbols=args.symbols)
    os.environ["OMP_NUM_THREADS"] = "1"  # one thread a series; --jobs series at once
    started = time.perf_counter()
    runs = []
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(args.jobs, mp_context=context) as pool:
        for run in pool.map(run_series if args.symbols == 1 else run_book, jobs):
            runs.append(run)
            print(
                f"{run['shape']} {run['strength']} seed {run['seed']}: oracle "
                f"{run['oracle_sharpe']}, model {run['model_sharpe']:.2f} (AUC {run['roc_auc']}, "
                f"{run['changes']} changes, {run['chosen']}), largest p {run['max_p_value']:.3f}, "
                f"{'PASSED' if run['passed'] else 'refused: ' + ', '.join(run['failed'])}; "
                f"{run['seconds']} s",
                flush=True,
            )
            # after every series: a run stopped early keeps what it measured (marked partial)
            write(args, runs, minutes=(time.perf_counter() - started) / 60, of=len(jobs))
    summary = write(args, runs, minutes=(time.perf_counter() - started) / 60, of=len(jobs))
    plot(summary, args.out.with_suffix(".png"))
    for row in summary["power"] + summary["size"]:
        print(
            f"{row['shape']:>12} {row['strength']:<7} oracle {row['mean_oracle_sharpe']}: "
            f"{row['passed']}/{row['runs']} = {row['rate']:.2f} {row['interval']}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
