"""Model-server processes: `python -m klinecast.serving.server predictor|transformer ...`.

kserve's model_server parses sys.argv when it is imported, so main() parses its own flags
first and clears sys.argv before importing kserve. The model is registered even when it could
not be loaded: the server then answers 503 (not ready) and retries the load in the background,
instead of exiting and being restarted in a loop.

What klinecast adds to kserve's REST server: a JSON body without a Content-Type is read as JSON
(tritonclient sends none) and V2's binary tensor extension is accepted; `/v2/health/ready` is
false while the model is not; the model repository extension (load/unload) is off; every
refusal is one JSON `{"error": ...}` with its status and one log line, never a traceback.
"""

from __future__ import annotations

import argparse
import logging
import sys
import threading
import warnings

log = logging.getLogger("klinecast.serving")

PREDICT_SUFFIXES = (":predict", "/infer")
JSON_TYPES = ("application/json", "application/cloudevents+json")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m klinecast.serving.server")
    parser.add_argument("role", choices=["predictor", "transformer"])
    # KServe injects --model_name, --predictor_host and --http_port into a transformer
    # container; the underscore spellings are accepted for that.
    parser.add_argument(
        "--model-name", "--model_name", help="default: params' publish.model_name"
    )
    parser.add_argument(
        "--storage-uri", "--storage_uri", required=True, help="artifact directory or s3:// prefix"
    )
    parser.add_argument("--http-port", "--http_port", type=int, default=8080)
    parser.add_argument(
        "--predictor-host", "--predictor_host", help="host:port of the predictor (transformer only)"
    )
    parser.add_argument("--predictor-protocol", choices=["v1", "v2"], default="v1")
    parser.add_argument("--predictor-timeout", type=int, default=5, help="seconds")
    parser.add_argument(
        "--reload-seconds",
        type=float,
        default=30.0,
        help="retry interval while the model cannot be loaded",
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
    if args.role == "transformer" and not args.predictor_host:
        print("error: the transformer needs --predictor-host", file=sys.stderr)
        return 2
    if not args.model_name:
        from klinecast.config import environment_params

        args.model_name = environment_params()[0].publish.model_name
    sys.argv = sys.argv[:1]  # kserve parses sys.argv at import time
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )

    import kserve
    from kserve.model_server import app
    from kserve.predictor_config import PredictorConfig

    if args.role == "predictor":
        from klinecast.serving.predictor import XGBoostPredictor

        model = XGBoostPredictor(args.model_name, args.storage_uri)
    else:
        model = transformer(args)
    if not model.load():
        _retry_load_in_background(model, every_s=args.reload_seconds)
    install_error_handling(app, model)
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
    server.register_model(model)
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
        online = StoreSettings(
            redis, args.feast_registry or defaults.registry, args.feast_project or defaults.project
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
    logging.getLogger("kserve").addFilter(_one_line_for_bad_requests)


def _refusal_statuses() -> tuple[tuple[type, int], ...]:
    """kserve's error types that refuse a request (rather than report a bug), with status."""
    from kserve import errors

    return (
        (errors.InvalidInput, 400),
        (errors.ModelNotFound, 404),
        (errors.ModelNotReady, 503),
        (errors.ServerNotReady, 503),
        (errors.ServerNotLive, 503),
        (errors.UnsupportedProtocol, 501),
        (NotImplementedError, 501),
    )


def _one_line_for_bad_requests(record: logging.LogRecord) -> bool:
    """kserve logs every refused request (a bad body, an unknown or unready model) with its
    traceback: one line instead. A traceback stays for what is a bug."""
    if record.exc_info:
        error = record.exc_info[1]
        status = next((s for kind, s in _refusal_statuses() if isinstance(error, kind)), None)
        if status is not None:
            record.msg, record.args = "rejected: %d %s", (status, error)
            record.exc_info = record.exc_text = None
    return True


def _retry_load_in_background(model, *, every_s: float) -> None:
    def retry() -> None:
        stop = threading.Event()
        while not stop.wait(every_s):
            if model.load():
                return

    threading.Thread(target=retry, name="model-reload", daemon=True).start()


def install_error_handling(app, model) -> None:
    """Statuses and bodies for what kserve leaves to the server; see the module docstring."""
    import httpx
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse

    from klinecast.serving.errors import ServingError

    def refuse(status: int, message: str) -> JSONResponse:
        log.warning("rejected: %d %s", status, message)
        return JSONResponse(status_code=status, content={"error": message})

    @app.middleware("http")
    async def protocol(request, call_next):
        path = request.url.path
        if "/v2/repository/" in path:
            return refuse(404, "the model repository extension is off on this server")
        if path == "/v2/health/ready" and not model.ready:
            return JSONResponse(status_code=503, content={"ready": False})
        if request.method == "POST" and path.endswith(PREDICT_SUFFIXES):
            content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
            binary = "inference-header-content-length" in request.headers
            if content_type and content_type not in JSON_TYPES and not binary:
                return refuse(
                    400,
                    f"Content-Type {content_type!r} is not supported; send application/json "
                    "(or V2's binary tensor extension with Inference-Header-Content-Length)",
                )
            if not content_type and not binary:  # tritonclient sends JSON without saying so
                headers = [(k, v) for k, v in request.scope["headers"] if k != b"content-type"]
                request.scope["headers"] = [*headers, (b"content-type", b"application/json")]
        try:
            return await call_next(request)
        except Exception:  # a bug: its traceback goes to the log, not to the client
            log.exception("internal error on %s %s", request.method, path)
            return JSONResponse(
                status_code=500, content={"error": "internal error; the server log has details"}
            )

    async def not_json(_, exc):
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
        reason = first.get("msg", "invalid body")
        return refuse(
            400, f"the body is not a valid JSON inference request: {where} {reason}".strip()
        )

    async def predictor_unreachable(_, exc):
        return refuse(503, f"the predictor is unreachable ({type(exc).__name__}); retry later")

    async def predictor_failed(_, exc):
        status = exc.response.status_code
        try:
            detail = exc.response.json().get("error", "")
        except ValueError:
            detail = ""
        return refuse(502, f"the predictor answered HTTP {status}: {detail}".rstrip(": "))

    async def serving_error(_, exc):
        return refuse(exc.status, exc.message)

    app.add_exception_handler(RequestValidationError, not_json)
    app.add_exception_handler(httpx.TransportError, predictor_unreachable)
    app.add_exception_handler(httpx.HTTPStatusError, predictor_failed)
    app.add_exception_handler(ServingError, serving_error)


if __name__ == "__main__":
    sys.exit(main())
