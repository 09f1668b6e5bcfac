"""`klinecast tune | evaluate | train | publish | report`: the modeling stages."""

from __future__ import annotations

import logging
import time
from pathlib import Path

from klinecast.cli.common import (
    load_pool,
    load_symbol_params,
    params_arg,
    path,
    read_parquet,
    require,
    symbol_arg,
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
    params_arg(parser)
    symbol_arg(parser)
    path(parser, "--features", "data/features.parquet", "feature rows")
    path(parser, "--out-dir", "reports/tune", "best_params.json, trials.csv and plots")
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
    from tqdm import tqdm

    from klinecast.redaction import redact
    from klinecast.research import tuning

    params = load_symbol_params(args)
    pool = load_pool(args)
    storage = args.storage or params.tune.storage
    n_trials = args.n_trials or params.tune.n_trials
    workers = args.workers or params.tune.workers
    require(args.features, produced_by="dvc repro features")
    log.info("tuning on %s, %d trial(s), %d worker(s)", redact(storage), n_trials, workers)
    started = time.perf_counter()
    with tqdm(
        total=n_trials, unit="trial", desc="tune", disable=True if args.no_progress else None
    ) as bar:

        def progress(finished: int, total: int) -> None:
            bar.update(max(0, min(finished, total) - bar.n))

        study = tuning.tune(
            features_path=args.features,
            params=params,
            storage_url=storage,
            n_trials=n_trials,
            workers=workers,
            first_worker=args.first_worker,
            progress=progress,
            pool=pool,
        )
    span = tuning.data_span(
        tuning.in_sample_rows(read_parquet(args.features, produced_by="dvc repro features"), params),
        params,
    )
    if pool is not None:
        span["pooled"] = sorted(pool.paths)
    summary = tuning.write_outputs(
        study,
        tuning.TuningFiles.in_dir(args.out_dir),
        storage_url=storage,
        objective=params.tune.objective,
        data_span=span,
    )
    if span["starts_later"]:
        print(
            f"tune: {span['symbol']} is tuned from its first usable hour "
            f"{span['first_usable_hour']}, after split.in_sample_start {span['in_sample_start']} "
            "(listed later, or features.min_history candles after its listing)"
        )
    search = summary["search"]
    deflated = search["deflated_sharpe"]
    print(
        f"tune: study {study.study_name}: {search['complete']} complete trial(s) "
        f"({search['failed']} failed), {search['trials_that_trade']} traded; best trial "
        f"{summary['best_trial']}: {params.tune.objective} {summary['value']:+.4f} in sample, "
        f"deflated Sharpe {'-' if deflated is None else f'{deflated:.2f}'} (of "
        f"{search['trials_run']} trials); {time.perf_counter() - started:.1f} s -> {args.out_dir}"
    )
    return 0


def add_evaluate(commands) -> None:
    parser = commands.add_parser(
        "evaluate",
        help="walk-forward the best params over the out-of-sample span, against baselines",
        description=(
            "Retrain every backtest.step_days over the out-of-sample span with the tuned "
            "hyperparameters, as the seed did, and score the model and the naive baselines "
            "(buy-and-hold, always short, last-hour momentum, coin flip) on the same hours, "
            "after fees."
        ),
    )
    params_arg(parser)
    symbol_arg(parser)
    path(parser, "--features", "data/features.parquet", "feature rows")
    path(parser, "--best-params", "reports/tune/best_params.json", "tune's output")
    path(parser, "--metrics", "reports/metrics.json", "metrics of the model and the baselines")
    path(parser, "--predictions", "reports/predictions.parquet", "per-hour predictions")
    path(parser, "--equity", "reports/equity.csv", "daily equity curves (dvc plots)")
    parser.set_defaults(run=run_evaluate)


def run_evaluate(args) -> int:
    from klinecast import atomic
    from klinecast.research import evaluation, looks

    params = load_symbol_params(args)
    frame = read_parquet(args.features, produced_by="dvc repro features")
    tuned = read_best_params(args.best_params)
    started = time.perf_counter()
    pool = load_pool(args)
    span_looks = looks.record(
        params.tune.storage, params.split.out_of_sample, params.data.symbol
    )
    result = evaluation.evaluate(
        frame, params, tuned, span_looks=span_looks, pool=pool.read() if pool else None
    )
    atomic.write_parquet(args.predictions, result.predictions)
    atomic.atomic_write(args.equity, lambda tmp: result.daily_equity().to_csv(tmp))
    card = result.scorecard
    atomic.write_json(args.metrics, card.as_dict())
    baselines = ", ".join(f"{n} {m.cumulative_return:+.2%}" for n, m in card.baselines.items())
    m, significance = card.model, card.significance
    deflated = significance.deflated_sharpe
    print(
        f"evaluate: {card.span.folds} folds, {card.span.hours} hours: model "
        f"{m.cumulative_return:+.2%} after costs ({m.return_before_fees:+.2%} before), "
        f"{m.trades} trades; largest p-value of the declared baselines "
        f"{significance.max_p_value:.3f} ({significance.max_p_baseline}), deflated Sharpe in "
        f"sample {'-' if deflated is None else f'{deflated:.2f}'}; this span looked at "
        f"{significance.span_looks} time(s); {baselines}; "
        f"{time.perf_counter() - started:.1f} s -> {args.metrics}"
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
    params_arg(parser)
    symbol_arg(parser)
    path(parser, "--features", "data/features.parquet", "feature rows")
    path(parser, "--best-params", "reports/tune/best_params.json", "tune's output")
    path(parser, "--metrics", "reports/metrics.json", "evaluate's output")
    path(parser, "--out", "models/candidate", "artifact directory")
    parser.set_defaults(run=run_train)


def run_train(args) -> int:
    from klinecast.data.versions import data_version
    from klinecast.release import metadata as artifact
    from klinecast.release import registry
    from klinecast.research.scorecard import Scorecard

    params = load_symbol_params(args)
    pool = load_pool(args)
    frame = read_parquet(args.features, produced_by="dvc repro features")
    candidate = read_best_params(args.best_params).candidate
    started = time.perf_counter()
    booster, metadata = artifact.final_model(
        frame,
        params,
        candidate,
        metrics=Scorecard.read(args.metrics),
        # the raw data's DVC hash, where dvc.yaml runs this (the repository's root)
        data_version=data_version(args.features, dvc_file=Path("data.dvc")),
        pool=pool.read() if pool else None,
    )
    registry.write_artifact(args.out, booster, metadata)
    print(
        f"train: {metadata.train_rows} rows {metadata.train_start} .. {metadata.train_end}; "
        f"{time.perf_counter() - started:.1f} s -> {args.out}"
    )
    return 0


def add_publish(commands) -> None:
    parser = commands.add_parser(
        "publish",
        help="copy the artifact into the registry; move `production` if the gate passes",
        description=(
            "Copy the artifact into the registry (a directory or s3://bucket/prefix) as a new "
            "immutable version. The production pointer moves only when the evaluation gate "
            "passes: the model's out-of-sample return after fees beats publish.gate_baseline "
            "by publish.gate_min_excess_return. A failed upload never moves the pointer."
        ),
    )
    params_arg(parser)
    symbol_arg(parser)
    path(parser, "--artifact", "models/candidate", "train's output")
    parser.add_argument(
        "--registry",
        help="registry URI (default: publish.registry; $KLINECAST_REGISTRY overrides it)",
    )
    path(parser, "--receipt", "reports/publish.json", "what was published")
    parser.set_defaults(run=run_publish)


def run_publish(args) -> int:
    import dataclasses

    from klinecast import atomic
    from klinecast.release.promotion import publish_artifact

    params = load_symbol_params(args).publish
    if args.registry:
        params = dataclasses.replace(params, registry=args.registry)
    promotion = publish_artifact(args.artifact, params)
    atomic.write_json(args.receipt, promotion.as_dict())
    receipt = promotion.receipt
    outcome = "promoted to production" if receipt.promoted else "NOT promoted (gate failed)"
    print(f"publish: {receipt.version} -> {receipt.uri}: {outcome}")
    for reason in promotion.gate.reasons():
        print(f"publish:   {reason}")
    return 0


def add_report(commands) -> None:
    parser = commands.add_parser(
        "report",
        help="one self-contained HTML report: equity, drawdown, accuracy, importance, tuning",
    )
    path(parser, "--predictions", "reports/predictions.parquet", "evaluate's predictions")
    path(parser, "--metrics", "reports/metrics.json", "evaluate's metrics")
    path(parser, "--trials", "reports/tune/trials.csv", "tune's trials table")
    path(parser, "--artifact", "models/candidate", "train's artifact")
    path(parser, "--receipt", "reports/publish.json", "publish's receipt (optional)")
    path(parser, "--out", "reports/report.html", "the HTML report")
    parser.set_defaults(run=run_report)


def run_report(args) -> int:
    from klinecast import atomic
    from klinecast.release import report

    inputs = report.ReportInputs.read(
        predictions=args.predictions,
        metrics=args.metrics,
        trials=args.trials,
        artifact=args.artifact,
        receipt=args.receipt,
    )
    page = report.render(inputs)
    atomic.atomic_write(args.out, lambda tmp: tmp.write_text(page))
    print(f"report: {len(page) / 1e3:.0f} kB -> {args.out}")
    return 0


def read_best_params(path: Path):
    """tune's best_params.json, checked."""
    from klinecast.research.tuning import BestParams

    require(path, produced_by="klinecast tune")
    return BestParams.read(path)


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
    symbol_arg(parser)
    path(parser, "--features", "data/features.parquet", "feature rows")
    from klinecast.research.tuning import search_levers

    for name, kind in search_levers().items():
        parser.add_argument(f"--{name.replace('_', '-')}", type=kind, required=True)
    parser.set_defaults(run=run_tune_trial)


def run_tune_trial(args) -> int:
    from klinecast.research import tuning

    params = load_symbol_params(args)
    if params.tune.pooling == "pooled":
        raise KlinecastError(
            "tune-trial scores one symbol's own model; tune.pooling: pooled is tuned on every "
            "symbol's rows by `klinecast tune` (dvc repro), not by Katib"
        )
    try:
        candidate = tuning.candidate_of(
            {name: getattr(args, name) for name in tuning.search_levers()}
        )
    except ValueError as exc:
        raise KlinecastError(f"tune-trial: {exc}") from None
    rows = tuning.in_sample_rows(
        read_parquet(args.features, produced_by="dvc repro features"), params
    )
    tuning.check_in_sample_span(rows, params)
    name = params.tune.objective

    def report(fold: int, value: float) -> None:
        print(f"{name}={value:.10g}", flush=True)

    value, _ = tuning.score(rows, params, candidate, on_fold=report)
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
    path(parser, "--out", "manifests/base/katib-experiment.yaml", "where to write it")
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
    params_arg(parser)
    symbol_arg(parser)
    path(parser, "--features", "data/features.parquet", "feature rows")
    parser.add_argument(
        "--params-only",
        action="store_true",
        help="check only what params.yaml alone can tell (a pipeline's first step, before data)",
    )
    parser.set_defaults(run=run_validate_params)


def run_validate_params(args) -> int:
    from klinecast.config import check_params
    from klinecast.research.validation import problems

    # The loader's problems first; then, with each faulty key at its default, what the dates
    # and the data rule out: every problem in one run.
    params, loader_problems = check_params(args.params)
    found = [f"params: {key}: {reason}" for key, reason in loader_problems]
    if params is not None and args.symbol:
        params = params.for_symbol(args.symbol)
    if params is not None:
        features = None
        if not args.params_only:
            features = read_parquet(args.features, produced_by="dvc repro features")
        salvaged = " (checked with the defaults of the keys above)" if found else ""
        found += [f"{problem}{salvaged}" for problem in problems(params, features)]
    for problem in found:
        print(f"validate-params: {problem}")
    if found:
        raise KlinecastError(f"{len(found)} problem(s) with {args.params}; nothing was run")
    against = "" if args.params_only else f" and consistent with {args.features}"
    print(f"validate-params: {args.params} is valid{against}")
    return 0
