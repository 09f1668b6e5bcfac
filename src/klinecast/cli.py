"""`klinecast <stage>`: the entry points that dvc.yaml, the KFP components and the images call."""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import os
import sys
import time
from pathlib import Path

from klinecast.errors import KlinecastError

log = logging.getLogger("klinecast")

BASE_URL_ENV = "KLINECAST_BASE_URL"
STORAGE_ENV = "KLINECAST_OPTUNA_STORAGE"
REGISTRY_ENV = "KLINECAST_REGISTRY"


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        return args.run(args) or 0
    except KlinecastError as exc:
        print(f"klinecast {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"klinecast {args.command}: interrupted", file=sys.stderr)
        return 130


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="klinecast",
        description=(
            "Hourly crypto forecasting on Binance klines: download verified archives, build "
            "candles and TA-Lib features. Every stage reads its parameters from params.yaml."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=(
            "typical run:\n"
            "  klinecast ingest          # download + verify archives into data/raw\n"
            "  dvc add data/raw          # (make data does both)\n"
            "  dvc repro                 # candles -> features -> tune -> evaluate -> train\n"
            "                            #   -> publish -> report\n"
        ),
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    commands = parser.add_subparsers(dest="command", required=True, metavar="<command>")
    _add_ingest(commands)
    _add_candles(commands)
    _add_features(commands)
    _add_tune(commands)
    _add_evaluate(commands)
    _add_train(commands)
    _add_publish(commands)
    _add_report(commands)
    _add_serve(commands)
    _add_manifest(commands)
    return parser


def _params_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--params",
        type=Path,
        default=Path("params.yaml"),
        help="parameters file (default: %(default)s)",
    )


def _add_ingest(commands) -> None:
    parser = commands.add_parser(
        "ingest",
        help="download and verify Binance kline archives into data/raw",
        description=(
            "Download the monthly kline archives from data.start through the last complete "
            "month (or data.end), then the current month's daily archives, in the "
            "data.binance.vision layout. Every zip is checked against its .CHECKSUM; archives "
            "already verified in --raw-dir are not downloaded again."
        ),
    )
    _params_arg(parser)
    parser.add_argument(
        "--base-url",
        help=(
            "where the archives live: an http(s) URL, file:// URL or directory laid out like "
            f"data.binance.vision (default: ${BASE_URL_ENV}, else params data.base_url)"
        ),
    )
    parser.add_argument(
        "--raw-dir", type=Path, default=Path("data/raw"), help="default: %(default)s"
    )
    parser.add_argument(
        "--end",
        type=dt.date.fromisoformat,
        help="last day to fetch, YYYY-MM-DD (overrides data.end)",
    )
    parser.add_argument(
        "--workers", type=int, default=8, help="parallel downloads (default: %(default)s)"
    )
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    parser.set_defaults(run=_run_ingest)


def _run_ingest(args) -> int:
    import dataclasses

    from klinecast.config import load_params
    from klinecast.data.ingest import ingest

    params = load_params(args.params).data
    if args.end is not None:
        params = dataclasses.replace(params, end=args.end)
    base_url = args.base_url or os.environ.get(BASE_URL_ENV) or params.base_url
    started = time.perf_counter()
    result = ingest(
        params,
        raw_dir=args.raw_dir,
        base_url=base_url,
        today=dt.datetime.now(dt.UTC).date(),
        workers=args.workers,
        progress=False if args.no_progress else None,
    )
    print(
        f"ingest: {result.planned} archive(s) planned from {base_url}: "
        f"{len(result.downloaded)} downloaded ({result.downloaded_bytes / 1e6:.1f} MB), "
        f"{len(result.already_verified)} already verified, "
        f"{len(result.not_yet_published)} not published yet, "
        f"{len(result.pruned)} daily archive(s) pruned; {time.perf_counter() - started:.1f} s"
    )
    return 0


def _add_candles(commands) -> None:
    parser = commands.add_parser(
        "candles",
        help="parse + validate data/raw into one Parquet candle file and a report",
        description=(
            "Parse every verified archive of data.symbol/data.interval, validate the candle "
            "rules (hourly index, no duplicates, OHLC, non-negative volumes), and write the "
            "candles plus a JSON report of rows, span and gaps. Gaps are reported, not filled."
        ),
    )
    _params_arg(parser)
    parser.add_argument(
        "--raw-dir", type=Path, default=Path("data/raw"), help="default: %(default)s"
    )
    parser.add_argument(
        "--out", type=Path, default=Path("data/candles.parquet"), help="default: %(default)s"
    )
    parser.add_argument(
        "--report", type=Path, default=Path("reports/candles.json"), help="default: %(default)s"
    )
    parser.set_defaults(run=_run_candles)


def _run_candles(args) -> int:
    from klinecast import atomic
    from klinecast.config import load_params
    from klinecast.data.build import build_candles

    params = load_params(args.params).data
    started = time.perf_counter()
    candles, report = build_candles(args.raw_dir, params)
    atomic.write_parquet(args.out, candles)
    atomic.write_json(args.report, report.as_dict())
    print(
        f"candles: {report.rows} rows from {report.files} archive(s), {report.first} .. "
        f"{report.last}, {len(report.gaps)} gap(s) ({report.missing_candles} missing candles); "
        f"{time.perf_counter() - started:.1f} s -> {args.out}"
    )
    return 0


def _add_features(commands) -> None:
    parser = commands.add_parser(
        "features",
        help="compute TA-Lib features and the next-hour label from the candles",
        description=(
            "Compute features.indicators (e.g. ma_ratio_5, rsi_14, mfi_21) and the label "
            "(does the next candle close higher?) with the same function the model server "
            "uses. Rows whose indicator window crosses a gap are dropped and counted. "
            "With --measure, measure instead how many candles of history serving needs."
        ),
    )
    _params_arg(parser)
    parser.add_argument(
        "--candles", type=Path, default=Path("data/candles.parquet"), help="default: %(default)s"
    )
    parser.add_argument(
        "--out", type=Path, default=Path("data/features.parquet"), help="default: %(default)s"
    )
    parser.add_argument(
        "--report", type=Path, default=Path("reports/features.json"), help="default: %(default)s"
    )
    parser.add_argument(
        "--measure",
        action="store_true",
        help="measure the candles of history after which short-window features equal full-history ones",
    )
    parser.add_argument(
        "--samples",
        type=int,
        default=1000,
        help="end points checked by --measure (default: %(default)s)",
    )
    parser.set_defaults(run=_run_features)


def _run_features(args) -> int:
    import pandas as pd

    from klinecast import atomic
    from klinecast.config import load_params
    from klinecast.features import compute_features, measure_min_history

    params = load_params(args.params)
    candles = _read_parquet(args.candles, produced_by="klinecast candles")
    indicators = params.features.indicators
    interval = params.data.interval_delta
    if args.measure:
        started = time.perf_counter()
        needed = measure_min_history(
            candles, indicators=indicators, interval=interval, samples=args.samples
        )
        verdict = "ok" if params.features.min_history >= needed else "TOO SMALL"
        print(
            f"min_history: {needed} candles make every one of {args.samples} sampled rows agree "
            f"to 1e-9; params features.min_history = {params.features.min_history} ({verdict}); "
            f"{time.perf_counter() - started:.1f} s"
        )
        return 0 if verdict == "ok" else 1
    started = time.perf_counter()
    result = compute_features(candles, indicators=indicators, interval=interval)
    atomic.write_parquet(args.out, result.frame)
    labeled = int(result.frame["label"].notna().sum())
    atomic.write_json(
        args.report,
        {
            "rows": len(result.frame),
            "labeled_rows": labeled,
            "up_share": float(result.frame["label"].mean()),
            "dropped_at_start": result.dropped_at_start,
            "dropped_after_gaps": result.dropped_after_gaps,
            "unlabeled": result.unlabeled,
            "first": pd.Timestamp(result.frame.index[0]).isoformat(),
            "last": pd.Timestamp(result.frame.index[-1]).isoformat(),
            "indicators": list(indicators),
            "min_history": params.features.min_history,
        },
    )
    print(
        f"features: {len(result.frame)} rows x {len(indicators)} indicators, {labeled} labeled; "
        f"dropped {result.dropped_at_start} at the start and {result.dropped_after_gaps} whose "
        f"window crosses a gap; {time.perf_counter() - started:.1f} s -> {args.out}"
    )
    return 0


def _path(parser: argparse.ArgumentParser, flag: str, default: str, what: str) -> None:
    parser.add_argument(
        flag, type=Path, default=Path(default), help=f"{what} (default: %(default)s)"
    )


def _add_tune(commands) -> None:
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
    _params_arg(parser)
    _path(parser, "--features", "data/features.parquet", "feature rows")
    _path(parser, "--out-dir", "reports/tune", "best_params.json, trials.csv and plots")
    parser.add_argument("--workers", type=int, default=1, help="worker processes (default: 1)")
    parser.add_argument(
        "--n-trials", type=int, help="finished trials to reach (default: tune.n_trials)"
    )
    parser.add_argument(
        "--storage", help=f"Optuna storage URL (default: ${STORAGE_ENV}, else tune.storage)"
    )
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    parser.set_defaults(run=_run_tune)


def _run_tune(args) -> int:
    from tqdm import tqdm

    from klinecast import tuning
    from klinecast.config import load_params

    params = load_params(args.params)
    storage = args.storage or os.environ.get(STORAGE_ENV) or params.tune.storage
    n_trials = args.n_trials or params.tune.n_trials
    _require(args.features, produced_by="dvc repro features")
    name = tuning.study_name(params, data_version=_file_digest(args.features))
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
            progress=progress,
        )
    summary = tuning.write_outputs(study, args.out_dir, storage_url=storage)
    print(
        f"tune: study {name}: {summary['trials']}; best trial {summary['best_trial']} returned "
        f"{summary['value']:+.4f} in sample; {time.perf_counter() - started:.1f} s -> {args.out_dir}"
    )
    return 0


def _add_evaluate(commands) -> None:
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
    _params_arg(parser)
    _path(parser, "--features", "data/features.parquet", "feature rows")
    _path(parser, "--best-params", "reports/tune/best_params.json", "tune's output")
    _path(parser, "--metrics", "reports/metrics.json", "metrics of the model and the baselines")
    _path(parser, "--predictions", "reports/predictions.parquet", "per-hour predictions")
    _path(parser, "--equity", "reports/equity.csv", "daily equity curves (dvc plots)")
    parser.set_defaults(run=_run_evaluate)


def _run_evaluate(args) -> int:
    from klinecast import atomic, evaluation
    from klinecast.config import load_params
    from klinecast.report import equity_curves

    params = load_params(args.params)
    frame = _read_parquet(args.features, produced_by="dvc repro features")
    hp = _best_hyperparams(args.best_params)
    started = time.perf_counter()
    result = evaluation.out_of_sample(frame, params, hp)
    document = evaluation.metrics_document(result, params, hp)
    atomic.write_parquet(args.predictions, result.predictions)
    daily = equity_curves(result.predictions).resample("1D").last()
    daily.index = daily.index.strftime("%Y-%m-%d")
    atomic.atomic_write(args.equity, lambda tmp: daily.rename_axis("day").to_csv(tmp))
    atomic.write_json(args.metrics, document)
    baselines = ", ".join(f"{n} {m.cumulative_return:+.2%}" for n, m in result.baselines.items())
    print(
        f"evaluate: {result.folds} folds, {len(result.predictions)} hours: model "
        f"{result.model.cumulative_return:+.2%} after fees (accuracy {result.model.accuracy:.2%}); "
        f"{baselines}; {time.perf_counter() - started:.1f} s -> {args.metrics}"
    )
    return 0


def _add_train(commands) -> None:
    parser = commands.add_parser(
        "train",
        help="train the final model on the last look_back days and write the artifact",
        description=(
            "Train on the last look_back_days of data before the out-of-sample end and write a "
            "model artifact: model.json (loadable by KServe's xgboost runtime) + metadata.json "
            "(feature order, params, training span, data version, metrics, library versions)."
        ),
    )
    _params_arg(parser)
    _path(parser, "--features", "data/features.parquet", "feature rows")
    _path(parser, "--best-params", "reports/tune/best_params.json", "tune's output")
    _path(parser, "--metrics", "reports/metrics.json", "evaluate's output")
    _path(parser, "--out", "models/candidate", "artifact directory")
    parser.set_defaults(run=_run_train)


def _run_train(args) -> int:
    import json

    from klinecast import evaluation, registry
    from klinecast.config import load_params
    from klinecast.metadata import artifact_metadata

    params = load_params(args.params)
    frame = _read_parquet(args.features, produced_by="dvc repro features")
    hp = _best_hyperparams(args.best_params)
    _require(args.metrics, produced_by="klinecast evaluate")
    metrics = json.loads(args.metrics.read_text())
    started = time.perf_counter()
    trained = evaluation.train_final(frame, params, hp)
    metadata = artifact_metadata(
        trained, params=params, hp=hp, metrics=metrics, data_version=_data_version(args.features)
    )
    registry.write_artifact(args.out, trained.booster, metadata)
    print(
        f"train: {trained.rows} rows {trained.train_start} .. {trained.train_end}; "
        f"{time.perf_counter() - started:.1f} s -> {args.out}"
    )
    return 0


def _add_publish(commands) -> None:
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
    _params_arg(parser)
    _path(parser, "--artifact", "models/candidate", "train's output")
    parser.add_argument(
        "--registry", help=f"registry URI (default: ${REGISTRY_ENV}, else publish.registry)"
    )
    _path(parser, "--receipt", "reports/publish.json", "what was published")
    parser.set_defaults(run=_run_publish)


def _run_publish(args) -> int:
    from klinecast import atomic, registry
    from klinecast.config import load_params

    params = load_params(args.params).publish
    uri = args.registry or os.environ.get(REGISTRY_ENV) or params.registry
    metadata = registry.read_artifact_metadata(args.artifact)
    excess = metadata["metrics"]["excess_return"][params.gate_baseline]
    passed = excess >= params.gate_min_excess_return
    receipt = registry.publish(
        args.artifact, store=registry.open_store(uri), model_name=params.model_name, promote=passed
    )
    document = receipt.as_dict() | {
        "gate": {
            "baseline": params.gate_baseline,
            "min_excess_return": params.gate_min_excess_return,
            "excess_return": excess,
            "passed": passed,
        }
    }
    atomic.write_json(args.receipt, document)
    verdict = "promoted to production" if passed else "NOT promoted (gate failed)"
    print(
        f"publish: {receipt.version} -> {receipt.uri}; excess return over "
        f"{params.gate_baseline} {excess:+.2%} (needs {params.gate_min_excess_return:+.2%}): {verdict}"
    )
    return 0


def _add_report(commands) -> None:
    parser = commands.add_parser(
        "report",
        help="one self-contained HTML report: equity, drawdown, accuracy, importance, tuning",
    )
    _path(parser, "--predictions", "reports/predictions.parquet", "evaluate's predictions")
    _path(parser, "--metrics", "reports/metrics.json", "evaluate's metrics")
    _path(parser, "--trials", "reports/tune/trials.csv", "tune's trials table")
    _path(parser, "--artifact", "models/candidate", "train's artifact")
    _path(parser, "--receipt", "reports/publish.json", "publish's receipt (optional)")
    _path(parser, "--out", "reports/report.html", "the HTML report")
    parser.set_defaults(run=_run_report)


def _run_report(args) -> int:
    import json

    import pandas as pd
    import xgboost as xgb

    from klinecast import atomic, registry, report

    metadata = registry.read_artifact_metadata(args.artifact)
    booster = xgb.Booster()
    booster.load_model(str(args.artifact / registry.MODEL_FILE))
    gain = booster.get_score(importance_type="total_gain")
    total = sum(gain.values()) or 1.0
    _require(args.metrics, produced_by="klinecast evaluate")
    inputs = report.ReportInputs(
        predictions=_read_parquet(args.predictions, produced_by="klinecast evaluate"),
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


def _add_serve(commands) -> None:
    parser = commands.add_parser(
        "serve",
        help="run the KServe predictor + transformer locally and print curl examples",
        description=(
            "Start the XGBoost predictor and the candle transformer (kserve ModelServer "
            "processes) on 127.0.0.1-reachable ports, wait until both are ready, write example "
            "request bodies from the newest candles and print ready-to-paste curl commands. "
            "Serves the registry's production version, else the local candidate artifact. "
            "Ctrl+C stops both."
        ),
    )
    _params_arg(parser)
    parser.add_argument(
        "--storage-uri", help="artifact to serve (default: production, else --candidate)"
    )
    _path(parser, "--candidate", "models/candidate", "fallback artifact")
    parser.add_argument(
        "--registry", help=f"registry URI (default: ${REGISTRY_ENV}, else publish.registry)"
    )
    parser.add_argument("--predictor-port", type=int, default=8080, help="default: %(default)s")
    parser.add_argument("--transformer-port", type=int, default=8081, help="default: %(default)s")
    _path(parser, "--candles", "data/candles.parquet", "source of the example requests")
    _path(parser, "--examples", "reports/serve", "where the example bodies go")
    _path(parser, "--log-dir", "reports/serve", "server logs")
    parser.set_defaults(run=_run_serve)


def _run_serve(args) -> int:
    from klinecast import registry
    from klinecast.config import load_params
    from klinecast.serving.local import LocalServing, write_examples

    params = load_params(args.params)
    name = params.publish.model_name
    uri, why = args.storage_uri, "--storage-uri"
    if uri is None:
        registry_uri = args.registry or os.environ.get(REGISTRY_ENV) or params.publish.registry
        uri, why = registry.resolve_serving_uri(registry_uri, name, fallback=args.candidate)
    if "://" not in uri:
        registry.read_artifact_metadata(Path(uri))  # fail here, clearly, not in two servers
    log.info("serving %s (%s)", uri, why)
    with LocalServing(
        name, uri, args.predictor_port, args.transformer_port, log_dir=args.log_dir
    ) as serving:
        base = serving.transformer_url
        lines = [
            f"klinecast serve: model {name} from {uri}",
            f"  predictor   {serving.predictor_url}  (logs: {args.log_dir}/predictor.log)",
            f"  transformer {base}  (logs: {args.log_dir}/transformer.log)",
        ]
        if args.candles.is_file():
            candles = _read_parquet(args.candles, produced_by="klinecast candles")
            v1, v2 = write_examples(candles.iloc[-params.features.min_history :], args.examples)
            lines += [
                "try:",
                f"  curl -s -H 'Content-Type: application/json' -d @{v1} {base}/v1/models/{name}:predict",
                f"  curl -s -H 'Content-Type: application/json' -d @{v2} {base}/v2/models/{name}/infer",
            ]
        print("\n".join(lines), flush=True)
        try:
            while all(p.poll() is None for p in serving.processes.values()):
                time.sleep(1)
        except KeyboardInterrupt:
            pass
    print("klinecast serve: stopped")
    return 0


def _add_manifest(commands) -> None:
    parser = commands.add_parser(
        "manifest",
        help="print the InferenceService (+ ServiceAccount, S3 Secret template) as YAML",
        description=(
            "Render the KServe InferenceService for a model version: our transformer image plus "
            "KServe's xgboost runtime, with the storageUri of the registry's production version "
            "(or --storage-uri). --base writes the committed manifests/base files instead."
        ),
    )
    _params_arg(parser)
    parser.add_argument("--storage-uri", help="model version to serve (default: production)")
    parser.add_argument(
        "--registry", help=f"registry URI (default: ${REGISTRY_ENV}, else publish.registry)"
    )
    parser.add_argument(
        "--image",
        default="registry.example.com/klinecast/serving:0.1.0",
        help="transformer image (default: %(default)s)",
    )
    parser.add_argument("--namespace", default="klinecast", help="default: %(default)s")
    parser.add_argument("--base", type=Path, help="write the base manifests into this directory")
    parser.set_defaults(run=_run_manifest)


def _run_manifest(args) -> int:
    import yaml

    from klinecast import registry
    from klinecast.config import load_params
    from klinecast.serving import manifest

    name = load_params(args.params).publish.model_name
    uri = args.storage_uri
    if args.base is not None:
        uri = manifest.PLACEHOLDER_URI
    elif uri is None:
        registry_uri = (
            args.registry
            or os.environ.get(REGISTRY_ENV)
            or load_params(args.params).publish.registry
        )
        pointer = registry.production(registry.open_store(registry_uri), name)
        if pointer is None:
            raise KlinecastError(
                f"no production version of {name} in {registry_uri}; pass --storage-uri"
            )
        uri = pointer["uri"]
    documents = {
        "inferenceservice.yaml": manifest.inference_service(
            model_name=name, storage_uri=uri, image=args.image, namespace=args.namespace
        ),
        "serviceaccount.yaml": manifest.service_account(args.namespace),
        "s3-secret.template.yaml": manifest.s3_secret_template(args.namespace),
    }
    header = "# Generated by `klinecast manifest --base manifests/base`; do not edit by hand.\n"
    if args.base is not None:
        args.base.mkdir(parents=True, exist_ok=True)
        for filename, document in documents.items():
            (args.base / filename).write_text(header + yaml.safe_dump(document, sort_keys=False))
        print(f"manifest: wrote {', '.join(documents)} to {args.base}")
    else:
        print("---\n".join(yaml.safe_dump(d, sort_keys=False) for d in documents.values()), end="")
    return 0


def _best_hyperparams(path: Path):
    import json

    from klinecast.model import HyperParams

    _require(path, produced_by="klinecast tune")
    try:
        return HyperParams.from_dict(json.loads(path.read_text())["params"])
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise KlinecastError(f"{path} is not a best_params.json written by tune: {exc}") from None


def _file_digest(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def _data_version(features: Path) -> dict:
    """The DVC hash of the raw data (data.dvc) and the hash of the feature file."""
    import yaml

    version = {"features_sha256": _file_digest(features)}
    dvc_file = Path("data.dvc")
    if dvc_file.is_file():
        outs = (yaml.safe_load(dvc_file.read_text()) or {}).get("outs") or [{}]
        version["raw_md5"] = outs[0].get("md5")
    return version


def _require(path: Path, *, produced_by: str) -> None:
    if not path.exists():
        raise KlinecastError(f"{path} does not exist; run `{produced_by}` (or `dvc repro`) first")


def _read_parquet(path: Path, *, produced_by: str):
    import pandas as pd

    _require(path, produced_by=produced_by)
    try:
        return pd.read_parquet(path)
    except Exception as exc:  # pyarrow raises several unrelated types for a damaged file
        raise KlinecastError(f"{path} is not a readable Parquet file: {exc}") from None


if __name__ == "__main__":
    sys.exit(main())
