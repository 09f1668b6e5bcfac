"""What klinecast adds to kserve's REST server, so that both servers answer exactly as the
Open Inference Protocol's OpenAPI spec says and log what an operator can trust.

- Answers: no null where the spec has an object or an array (`parameters`, `versions`); the
  server metadata lists only the extensions that are on (the binary tensor data extension;
  the model repository extension is off); the served model's own version works in
  `/versions/{v}` paths, any other is 404 naming it, and an unknown model is 404 naming it on
  every path; a GET on an inference path is 405; `/v2/health/ready` is false while no model
  is ready (a predictor of a model per symbol is ready once one of them is: a symbol whose
  model is missing must not take the others down; its own model answers 503).
- Requests: a V2 inference request is read by `serving.v2_request` (orjson; the binary tensor
  data extension, as tritonclient sends it by default; every input's shape checked against
  its data), and answered with binary outputs where the request asks for them; a V1 JSON body
  without a Content-Type is read as JSON (tritonclient sends none).
- Refusals: every one is `{"error": ...}` with its status and exactly one log line at WARNING,
  kserve's own included; a bug answers 500 "internal error" and its traceback goes to the log
  only.
- Log lines: whatever a client sent is escaped (control characters, line breaks) and cut to a
  bounded length before it reaches one, so no request can forge a line.
"""

from __future__ import annotations

import logging
import re

from klinecast.serving.errors import ModelUnavailable, VersionNotServed, shown

log = logging.getLogger("klinecast.serving")

PREDICT_SUFFIXES = (":predict", "/infer")
#: The version a request asks our predictor for: a versioned path's (set here), or the one
#: whose metadata our transformer read (V1 has no versioned paths). Other servers ignore it.
VERSION_HEADER = "klinecast-model-version"
JSON_TYPES = ("application/json", "application/cloudevents+json")
#: The longest piece of a request that a log line carries.
LOGGED_CHARACTERS = 300
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_VERSIONED = re.compile(r"^(?P<model>/v2/models/[^/]+)/versions/(?P<version>[^/]+)(?P<rest>/.*)?$")
#: A path about one model: /v1/models/{name}[:predict], /v2/models/{name}[/...]
_MODEL_PATH = re.compile(r"^/v[12]/models/(?P<name>[^/:]+)")


def loggable(text: object, *, limit: int = LOGGED_CHARACTERS) -> str:
    """text fit for one log line: control characters and line breaks escaped, cut to limit."""
    escaped = _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}" if ord(m.group()) < 0x100
                           else f"\\u{ord(m.group()):04x}", str(text))  # fmt: skip
    if len(escaped) > limit:
        return f"{escaped[:limit]}... ({len(escaped) - limit} more characters)"
    return escaped


def refusal_statuses() -> tuple[tuple[type, int], ...]:
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


def one_line_for_refusals(record: logging.LogRecord) -> bool:
    """A log filter for kserve's logger: a refused request (a bad body, an unknown or unready
    model) is one escaped WARNING line instead of an ERROR with its traceback; a traceback
    stays for what is a bug. Every record passes, changed or not."""
    if record.exc_info:
        error = record.exc_info[1]
        status = next((s for kind, s in refusal_statuses() if isinstance(error, kind)), None)
        if status is not None:
            record.msg, record.args = "rejected: %d %s", (status, loggable(error))
            record.exc_info = record.exc_text = None
            record.levelno, record.levelname = logging.WARNING, "WARNING"
    return True


def refuse(status: int, message: str, *, headers: dict | None = None):
    """The answer to a refused request, and its one log line."""
    from fastapi.responses import JSONResponse

    log.warning("rejected: %d %s", status, loggable(message))
    return JSONResponse(status_code=status, content={"error": message}, headers=headers)


def install(app, models, *, dataplane=None) -> None:
    """Everything of the module docstring, on kserve's app, for the served model or models.

    Args:
        dataplane: the ModelServer's kserve DataPlane; with it, V2 inference requests are
            read and answered here (before kserve's own route, which this one shadows).
    """
    models = models if isinstance(models, list | tuple) else [models]
    _install_middleware(app, models)
    _install_error_handlers(app)
    if dataplane is not None:
        _install_infer(app, dataplane)


def _install_infer(app, dataplane) -> None:
    from kserve.errors import ModelNotReady

    from klinecast.serving import v2_request

    async def infer(request):  # a plain Starlette endpoint: the body is read here, raw
        model_name = request.path_params["model_name"]
        if not await dataplane.model_ready(model_name, True):  # an unknown one: 404
            raise ModelNotReady(model_name)
        headers = dict(request.headers)
        body = await request.body()
        asked = v2_request.read(body, headers, model_name=model_name)
        answer, answer_headers = await dataplane.infer(
            model_name=model_name, request=asked, headers=headers
        )
        return v2_answer(answer, answer_headers)

    # before kserve registers its own route for the path (ModelServer.start), so this one wins
    app.router.add_route(
        "/v2/models/{model_name}/infer", infer, methods=["POST"], include_in_schema=False
    )


def v2_answer(answer, headers: dict):
    """A V2 inference answer on the wire: JSON without nulls, or (binary outputs asked) the
    JSON object, its length in Inference-Header-Content-Length, then the outputs' bytes."""
    import orjson
    from starlette.responses import Response

    from klinecast.serving.v2_request import HEADER

    body, json_length = answer.to_rest()
    headers = {k: v for k, v in headers.items() if k.lower() not in ("content-length", "content-type")}
    if json_length is None:
        return Response(orjson.dumps(_drop_nulls(body)), media_type="application/json", headers=headers)
    headers[HEADER] = str(json_length)
    return Response(body, media_type="application/octet-stream", headers=headers)


def _install_middleware(app, models: list) -> None:
    from fastapi.responses import JSONResponse

    @app.middleware("http")
    async def protocol(request, call_next):
        path, method = request.url.path, request.method
        if "/v2/repository/" in path:
            return refuse(404, "the model repository extension is off on this server")
        if path in ("/v2", "/v2/") and method == "GET":
            return JSONResponse(server_metadata())
        if path == "/v2/health/ready" and not any(m.ready for m in models):
            return JSONResponse(status_code=503, content={"ready": False})
        inference = path.endswith("/infer")  # v2_answer writes these without nulls
        about = _MODEL_PATH.match(path)
        if about and not any(m.name == about["name"] for m in models):
            return refuse(404, f"Model with name {shown(about['name'])} does not exist.")
        model = next((m for m in models if about and m.name == about["name"]), None)
        versioned = _VERSIONED.match(path)
        if versioned:
            served = model.served_versions()
            if versioned["version"] not in served:
                return refuse(404, VersionNotServed(model.name, versioned["version"], served).message)
            request.scope["path"] = versioned["model"] + (versioned["rest"] or "")
            headers = [(k, v) for k, v in request.scope["headers"] if k != VERSION_HEADER.encode()]
            request.scope["headers"] = [*headers, (VERSION_HEADER.encode(), versioned["version"].encode())]
        absent = model.absent if model is not None else None  # why its model did not load
        if absent is not None and method == "POST" and path.endswith(PREDICT_SUFFIXES):
            if absent.transient:
                error = ModelUnavailable(f"model {model.name}", absent.reason, retry_after_s=model.poll_s)
                return refuse(error.status, error.message, headers=error.headers)
            return refuse(404, f"model {model.name} has no production version: {absent.reason}")
        if path.endswith(PREDICT_SUFFIXES) and method != "POST":
            return refuse(
                405, f"{method} is not allowed on {path}; send the request with POST",
                headers={"Allow": "POST"},
            )  # fmt: skip
        if method == "POST" and path.endswith(PREDICT_SUFFIXES):
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
            response = await call_next(request)
        except Exception:  # a bug: its traceback goes to the log, not to the client
            log.exception("internal error on %s %s", method, loggable(path))
            return JSONResponse(
                status_code=500, content={"error": "internal error; the server log has details"}
            )
        if path.startswith("/v2/models") and response.status_code == 200 and not inference:
            return await _without_nulls(response)
        return response


async def _without_nulls(response):
    """A V2 JSON answer again without its null members: kserve writes `"parameters": null`
    and `"versions": null`, which the spec types as an object and an array."""
    import orjson
    from starlette.responses import Response

    if response.headers.get("content-type", "").split(";")[0] != "application/json":
        return response  # V2's binary tensor extension: v2_answer writes no null there
    body = b"".join([chunk async for chunk in response.body_iterator])
    headers = {k: v for k, v in response.headers.items() if k != "content-length"}
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError:
        return Response(body, status_code=response.status_code, headers=headers)
    return Response(
        orjson.dumps(_drop_nulls(document)), status_code=response.status_code, headers=headers
    )


def _drop_nulls(value):
    """Members whose value is null left out of every object (tensor data is left alone)."""
    if isinstance(value, dict):
        return {k: _drop_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_drop_nulls(v) if isinstance(v, dict) else v for v in value]
    return value


def server_metadata() -> dict:
    """The server metadata of the protocol: kserve's name and version, and the extensions
    that are on: binary tensor data (the model repository extension is off)."""
    from importlib.metadata import version

    return {"name": "kserve", "version": version("kserve"), "extensions": ["binary_tensor_data"]}


def _install_error_handlers(app) -> None:
    import httpx
    from fastapi.exceptions import RequestValidationError
    from starlette.exceptions import HTTPException

    from klinecast.serving.errors import ServingError

    async def not_json(_, exc):
        first = exc.errors()[0] if exc.errors() else {}
        # a JSON decode error's location is a character offset: not a field to name
        where = ".".join(str(p) for p in first.get("loc", ()) if isinstance(p, str))
        where = "" if where == "body" else where.removeprefix("body.")
        reason = first.get("msg", "invalid body")
        return refuse(
            400,
            "the body is not a valid JSON inference request: "
            + (f"{where}: {reason}" if where else reason),
        )

    async def http_error(_, exc):
        return refuse(exc.status_code, str(exc.detail), headers=getattr(exc, "headers", None))

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
        return refuse(exc.status, exc.message, headers=exc.headers)

    app.add_exception_handler(RequestValidationError, not_json)
    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(httpx.TransportError, predictor_unreachable)
    app.add_exception_handler(httpx.HTTPStatusError, predictor_failed)
    app.add_exception_handler(ServingError, serving_error)
