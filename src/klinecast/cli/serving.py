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
        "--storage-uri", help="artifact to serve (default: production, else --candidate)"
    )
    parser.add_argument(
        "--candidate",
        type=Path,
        help="fallback artifact (default: models/<symbol>/candidate, what `dvc repro` trains)",
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
        help="source of the example requests (default: data/<symbol>/candles.parquet)",
    )
    path(parser, "--examples", "reports/serve", "where the example bodies go")
    parser.add_argument(
        "--log-dir",
        type=Path,
        help="the servers' logs (default: a folder of this run's own under reports/serve/logs)",
    )
    parser.set_defaults(run=run_serve)


def _uris(storage_uri: str) -> list[tuple[str | None, str]]:
    """(symbol or None, uri) of each model a storage URI names (see serving.models)."""
    from klinecast.serving.models import symbol_models

    return [(symbol, m.storage_uri) for symbol, m in symbol_models("x", storage_uri).items()]


def run_serve(args) -> int:
    import dataclasses
    import datetime as dt
    import os
    import signal

    from klinecast import layout
    from klinecast.config import load_params
    from klinecast.redaction import redact_redis
    from klinecast.release import registry
    from klinecast.serving.local import LocalServing, write_examples
    from klinecast.serving.online_store import StoreSettings

    params = load_params(args.params)
    name = params.publish.model_name
    uri, why = args.storage_uri, "--storage-uri"
    if uri is None:
        registry_uri = args.registry or params.publish.registry
        symbols = params.data.symbols
        if args.candidate is not None and len(symbols) > 1:
            raise KlinecastError("--candidate names one artifact; data.symbols lists several")
        found = {
            symbol: registry.resolve_serving_uri(
                registry_uri, params.model_name_of(symbol),
                fallback=args.candidate or layout.candidate(symbol),
            )  # fmt: skip
            for symbol in symbols
        }
        if len(symbols) == 1:
            ((uri, why),) = found.values()
        else:  # a model per symbol behind the one transformer
            uri = ",".join(f"{symbol}={where}" for symbol, (where, _) in found.items())
            why = "; ".join(f"{symbol}: {reason}" for symbol, (_, reason) in found.items())
    for _symbol, where in _uris(uri):
        if "://" not in where and not registry.follows_production(where):
            registry.read_artifact_metadata(Path(where))  # fail here, clearly, not in two servers
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
        instances = ", ".join(f'{{"symbol": "{symbol}"}}' for symbol in params.data.symbols)
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
        candles_path = args.candles or layout.candles(params.data.symbols[0])
        if len(params.data.symbols) == 1 and candles_path.is_file():
            candles = read_parquet(candles_path, produced_by="klinecast candles")
            v1, v2 = write_examples(candles.iloc[-params.features.min_history :], args.examples)
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


def add_manifest(commands) -> None:
    parser = commands.add_parser(
        "manifest",
        help="print the cluster's objects as YAML, or write manifests/base (kustomize)",
        description=(
            "Render everything klinecast deploys: namespace, Secret templates (keys, no values), "
            "service accounts and least-privilege RBAC, the KServe InferenceService (our "
            "transformer image plus KServe's xgboost runtime; with several data.symbols, our "
            "predictor hosting each symbol's production version), the NetworkPolicy that admits "
            "only the trader, the trader CronJob and the Katib Experiment. Printed, the "
            "InferenceService serves the registry's production version (or --storage-uri). "
            "--base writes the committed manifests/base files and their kustomization.yaml "
            "(from another params file, e.g. examples/five-symbols.yaml, into a directory "
            "of its own)."
        ),
    )
    params_arg(parser)
    parser.add_argument("--storage-uri", help="model version to serve (default: production)")
    parser.add_argument(
        "--registry",
        help="registry URI (default: publish.registry; $KLINECAST_REGISTRY overrides it)",
    )
    parser.add_argument(
        "--image",
        default=SERVING_IMAGE,
        help="transformer image (default: %(default)s)",
    )
    parser.add_argument("--namespace", default="klinecast", help="default: %(default)s")
    parser.add_argument("--base", type=Path, help="write the base manifests into this directory")
    parser.set_defaults(run=run_manifest)


def run_manifest(args) -> int:
    import yaml

    from klinecast.config import load_params
    from klinecast.platform import manifests

    params = load_params(args.params)
    options = {"serving_image": args.image, "namespace": args.namespace}
    if args.base is None:
        uri = args.storage_uri
        if uri is None and len(params.data.symbols) == 1:  # several: the servers look it up
            uri = production_uri(args, params.publish.model_name)
        documents = manifests.base(params, storage_uri=uri, **options)
        print("---\n".join(yaml.safe_dump(d, sort_keys=False) for d in documents.values()), end="")
        return 0
    documents = manifests.base(params, **options)
    documents["kustomization.yaml"] = manifests.kustomization(list(documents), args.namespace)
    args.base.mkdir(parents=True, exist_ok=True)
    for filename, document in documents.items():
        text = manifests.HEADER + yaml.safe_dump(document, sort_keys=False)
        (args.base / filename).write_text(text)
    print(f"manifest: wrote {len(documents)} files to {args.base}")
    return 0


def production_uri(args, name: str) -> str:
    from klinecast.config import load_params
    from klinecast.release import registry

    registry_uri = args.registry or load_params(args.params).publish.registry
    pointer = registry.production(registry.open_store(registry_uri), name)
    if pointer is None:
        raise KlinecastError(
            f"no production version of {name} in {registry_uri}; pass --storage-uri"
        )
    return pointer["uri"]


def add_deploy(commands) -> None:
    parser = commands.add_parser(
        "deploy",
        help="point the cluster's InferenceService at a model version (Kubernetes API)",
        description=(
            "Patch the InferenceService named publish.model_name so that its predictor and "
            "transformer serve --storage-uri (default: the registry's production version). "
            "Credentials: the pod's service account in a cluster, else $KUBECONFIG. With "
            "neither, it says so and skips (exit 0), so a local pipeline run passes."
        ),
    )
    params_arg(parser)
    parser.add_argument("--storage-uri", help="model version to serve (default: production)")
    parser.add_argument(
        "--registry",
        help="registry URI (default: publish.registry; $KLINECAST_REGISTRY overrides it)",
    )
    parser.add_argument("--namespace", default="klinecast", help="default: %(default)s")
    parser.set_defaults(run=run_deploy)


def run_deploy(args) -> int:
    from klinecast.config import load_params
    from klinecast.platform import deploy

    name = load_params(args.params).publish.model_name
    uri = args.storage_uri or production_uri(args, name)
    result = deploy.deploy_where_possible(name=name, namespace=args.namespace, storage_uri=uri)
    if result is None:
        print(
            f"deploy: {deploy.NO_CLUSTER}; InferenceService {args.namespace}/{name} would serve {uri}"
        )
        return 0
    print(f"deploy: {result}")
    return 0
