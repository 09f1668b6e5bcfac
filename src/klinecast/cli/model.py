"""`klinecast tune | evaluate | train | publish | report`: the modeling stages."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

from klinecast.cli.common import REGISTRY_ENV, STORAGE_ENV, params_arg, path, read_parquet, require
from klinecast.errors import KlinecastError, ParamsError
from klinecast.k8s import PIPELINE_IMAGE

log = logging.getLogger("klinecast")


def add_tune(commands) -> None:
    parser = commands.add_parser(
        "tune",
        help="Optuna TPE search over the in-sample walk-forward folds (return after fees)",
        description=(
            "Tune the XGBoost hyperparameters (tune.search_space) by the strategy's cumulative "
            "return after fees over walk-forward folds of the in-sample span. Every fold reports "
            "an intermediate value so the median pruner stops hopeless trials. The study lives "
            "in an RDB storage: re-running resumes it, and several processes (--workers, or "
            "separate machines on one PostgreSQL URL) share it. Watch it live with "
            "`optuna-dashboard <storage URL>`."
        ),
    )
    params_arg(parser)
    path(parser, "--features", "data/features.parquet", "feature rows")
    path(parser, "--out-dir", "reports/tune", "best_params.json, trials.csv and plots")
    parser.add_argument("--workers", type=int, default=1, help="worker processes (default: 1)")
    parser.add_argument(
        "--first-worker",
        type=int,
        default=0,
        help="id of this machine's first worker; ids seed the samplers, so machines sharing one "
        "study pass distinct ids (default: 0)",
    )
    parser.add_argument(
        "--n-trials", type=int, help="finished trials to reach (default: tune.n_trials)"
    )
    parser.add_argument(
        "--storage", help=f"Optuna storage URL (default: ${STORAGE_ENV}, else tune.storage)"
    )
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    parser.set_defaults(run=run_tune)


def run_tune(args) -> int:
    from tqdm import tqdm

    from klinecast import tuning
    from klinecast.config import load_params

    params = load_params(args.params)
    storage = args.storage or os.environ.get(STORAGE_ENV) or params.tune.storage
    n_trials = args.n_trials or params.tune.n_trials
    require(args.features, produced_by="dvc repro features")
    name = tuning.study_name(params, data_version=file_digest(args.features))
    log.info(
        "study %s on %s, %d trial(s), %d worker(s)",
        name,
        tuning.redact(storage),
        n_trials,
        args.workers,
    )
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
            name=name,
            n_trials=n_trials,
            workers=args.workers,
            first_worker=args.first_worker,
            progress=progress,
        )
    summary = tuning.write_outputs(
        study, args.out_dir, storage_url=storage, objective=params.tune.objective
    )
    search = summary["search"]
    print(
        f"tune: study {name}: {summary['trials']}, {search['trials_that_trade']} complete "
        f"trial(s) traded; best trial {summary['best_trial']}: {params.tune.objective} "
        f"{summary['value']:+.4f} in sample; {time.perf_counter() - started:.1f} s -> {args.out_dir}"
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
    path(parser, "--features", "data/features.parquet", "feature rows")
    path(parser, "--best-params", "reports/tune/best_params.json", "tune's output")
    path(parser, "--metrics", "reports/metrics.json", "metrics of the model and the baselines")
    path(parser, "--predictions", "reports/predictions.parquet", "per-hour predictions")
    path(parser, "--equity", "reports/equity.csv", "daily equity curves (dvc plots)")
    parser.set_defaults(run=run_evaluate)


def run_evaluate(args) -> int:
    from klinecast import atomic, evaluation
    from klinecast.config import load_params
    from klinecast.report import equity_curves

    params = load_params(args.params)
    frame = read_parquet(args.features, produced_by="dvc repro features")
    tuned = read_best_params(args.best_params)
    started = time.perf_counter()
    result = evaluation.out_of_sample(frame, params, tuned.candidate)
    document = evaluation.metrics_document(
        result, params, tuned.candidate, search=tuned.search, in_sample=tuned.in_sample
    )
    atomic.write_parquet(args.predictions, result.predictions)
    daily = equity_curves(result.predictions).resample("1D").last()
    daily.index = daily.index.strftime("%Y-%m-%d")
    atomic.atomic_write(args.equity, lambda tmp: daily.rename_axis("day").to_csv(tmp))
    atomic.write_json(args.metrics, document)
    baselines = ", ".join(f"{n} {m.cumulative_return:+.2%}" for n, m in result.baselines.items())
    m, significance = result.model, document["significance"]
    print(
        f"evaluate: {result.folds} folds, {len(result.predictions)} hours: model "
        f"{m.cumulative_return:+.2%} after fees ({m.return_before_fees:+.2%} before), "
        f"{m.trades} trades; p-value vs {significance['best_baseline']} "
        f"{significance['p_value']:.3f}, deflated Sharpe {significance['deflated_sharpe']:.2f}; "
        f"{baselines}; {time.perf_counter() - started:.1f} s -> {args.metrics}"
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
    path(parser, "--features", "data/features.parquet", "feature rows")
    path(parser, "--best-params", "reports/tune/best_params.json", "tune's output")
    path(parser, "--metrics", "reports/metrics.json", "evaluate's output")
    path(parser, "--out", "models/candidate", "artifact directory")
    parser.set_defaults(run=run_train)


def run_train(args) -> int:
    import json

    from klinecast import evaluation, registry
    from klinecast.config import load_params
    from klinecast.metadata import artifact_metadata

    params = load_params(args.params)
    frame = read_parquet(args.features, produced_by="dvc repro features")
    candidate = read_best_params(args.best_params).candidate
    require(args.metrics, produced_by="klinecast evaluate")
    metrics = json.loads(args.metrics.read_text())
    started = time.perf_counter()
    trained = evaluation.train_final(frame, params, candidate)
    metadata = artifact_metadata(
        trained,
        params=params,
        candidate=candidate,
        metrics=metrics,
        data_version=data_version(args.features),
    )
    registry.write_artifact(args.out, trained.booster, metadata)
    print(
        f"train: {trained.rows} rows {trained.train_start} .. {trained.train_end}; "
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
    path(parser, "--artifact", "models/candidate", "train's output")
    parser.add_argument(
        "--registry", help=f"registry URI (default: ${REGISTRY_ENV}, else publish.registry)"
    )
    path(parser, "--receipt", "reports/publish.json", "what was published")
    parser.set_defaults(run=run_publish)


def run_publish(args) -> int:
    from klinecast import atomic, registry
    from klinecast.config import load_params
    from klinecast.evaluation import gate

    params = load_params(args.params).publish
    uri = args.registry or os.environ.get(REGISTRY_ENV) or params.registry
    metadata = registry.read_artifact_metadata(args.artifact)
    verdict = gate(metadata["metrics"], artifact_complexity(metadata), params)
    receipt = registry.publish(
        args.artifact,
        store=registry.open_store(uri),
        model_name=params.model_name,
        promote=verdict.passed,
    )
    atomic.write_json(args.receipt, receipt.as_dict() | {"gate": verdict.as_dict()})
    outcome = "promoted to production" if verdict.passed else "NOT promoted (gate failed)"
    print(f"publish: {receipt.version} -> {receipt.uri}: {outcome}")
    for reason in verdict.reasons():
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
    import json

    import pandas as pd
    import xgboost as xgb

    from klinecast import atomic, registry, report

    metadata = registry.read_artifact_metadata(args.artifact)
    booster = xgb.Booster()
    booster.load_model(str(args.artifact / registry.MODEL_FILE))
    gain = booster.get_score(importance_type="total_gain")
    total = sum(gain.values()) or 1.0
    require(args.metrics, produced_by="klinecast evaluate")
    inputs = report.ReportInputs(
        predictions=read_parquet(args.predictions, produced_by="klinecast evaluate"),
        metrics=json.loads(args.metrics.read_text()),
        trials=pd.read_csv(args.trials) if args.trials.is_file() else None,
        importance={k: gain.get(k, 0.0) / total for k in metadata["feature_names"]},
        metadata=metadata,
        publish=json.loads(args.receipt.read_text()) if args.receipt.is_file() else None,
    )
    page = report.render(inputs)
    atomic.atomic_write(args.out, lambda tmp: tmp.write_text(page))
    print(f"report: {len(page) / 1e3:.0f} kB -> {args.out}")
    return 0


def read_best_params(path: Path):
    """tune's best_params.json, checked."""
    from klinecast.tuning import BestParams

    require(path, produced_by="klinecast tune")
    return BestParams.read(path)


def artifact_complexity(metadata: dict):
    """The trees' shape from metadata.json (written by train)."""
    from klinecast.model import Complexity

    try:
        values = metadata["complexity"]
        return Complexity(
            values["trees"], values["trees_that_split"], values["splits"],
            tuple(values["features_used"]),
        )  # fmt: skip
    except (KeyError, TypeError) as exc:
        raise KlinecastError(
            f"the artifact's metadata.json lacks the model's complexity ({exc}); rerun train"
        ) from None


def file_digest(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def data_version(features: Path) -> dict:
    """The DVC hash of the raw data (data.dvc) and the hash of the feature file."""
    import yaml

    version = {"features_sha256": file_digest(features)}
    dvc_file = Path("data.dvc")
    if dvc_file.is_file():
        outs = (yaml.safe_load(dvc_file.read_text()) or {}).get("outs") or [{}]
        version["raw_md5"] = outs[0].get("md5")
    return version


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
    path(parser, "--features", "data/features.parquet", "feature rows")
    for name, kind in candidate_fields().items():
        parser.add_argument(f"--{name.replace('_', '-')}", type=kind, required=True)
    parser.set_defaults(run=run_tune_trial)


def candidate_fields() -> dict[str, type]:
    """Every parameter of a candidate (classifier, horizon, rule) with its type."""
    import dataclasses
    import typing

    from klinecast.model import HyperParams
    from klinecast.strategy import StrategyRule

    hints = typing.get_type_hints(HyperParams) | typing.get_type_hints(StrategyRule)
    names = [f.name for cls in (HyperParams, StrategyRule) for f in dataclasses.fields(cls)]
    return {name: hints[name] for name in names} | {"horizon_hours": int}


def run_tune_trial(args) -> int:
    from klinecast import tuning
    from klinecast.config import load_params
    from klinecast.model import Candidate

    params = load_params(args.params)
    values = {name: getattr(args, name) for name in candidate_fields()}
    try:
        candidate = Candidate.from_dict(
            values | {"exit_band": min(values["exit_band"], values["entry_band"])}
        )
    except ValueError as exc:
        raise KlinecastError(f"tune-trial: {exc}") from None
    rows = tuning.in_sample_rows(
        read_parquet(args.features, produced_by="dvc repro features"), params
    )
    tuning.check_in_sample_span(rows, params)
    name, fee = params.tune.objective, params.backtest.fee

    def report(fold, returns, market) -> None:
        print(f"{name}={tuning.objective_value(name, returns, market, fee=fee):.10g}", flush=True)

    result = tuning.in_sample_walk_forward(rows, params, candidate, after_fold=report)
    final = tuning.objective_value(
        name,
        result.predictions["strategy_return"].to_numpy(),
        result.predictions["next_return"].to_numpy(),
        fee=fee,
    )
    print(f"{name}={final:.10g}", flush=True)
    return 0


def add_katib(commands) -> None:
    parser = commands.add_parser(
        "katib",
        help="write the Katib Experiment generated from params.yaml's search space",
        description=(
            "Translate tune.search_space (and the seed, trial count and pruning settings) into a "
            "Katib Experiment: TPE, medianstop early stopping, maximise return_after_fees, "
            "trials running `klinecast tune-trial`."
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

    from klinecast import atomic, katib
    from klinecast.config import load_params
    from klinecast.manifests import HEADER

    document = katib.experiment(load_params(args.params), image=args.image)
    text = HEADER + yaml.safe_dump(document, sort_keys=False)
    atomic.atomic_write(args.out, lambda tmp: tmp.write_text(text))
    print(f"katib: {len(document['spec']['parameters'])} parameters -> {args.out}")
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
    path(parser, "--features", "data/features.parquet", "feature rows")
    parser.add_argument(
        "--params-only",
        action="store_true",
        help="check only what params.yaml alone can tell (a pipeline's first step, before data)",
    )
    parser.set_defaults(run=run_validate_params)


def run_validate_params(args) -> int:
    from klinecast.config import load_params
    from klinecast.validation import problems_with_data, problems_with_params

    try:
        params = load_params(args.params)
    except ParamsError as exc:  # every problem the loader found, then stop: nothing to check
        for key, reason in exc.problems:
            print(f"validate-params: params: {key}: {reason}")
        raise KlinecastError(
            f"{len(exc.problems)} problem(s) with {args.params}; nothing was run"
        ) from None
    problems = problems_with_params(params)
    if not args.params_only:
        features = read_parquet(args.features, produced_by="dvc repro features")
        problems += problems_with_data(params, features)
    for problem in problems:
        print(f"validate-params: {problem}")
    if problems:
        raise KlinecastError(f"{len(problems)} problem(s) with {args.params}; nothing was run")
    against = "" if args.params_only else f" and consistent with {args.features}"
    print(f"validate-params: {args.params} is valid{against}")
    return 0
