"""Model-server processes: `python -m klinecast.serving.server predictor|transformer ...`.

kserve's model_server parses sys.argv when it is imported, so main() parses its own flags
first and clears sys.argv before importing kserve. The model is registered even when it could
not be loaded: the server then answers 503 (not ready) and retries the load in the background,
instead of exiting and being restarted in a loop.
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
    parser.add_argument("--model-name", "--model_name", required=True)
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
    return parser


def main(argv: list[str] | None = None) -> int:
    args, ignored = build_parser().parse_known_args(argv)
    if ignored:
        print(f"ignoring model-server flags this server does not use: {ignored}", file=sys.stderr)
    if args.role == "transformer" and not args.predictor_host:
        print("error: the transformer needs --predictor-host", file=sys.stderr)
        return 2
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
        from klinecast.serving.transformer import CandleTransformer

        model = CandleTransformer(args.model_name, args.storage_uri)
    if not model.load():
        _retry_load_in_background(model, every_s=args.reload_seconds)
    install_error_handling(app)
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
    server.start([])  # registered above, so a not-ready model does not stop the server
    return 0


def _quiet_per_request_output() -> None:
    """kserve 0.21 answers with ORJSONResponse, which FastAPI deprecates with a warning on every
    request, and logs an access line and two timing lines per request: together they cost
    more than computing the features. Errors and warnings of our own still show."""
    warnings.filterwarnings("ignore", message=".*ORJSONResponse is deprecated")
    for name in ("uvicorn.access", "kserve.trace", "httpx"):
        logging.getLogger(name).setLevel(logging.WARNING)


def _retry_load_in_background(model, *, every_s: float) -> None:
    def retry() -> None:
        stop = threading.Event()
        while not stop.wait(every_s):
            if model.load():
                return

    threading.Thread(target=retry, name="model-reload", daemon=True).start()


def install_error_handling(app) -> None:
    """400 for bodies that are not JSON or have the wrong content type; 502/503 when the
    predictor fails or cannot be reached. No traceback ever reaches the client."""
    import httpx
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse

    @app.middleware("http")
    async def require_json(request, call_next):
        if request.method == "POST" and request.url.path.endswith(PREDICT_SUFFIXES):
            content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
            if content_type not in JSON_TYPES:
                return JSONResponse(
                    status_code=400,
                    content={
                        "error": f"Content-Type {content_type or 'missing'!r} is not "
                        "supported; send application/json"
                    },
                )
        return await call_next(request)

    async def not_json(_, exc):
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
        reason = first.get("msg", "invalid body")
        return JSONResponse(
            status_code=400,
            content={
                "error": f"the body is not a valid JSON inference request: {where} {reason}".strip()
            },
        )

    async def predictor_unreachable(_, exc):
        log.warning("predictor unreachable: %s", exc)
        return JSONResponse(
            status_code=503,
            content={"error": f"the predictor is unreachable ({type(exc).__name__}); retry later"},
        )

    async def predictor_failed(_, exc):
        status = exc.response.status_code
        log.warning("predictor answered HTTP %s", status)
        try:
            detail = exc.response.json().get("error", "")
        except ValueError:
            detail = ""
        return JSONResponse(
            status_code=502,
            content={"error": f"the predictor answered HTTP {status}: {detail}".rstrip(": ")},
        )

    app.add_exception_handler(RequestValidationError, not_json)
    app.add_exception_handler(httpx.TransportError, predictor_unreachable)
    app.add_exception_handler(httpx.HTTPStatusError, predictor_failed)


if __name__ == "__main__":
    sys.exit(main())
