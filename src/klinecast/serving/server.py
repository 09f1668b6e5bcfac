"""Model-server processes: `python -m klinecast.serving.server predictor|transformer ...`.

kserve's model_server parses sys.argv when it is imported, so main() parses its own flags
first and clears sys.argv before importing kserve. The model is registered even when it could
not be loaded: the server then answers 503 (not ready) and retries the load in the background,
instead of exiting and being restarted in a loop. The same background thread follows the
registry: every --poll-seconds each model's refresh() loads what is missing and, for a storage
URI of the version PRODUCTION, a newly promoted version, swapped in without a restart.

What klinecast adds to kserve's REST server (the protocol's answers, refusals and log lines)
is `klinecast.serving.protocol`.
"""

from __future__ import annotations

import argparse
import contextvars
import logging
import os
import sys
import threading
import warnings

from klinecast import environment

log = logging.getLogger("klinecast.serving")
#: The default poll period of the registry's production pointers, in seconds.
POLL_SECONDS = 30.0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m klinecast.serving.server")
    parser.add_argument("role", choices=["predictor", "transformer"])
    # KServe injects --model_name, --predictor_host and --http_port into a transformer
    # container; the underscore spellings are accepted for that.
    parser.add_argument(
        "--model-name", "--model_name", help="default: params' publish.service_name"
    )
    parser.add_argument(
        "--storage-uri",
        "--storage_uri",
        help="artifact directory or s3:// prefix; or a model per symbol, "
        "SYMBOL=URI[,SYMBOL=URI...] (the predictor serves each as <model-name>-<symbol>); "
        "default: $KLINECAST_MODELS (the InferenceService sets it)",
    )
    parser.add_argument("--http-port", "--http_port", type=int, default=8080)
    parser.add_argument(
        "--predictor-host", "--predictor_host", help="host:port of the predictor (transformer only)"
    )
    parser.add_argument("--predictor-protocol", choices=["v1", "v2"], default="v1")
    parser.add_argument("--predictor-timeout", type=int, default=5, help="seconds")
    parser.add_argument(
        "--poll-seconds",
        "--reload-seconds",
        type=float,
        default=POLL_SECONDS,
        help="how often each model's production pointer is read (a newly promoted version is "
        "served within it) and a model that could not be loaded is tried again "
        "(default: %(default)s)",
    )
    # Defaults: params' `online` section with the KLINECAST_* overrides (klinecast.config); the
    # container has no params.yaml, so its ConfigMap's environment is what sets them.
    online = parser.add_argument_group("the online feature store (transformer, symbol requests)")
    online.add_argument(
        "--redis",
        help="Feast's Redis connection string host:port (default: $KLINECAST_REDIS; neither: "
        "symbol requests get 503). A password belongs in $KLINECAST_REDIS, not here",
    )
    online.add_argument(
        "--feast-registry",
        help="the Feast registry, a path or s3:// (default: $KLINECAST_FEAST_REGISTRY, else "
        "online.registry's default)",
    )
    online.add_argument(
        "--feast-project",
        help="the Feast project: the key space in Redis (default: $KLINECAST_FEAST_PROJECT, "
        "else online.project's default)",
    )
    online.add_argument(
        "--stale-after-minutes",
        type=int,
        help="refuse a symbol once the candle after its newest row closed this long ago "
        "(online.stale_after_minutes; the manifest and `klinecast serve` pass params' value)",
    )
    online.add_argument(
        "--store-timeout-ms",
        type=int,
        help="connect and read timeout of each store read (default: online.timeout_ms); a store "
        "that is down or hung costs a symbol request a 503 within it",
    )
    online.add_argument(
        "--now", help="a fixed clock, ISO 8601 UTC (replays and tests; default: the real time)"
    )
    parser.add_argument(
        "--cache-size",
        type=int,
        default=4096,
        help="answers the transformer keeps per symbol hour or candle window (0: none)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args, ignored = build_parser().parse_known_args(argv)
    if ignored:
        print(f"ignoring model-server flags this server does not use: {ignored}", file=sys.stderr)
    args.storage_uri = args.storage_uri or os.environ.get(environment.MODELS)
    if not args.storage_uri:
        print(f"error: pass --storage-uri or set ${environment.MODELS}", file=sys.stderr)
        return 2
    if args.role == "transformer" and not args.predictor_host:
        print("error: the transformer needs --predictor-host", file=sys.stderr)
        return 2
    if not args.model_name:
        from klinecast.config import environment_params

        args.model_name = environment_params()[0].publish.service_name
    sys.argv = sys.argv[:1]  # kserve parses sys.argv at import time
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )

    import kserve
    from kserve.model_server import app
    from kserve.predictor_config import PredictorConfig

    from klinecast.serving import protocol

    if args.role == "predictor":
        from klinecast.serving.models import symbol_models
        from klinecast.serving.predictor import XGBoostPredictor

        models = [  # one model, or one per symbol ("BTCUSDT=uri,ETHUSDT=uri")
            XGBoostPredictor(m.predictor_name, m.storage_uri, poll_s=args.poll_seconds)
            for m in symbol_models(args.model_name, args.storage_uri).values()
        ]
    else:
        models = [transformer(args)]
    for model in models:
        model.load()
    server = kserve.ModelServer(
        http_port=args.http_port,
        enable_grpc=False,
        workers=1,
        predictor_config=PredictorConfig(
            predictor_host=args.predictor_host or "",
            predictor_protocol=args.predictor_protocol,
            predictor_request_timeout_seconds=args.predictor_timeout,
            predictor_request_retries=0,
        ),
    )
    protocol.install(app, models, dataplane=server.dataplane)
    for model in models:
        server.register_model(model)
        # after ModelServer(), whose predictor config (a context variable) the thread needs
        _follow_in_background(model, every_s=args.poll_seconds)
    if args.role == "transformer":
        app.router.on_startup.append(models[0].warm_up_predictor)
    _quiet_per_request_output()  # after ModelServer(), which reconfigures logging
    _calm_the_garbage_collector()
    server.start([])  # registered above, so a not-ready model does not stop the server
    return 0


def transformer(args):
    import pandas as pd

    from klinecast.config import environment_params
    from klinecast.serving.online_store import StoreSettings
    from klinecast.serving.transformer import ForecastTransformer

    params, overridden = environment_params()
    defaults = params.online
    online = None
    redis = args.redis or (defaults.redis if "online.redis" in overridden else None)
    if redis:
        timeout_ms = args.store_timeout_ms or defaults.timeout_ms
        online = StoreSettings(
            redis,
            args.feast_registry or defaults.registry,
            args.feast_project or defaults.project,
            timeout_s=timeout_ms / 1000,
        )
    stale = args.stale_after_minutes
    stale = defaults.stale_after_minutes if stale is None else stale
    clock = None
    if args.now:
        fixed = pd.Timestamp(args.now)
        fixed = fixed.tz_localize("UTC") if fixed.tzinfo is None else fixed.tz_convert("UTC")
        clock = lambda: fixed  # noqa: E731
    return ForecastTransformer(
        args.model_name,
        args.storage_uri,
        online=online,
        clock=clock,
        cache_size=args.cache_size,
        stale_after=pd.Timedelta(minutes=stale),
        poll_s=args.poll_seconds,
    )


def _calm_the_garbage_collector() -> None:
    """Everything loaded so far (kserve, pandas, the model) lives as long as the server: moved
    out of the collector's sight, and with a higher young-generation threshold, the full
    collections that stall a request for tens of milliseconds become rare."""
    import gc

    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 20)


def _quiet_per_request_output() -> None:
    """kserve 0.21 answers with ORJSONResponse, which FastAPI deprecates with a warning on every
    request, and logs an access line and two timing lines per request: together they cost
    more than computing the features. Errors and warnings of our own still show."""
    warnings.filterwarnings("ignore", message=".*ORJSONResponse is deprecated")
    # kserve hands httpx its CA bundle as a string, which httpx 0.28 deprecates
    warnings.filterwarnings("ignore", message=r".*`verify=<str>` is deprecated", category=DeprecationWarning)
    for name in ("uvicorn.access", "kserve.trace", "httpx"):
        logging.getLogger(name).setLevel(logging.WARNING)
    from klinecast.serving.protocol import one_line_for_refusals

    logging.getLogger("kserve").addFilter(one_line_for_refusals)


def _follow_in_background(model, *, every_s: float) -> None:
    """model.refresh() every every_s (sooner when it asks), for the life of the process: the
    first load until it succeeds, a model still missing, a newly promoted version. A bug in
    one refresh is logged with its traceback and the next one runs as usual."""

    def follow() -> None:
        stop = threading.Event()
        wait = every_s
        while not stop.wait(wait):
            try:
                wait = min(model.refresh() or every_s, every_s)
            except Exception:
                log.exception("refreshing model %s failed", model.name)
                wait = every_s

    # in a copy of this context: kserve keeps the predictor's address in a context variable
    context = contextvars.copy_context()
    threading.Thread(
        target=context.run, args=(follow,), name=f"follow-{model.name}", daemon=True
    ).start()


if __name__ == "__main__":
    sys.exit(main())
