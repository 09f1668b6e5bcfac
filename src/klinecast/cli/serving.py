"""`klinecast serve | manifest | deploy`: the model servers, locally and on the cluster."""

from __future__ import annotations

import logging
import time
from pathlib import Path

from klinecast.cli.common import params_arg, path, read_parquet
from klinecast.errors import KlinecastError
from klinecast.platform.k8s import SERVING_IMAGE

log = logging.getLogger("klinecast")


def add_serve(commands) -> None:
    parser = commands.add_parser(
        "serve",
        help="run the KServe predictor + transformer locally and print curl examples",
        description=(
            "Start the XGBoost predictor and the candle transformer (kserve ModelServer "
            "processes) on 127.0.0.1-reachable ports, wait until both are ready, write example "
            "request bodies from the newest candles and print ready-to-paste curl commands. "
            "Serves the registry's production version (and follows it: a newly promoted version "
            "is served within the servers' poll period), else the local candidate artifact. "
            "Ctrl+C stops both."
        ),
    )
    params_arg(parser)
    parser.add_argument(
        "--storage-uri",
        help="what to serve: an artifact, or SYMBOL=URI[,SYMBOL=URI...] (default: each symbol's "
        "production version, else its candidate, models/<symbol>/candidate)",
    )
    parser.add_argument(
        "--registry",
        help="registry URI (default: publish.registry; $KLINECAST_REGISTRY overrides it)",
    )
    parser.add_argument("--predictor-port", type=int, default=8080, help="default: %(default)s")
    parser.add_argument("--transformer-port", type=int, default=8081, help="default: %(default)s")
    parser.add_argument(
        "--redis",
        help="the online store for symbol requests (default: $KLINECAST_REDIS, else online.redis)",
    )
    parser.add_argument("--now", help="a fixed clock for the transformer, ISO 8601 UTC (replays)")
    parser.add_argument(
        "--candles",
        type=Path,
        help="source of the example requests (default: the first symbol's "
        "data/<symbol>/candles.parquet)",
    )
    path(parser, "--examples", "reports/serve", "where the example bodies go")
    parser.add_argument(
        "--log-dir",
        type=Path,
        help="the servers' logs (default: a folder of this run's own under reports/serve/logs)",
    )
    parser.set_defaults(run=run_serve)


def run_serve(args) -> int:
    import dataclasses
    import datetime as dt
    import os
    import signal

    from klinecast.book import Book
    from klinecast.config import load_params
    from klinecast.redaction import redact_redis
    from klinecast.release import registry
    from klinecast.serving.local import LocalServing, write_examples
    from klinecast.serving.models import symbol_models
    from klinecast.serving.online_store import StoreSettings

    book = Book(load_params(args.params))
    params, name = book.params, book.service_name
    uri, why = args.storage_uri, "--storage-uri"
    if uri is None:
        uri, why = serving_models(book, args.registry or params.publish.registry)
    for model in symbol_models(name, uri).values():
        if "://" not in model.storage_uri and not registry.follows_pointer(model.storage_uri):
            # fail here, clearly, not in two servers
            registry.read_artifact_metadata(Path(model.storage_uri))
    online = StoreSettings.of(params.online, bounded=True)
    if args.redis:
        online = dataclasses.replace(online, redis=args.redis)
    log_dir = args.log_dir or Path("reports/serve/logs") / (
        f"{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%SZ}-{os.getpid()}"
    )
    log.info("serving %s (%s)", uri, why)

    def stop(signum, _frame):
        raise SystemExit(128 + signum)  # unwinds the with-block: both servers are stopped

    signal.signal(signal.SIGTERM, stop)
    # Ctrl+C even when started as a background job, which inherits SIGINT ignored: Python then
    # installs no KeyboardInterrupt of its own
    signal.signal(signal.SIGINT, signal.default_int_handler)
    serving = LocalServing(
        name, uri, args.predictor_port, args.transformer_port, log_dir=log_dir,
        online=online, now=args.now, stale_after_minutes=params.online.stale_after_minutes,
    )  # fmt: skip
    with serving:
        base = serving.transformer_url
        instances = ", ".join(f'{{"symbol": "{symbol}"}}' for symbol in book.symbols)
        lines = [
            f"klinecast serve: model {name} from {uri}",
            f"  predictor   {serving.predictor_url}  (logs: {log_dir}/predictor.log)",
            f"  transformer {base}  (logs: {log_dir}/transformer.log)",
            f"  online store {redact_redis(online.redis)} (project {online.project}); fill it with "
            "`klinecast features sync`",
            "try:",
            f"""  curl -s -H 'Content-Type: application/json' """
            f"""-d '{{"instances": [{instances}]}}' \\\n    """
            f"{base}/v1/models/{name}:predict",
        ]
        first = book.symbols[0]  # the examples: its newest candles, named as its own
        candles_path = args.candles or book.files(first).candles
        if candles_path.is_file():
            candles = read_parquet(candles_path, produced_by="klinecast candles")
            window = candles.iloc[-params.features.min_history :]
            v1, v2 = write_examples(window, args.examples, symbol=first)
            lines += [
                f"  curl -s -H 'Content-Type: application/json' -d @{v1} {base}/v1/models/{name}:predict",
                f"  curl -s -H 'Content-Type: application/json' -d @{v2} {base}/v2/models/{name}/infer",
            ]
        print("\n".join(lines), flush=True)
        try:
            while all(p.poll() is None for p in serving.processes.values()):
                time.sleep(1)
        except KeyboardInterrupt:
            pass
        exited = [role for role, p in serving.processes.items() if p.poll() is not None]
    if exited:
        raise KlinecastError(
            f"the {' and '.join(exited)} exited; see {log_dir}/{exited[0]}.log"
        )
    print("klinecast serve: stopped")
    return 0


def serving_models(book, registry_uri: str) -> tuple[str, str]:
    """The book's models as `klinecast serve` serves them: each symbol's production version,
    else its candidate artifact; and why, for the log.

    Raises:
        KlinecastError: a symbol has neither (run `dvc repro`).
    """
    from klinecast.release import registry

    found = {
        symbol: registry.resolve_serving_uri(
            registry_uri, book.model_name(symbol), fallback=book.files(symbol).candidate
        )
        for symbol in book.symbols
    }
    why = "; ".join(f"{symbol}: {reason}" for symbol, (_, reason) in found.items())
    return book.storage_string(lambda symbol: found[symbol][0]), why


def add_manifest(commands) -> None:
    parser = commands.add_parser(
        "manifest",
        help="print the cluster's objects as YAML, or write manifests/base (kustomize)",
        description=(
            "Render everything klinecast deploys: namespace, Secret templates (keys, no values), "
            "service accounts and least-privilege RBAC, the KServe InferenceService (our "
            "predictor hosting each symbol's model behind one transformer), the NetworkPolicy "
            "that admits only the trader, the trader and monitor CronJobs and a Katib Experiment "
            "per study. The InferenceService serves each symbol's production version as the "
            "servers find it when they load (`klinecast deploy` pins versions). --base writes the "
            "committed manifests/base files and their kustomization.yaml (from another params "
            "file, e.g. examples/five-symbols.yaml, into a directory of its own)."
        ),
    )
    params_arg(parser)
    parser.add_argument(
        "--image",
        default=SERVING_IMAGE,
        help="the model servers' image (default: %(default)s)",
    )
    parser.add_argument("--namespace", default="klinecast", help="default: %(default)s")
    parser.add_argument("--base", type=Path, help="write the base manifests into this directory")
    parser.set_defaults(run=run_manifest)


def run_manifest(args) -> int:
    import yaml

    from klinecast.config import load_params
    from klinecast.platform import manifests

    params = load_params(args.params)
    documents = manifests.base(params, serving_image=args.image, namespace=args.namespace)
    if args.base is None:
        print("---\n".join(yaml.safe_dump(d, sort_keys=False) for d in documents.values()), end="")
        return 0
    documents["kustomization.yaml"] = manifests.kustomization(list(documents), args.namespace)
    args.base.mkdir(parents=True, exist_ok=True)
    for filename, document in documents.items():
        text = manifests.HEADER + yaml.safe_dump(document, sort_keys=False)
        (args.base / filename).write_text(text)
    print(f"manifest: wrote {len(documents)} files to {args.base}")
    return 0


def add_deploy(commands) -> None:
    parser = commands.add_parser(
        "deploy",
        help="pin the cluster's InferenceService to each symbol's production version",
        description=(
            "Look up each symbol's production version in the registry and patch the book's "
            "InferenceService (publish.service_name) so that its predictor and transformer "
            "serve exactly those versions ($KLINECAST_MODELS of both). A symbol without one (its "
            "gate refused every model) keeps its PRODUCTION placeholder and is answered 404. "
            "Credentials: the pod's service account in a cluster, else $KUBECONFIG. With "
            "neither, it says so and skips (exit 0), so a local pipeline run passes. "
            "--dry-run prints the InferenceService it would serve instead."
        ),
    )
    params_arg(parser)
    parser.add_argument(
        "--registry",
        help="registry URI (default: publish.registry; $KLINECAST_REGISTRY overrides it)",
    )
    parser.add_argument("--namespace", default="klinecast", help="default: %(default)s")
    parser.add_argument(
        "--image", default=SERVING_IMAGE, help="with --dry-run: the servers' image"
    )
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="print the InferenceService that serves the production versions; patch nothing",
    )
    parser.set_defaults(run=run_deploy)


def run_deploy(args) -> int:
    import yaml

    from klinecast.book import Book
    from klinecast.config import load_params
    from klinecast.platform import deploy, inference_service

    book = Book(load_params(args.params))
    registry_uri = args.registry or book.params.publish.registry
    if args.dry_run:
        pinned = deploy.production_models(book, registry_uri)
        report_versions(pinned)
        document = inference_service.inference_service(
            service_name=book.service_name, models=pinned.models, image=args.image,
            stale_after_minutes=book.params.online.stale_after_minutes,
            namespace=args.namespace, canary=book.params.publish.rollout.canary,
        )  # fmt: skip
        print(yaml.safe_dump(document, sort_keys=False), end="")
        return 0
    pinned, result = deploy.deploy_book(book, registry_uri=registry_uri, namespace=args.namespace)
    report_versions(pinned)
    print(f"deploy: {result or deploy.NO_CLUSTER}")
    return 0


def report_versions(pinned) -> None:
    for symbol, version in pinned.versions.items():
        print(f"deploy: {symbol}: {version or 'no production version (answered 404)'}")
