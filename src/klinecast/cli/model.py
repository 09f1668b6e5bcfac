"""`klinecast tune | evaluate | train | publish | report`: the modeling stages."""

from __future__ import annotations

import contextlib
import logging
import time

from klinecast.cli.common import (
    StageRun,
    params_arg,
    path,
    read_parquet,
    root_arg,
    stage_args,
)
from klinecast.errors import KlinecastError
from klinecast.platform.k8s import PIPELINE_IMAGE

log = logging.getLogger("klinecast")


def add_tune(commands) -> None:
    parser = commands.add_parser(
        "tune",
        help="Optuna TPE search over the in-sample walk-forward folds (Sharpe after costs)",
        description=(
            "Tune the classifier, its training window, its horizon and the trading rule "
            "(tune.search_space) by tune.objective after costs over walk-forward folds of the "
            "in-sample span. Every trial runs to its end; trials are asked in seeded batches of "
            "--workers and scored by that many processes, so the same data, params and seed give "
            "the same study. The study lives in an RDB storage: re-running resumes it. Watch it "
            "live with `optuna-dashboard <storage URL>`."
        ),
    )
    stage_args(parser)
    parser.add_argument("--workers", type=int, help="worker processes (default: tune.workers)")
    parser.add_argument(
        "--first-worker",
        type=int,
        default=0,
        help="0 for a study's one tuner; machines sharing one study pass distinct ids, which "
        "seed their batches apart (default: 0)",
    )
    parser.add_argument(
        "--n-trials", type=int, help="complete trials to reach (default: tune.n_trials)"
    )
    parser.add_argument(
        "--storage",
        help="Optuna storage URL (default: tune.storage; $KLINECAST_OPTUNA_STORAGE overrides it)",
    )
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    parser.set_defaults(run=run_tune)


def run_tune(args) -> int:
    from klinecast.research.tuning import TuningFiles
    from klinecast.stages.tune import tune

    run = StageRun(args)
    for symbol in run.symbols:
        started, files = time.perf_counter(), run.files(symbol)
        with progress_bar(run.params.tune.n_trials, f"tune {symbol}", args.no_progress) as bar:
            result = tune(
                run.params, symbol, features=run.features, out=TuningFiles.in_dir(files.tune_dir),
                storage=args.storage, n_trials=args.n_trials, workers=args.workers,
                first_worker=args.first_worker, progress=bar,
            )  # fmt: skip
        summary, span = result.summary, result.data_span
        if span["starts_later"]:
            print(
                f"tune: {symbol} is tuned from its first usable hour {span['first_usable_hour']}, "
                f"after split.in_sample_start {span['in_sample_start']} (listed later, or "
                "features.min_history candles after its listing)"
            )
        search = summary["search"]
        deflated = search["deflated_sharpe"]
        print(
            f"tune: {symbol}: study {result.study_name}: {search['complete']} complete trial(s) "
            f"({search['failed']} failed), {search['trials_that_trade']} traded; best trial "
            f"{summary['best_trial']}: {run.params.tune.objective} {summary['value']:+.4f} in "
            f"sample, deflated Sharpe {'-' if deflated is None else f'{deflated:.2f}'} (of "
            f"{search['trials_run']} trials); {time.perf_counter() - started:.1f} s -> "
            f"{files.tune_dir}"
        )
    return 0


@contextlib.contextmanager
def progress_bar(total: int, desc: str, hidden: bool):
    """A tqdm bar of complete trials, as the callback tuning calls after every batch."""
    from tqdm import tqdm

    with tqdm(total=total, unit="trial", desc=desc, disable=True if hidden else None) as bar:
        yield lambda finished, of: bar.update(max(0, min(finished, of) - bar.n))


def add_evaluate(commands) -> None:
    parser = commands.add_parser(
        "evaluate",
        help="walk-forward the best params over the out-of-sample span, against baselines",
        description=(
            "Retrain every backtest.step_days over the out-of-sample span with the tuned "
            "hyperparameters, and score the model and every baseline (buy-and-hold, always "
            "short, last-hour momentum, coin flip, the trend rules, volatility targeting) on "
            "the same hours, after costs, with the gate's bootstrap p-value against each."
        ),
    )
    stage_args(parser)
    parser.set_defaults(run=run_evaluate)


def run_evaluate(args) -> int:
    from klinecast.stages.evaluate import EvaluationFiles, evaluate

    run = StageRun(args)
    for symbol in run.symbols:
        started, files = time.perf_counter(), run.files(symbol)
        out = EvaluationFiles(files.metrics, files.predictions, files.equity)
        card = evaluate(
            run.params, symbol, features=run.features, best_params=files.best_params, out=out
        ).scorecard
        baselines = ", ".join(f"{n} {m.cumulative_return:+.2%}" for n, m in card.baselines.items())
        m, significance = card.model, card.significance
        deflated = significance.deflated_sharpe
        print(
            f"evaluate: {symbol}: {card.span.folds} folds, {card.span.hours} hours: model "
            f"{m.cumulative_return:+.2%} after costs ({m.return_before_fees:+.2%} before), "
            f"{m.trades} trades; largest p-value of the declared baselines "
            f"{significance.max_p_value:.3f} ({significance.max_p_baseline}), deflated Sharpe in "
            f"sample {'-' if deflated is None else f'{deflated:.2f}'}; this span looked at "
            f"{significance.span_looks} time(s); {baselines}; "
            f"{time.perf_counter() - started:.1f} s -> {files.metrics}"
        )
    return 0


def add_train(commands) -> None:
    parser = commands.add_parser(
        "train",
        help="train the final model on the last look_back days and write the artifact",
        description=(
            "Train on the last look_back_days of data before the out-of-sample end and write a "
            "model artifact: model.json (loadable by KServe's xgboost runtime) + metadata.json "
            "(feature order, params, training span, data version, metrics, library versions)."
        ),
    )
    stage_args(parser)
    parser.set_defaults(run=run_train)


def run_train(args) -> int:
    from klinecast.stages.train import train

    run = StageRun(args)
    for symbol in run.symbols:
        started, files = time.perf_counter(), run.files(symbol)
        metadata = train(
            run.params, symbol, features=run.features, best_params=files.best_params,
            metrics=files.metrics, out=files.candidate, dvc_file=args.root / "data.dvc",
        )  # fmt: skip
        print(
            f"train: {symbol}: {metadata.model_name}, {metadata.train_rows} rows "
            f"{metadata.train_start} .. {metadata.train_end}; "
            f"{time.perf_counter() - started:.1f} s -> {files.candidate}"
        )
    return 0


def add_publish(commands) -> None:
    parser = commands.add_parser(
        "publish",
        help="copy the artifact into the registry; move `production` if the gate passes",
        description=(
            "Copy the artifact into the registry (a directory or s3://bucket/prefix) as a new "
            "immutable version. The production pointer moves only when the evaluation gate "
            "passes: out of sample and after costs, the model beats every baseline its side "
            "could hold by more than publish.gate_min_excess_return, the largest of their "
            "p-values (Holm-adjusted across the book) is at most publish.gate_max_p_value, and "
            "the model is not degenerate. A failed upload never moves the pointer; the move "
            "is recorded as a decision (`klinecast rollback` steps back)."
        ),
    )
    stage_args(parser)
    parser.add_argument(
        "--registry",
        help="registry URI (default: publish.registry; $KLINECAST_REGISTRY overrides it)",
    )
    parser.set_defaults(run=run_publish)


def run_publish(args) -> int:
    from klinecast.stages.publish import publish

    run = StageRun(args)
    artifacts = {s: run.files(s).candidate for s in run.book.symbols}  # the book's gate reads all
    for symbol in run.symbols:
        files = run.files(symbol)
        promotion = publish(
            run.params, symbol, artifacts=artifacts, receipt=files.receipt,
            registry=args.registry,
        )  # fmt: skip
        receipt = promotion.receipt
        print(f"publish: {symbol}: {receipt.version} -> {receipt.uri}: {promotion.outcome}")
        for reason in promotion.gate.reasons():
            print(f"publish:   {reason}")
    return 0


def add_report(commands) -> None:
    parser = commands.add_parser(
        "report",
        help="one self-contained HTML report: equity, drawdown, accuracy, importance, tuning",
    )
    stage_args(parser)
    parser.set_defaults(run=run_report)


def run_report(args) -> int:
    from klinecast.stages.report import report

    run = StageRun(args)
    for symbol in run.symbols:
        files = run.files(symbol)
        page = report(
            predictions=files.predictions, metrics=files.metrics, trials=files.trials,
            artifact=files.candidate, receipt=files.receipt, out=files.report,
        )  # fmt: skip
        print(f"report: {symbol}: {len(page) / 1e3:.0f} kB -> {files.report}")
    return 0


def add_tune_trial(commands) -> None:
    parser = commands.add_parser(
        "tune-trial",
        help="one tuning trial with given parameters (a Katib trial's command)",
        description=(
            "Run the in-sample walk-forward with the given hyperparameters, horizon and rule, "
            "printing `<tune.objective>=<value>` (the objective after fees so far) after every "
            "fold, for Katib's StdOut metrics collector; the last line is the trial's result. "
            "exit_band is capped at entry_band, as in `klinecast tune`."
        ),
    )
    params_arg(parser)
    root_arg(parser)
    # one symbol's study (a pooled model's: the pool's), and one result line for Katib to read
    parser.add_argument("--symbol", required=True, help="the symbol whose study the trial is of")
    from klinecast.research.tuning import search_levers

    for name, kind in search_levers().items():
        parser.add_argument(f"--{name.replace('_', '-')}", type=kind, required=True)
    parser.set_defaults(run=run_tune_trial)


def run_tune_trial(args) -> int:
    from klinecast.research import tuning
    from klinecast.stages.tune import score_trial

    run = StageRun(args)
    try:
        candidate = tuning.candidate_of(
            {name: getattr(args, name) for name in tuning.search_levers()}
        )
    except ValueError as exc:
        raise KlinecastError(f"tune-trial: {exc}") from None
    name = run.params.tune.objective
    value = score_trial(
        run.params, args.symbol, features=run.features, candidate=candidate,
        on_fold=lambda fold, value: print(f"{name}={value:.10g}", flush=True),
    )  # fmt: skip
    print(f"{name}={value:.10g}", flush=True)
    return 0


def add_katib(commands) -> None:
    parser = commands.add_parser(
        "katib",
        help="write the Katib Experiment generated from params.yaml's search space",
        description=(
            "Translate tune.search_space (and the seed and trial count) into a Katib "
            "Experiment per symbol of data.symbols: TPE, maximise tune.objective, every trial "
            "run to its end, trials running `klinecast tune-trial --symbol`."
        ),
    )
    params_arg(parser)
    parser.add_argument(
        "--image",
        default=PIPELINE_IMAGE,
        help="the pipeline image the trials run (default: %(default)s)",
    )
    path(parser, "--out", "build/katib-experiments.yaml", "where to write them")
    parser.set_defaults(run=run_katib)


def run_katib(args) -> int:
    import yaml

    from klinecast import atomic
    from klinecast.config import load_params
    from klinecast.platform import katib
    from klinecast.platform.manifests import HEADER

    documents = katib.experiments(load_params(args.params), image=args.image)
    text = HEADER + yaml.safe_dump_all(documents, sort_keys=False)
    atomic.atomic_write(args.out, lambda tmp: tmp.write_text(text))
    names = ", ".join(d["metadata"]["name"] for d in documents)
    print(
        f"katib: {len(documents)} Experiment(s) ({names}), "
        f"{len(documents[0]['spec']['parameters'])} parameters each -> {args.out}"
    )
    return 0


def add_validate_params(commands) -> None:
    parser = commands.add_parser(
        "validate-params",
        help="check params.yaml, and against the feature file, before a long run",
        description=(
            "Load params.yaml strictly (unknown keys, wrong types, inverted date ranges, unknown "
            "indicators) and check it against the features: both spans hold rows and the longest "
            "look_back plus one step fits the in-sample span. Lists every problem; exit 1 if any."
        ),
    )
    stage_args(parser)
    parser.add_argument(
        "--params-only",
        action="store_true",
        help="check only what params.yaml alone can tell (a pipeline's first step, before data)",
    )
    parser.set_defaults(run=run_validate_params)


def run_validate_params(args) -> int:
    from klinecast.book import Book, Layout
    from klinecast.config import check_params
    from klinecast.research.validation import problems_with_data, problems_with_params

    # The loader's problems first; then, with each faulty key at its default, what the dates
    # and each symbol's data rule out: every problem in one run.
    params, loader_problems = check_params(args.params)
    found = [f"params: {key}: {reason}" for key, reason in loader_problems]
    salvaged = " (checked with the defaults of the keys above)" if found else ""
    if params is not None:
        found += [f"{problem}{salvaged}" for problem in problems_with_params(params)]
    book = Book(params) if params is not None and not args.params_only else None
    for symbol in ([args.symbol] if args.symbol else book.symbols) if book else ():
        where = book.files(symbol, Layout(args.root)).features
        features = read_parquet(where, produced_by=f"klinecast features --symbol {symbol}")
        for problem in problems_with_data(book.for_symbol(symbol), features):
            found.append(f"{symbol}: {problem}{salvaged}")
    for problem in found:
        print(f"validate-params: {problem}")
    if found:
        raise KlinecastError(f"{len(found)} problem(s) with {args.params}; nothing was run")
    against = "" if args.params_only else " and consistent with each symbol's features"
    print(f"validate-params: {args.params} is valid{against}")
    return 0
