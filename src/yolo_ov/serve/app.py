"""``create_app``: the ASGI application of ``yolo-ov serve`` (FastAPI).

The HTTP transport, and only that: each route decodes its request (the KServe
v2 REST encoding is :mod:`~yolo_ov.serve.kserve_rest`), calls the
transport-neutral operations (:mod:`~yolo_ov.serve.service`, a
:class:`~yolo_ov.serve.models.ServedModel`, which calls ``Detector.submit()``)
and encodes the answer; a :class:`~yolo_ov.serve.errors.ServeError`'s code
becomes its HTTP status here. The models are opened in
:mod:`~yolo_ov.serve.state`. Routes:

=====================================================  ==========================================
``GET /``                                              the web page (``/static/...`` its files)
``GET /v2/health/live``, ``/v2/health/ready``          KServe health (open without the API key)
``GET /v2``                                            KServe server metadata
``GET /v2/models/{name}[/versions/{v}]``               KServe model metadata
``GET /v2/models/{name}[/versions/{v}]/ready``         KServe model readiness
``GET /v2/models/{name}[/versions/{v}]/config``        Triton-style model configuration
``GET /v2/models[/{name}[/versions/{v}]]/stats``        Triton's statistics extension (all models, or one)
``POST /v2/models/{name}[/versions/{v}]/infer``        KServe inference (JSON or binary tensors)
``POST /v2/repository/index``                          Triton's repository index (versions, states, reasons)
``POST /v2/repository/models/{name}/load|unload``      Triton's model control (``--model-control explicit``)
``POST /predict``                                      one image (multipart or raw body) -> JSONL record
                                                       (``X-Model-Name``/``X-Model-Version`` headers)
``GET /models``                                        the models and what OpenVINO chose for each
``GET /stats``                                         live counts for the web page
``GET /metrics``                                       Prometheus metrics
=====================================================  ==========================================

Every error is ``{"error": "..."}`` with its status (KServe's form), for
both protocols.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import time
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from importlib import resources
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from .._version import __version__
from .errors import ErrorCode, ServeError
from .http_errors import BodyLimit, error_body, error_headers
from .kserve_rest import encode_infer_response, parse_infer_request
from .limits import decode_body
from .metrics import CLIENT_CLOSED
from .models import ServedModel
from .service import infer, request_settings, request_slicing, server_metadata
from .settings import ServeConfig
from .state import DetectorFactory, ServeState, load_models, open_detector

__all__ = ["ServeState", "create_app"]

log = logging.getLogger("yolo_ov.serve")

STATIC = Path(str(resources.files("yolo_ov.serve") / "static"))


def create_app(config: ServeConfig, *, load: Callable[[ServeConfig], ServeState] | None = None,
               detectors: DetectorFactory | None = None) -> FastAPI:
    """The ASGI app serving ``config.models``; opens and warms every model first.

    Loading happens here, not on a request and not in a lifespan hook (a
    mounted app's lifespan never runs), so a returned app is ready. Its own
    lifespan, when it is the root app, closes the models at shutdown;
    mounted, call ``app.state.yolo.close()`` yourself.

    Args:
        config: the server settings (models, runtime, limits, API key, CORS).
        load: builds the :class:`ServeState` (default: :func:`~yolo_ov.serve.state.load_models`).
        detectors: how each model's Detector is opened (default:
            :func:`~yolo_ov.serve.state.open_detector` compiles its file); an
            application that builds Detectors on engines of its own passes them here.

    Example:
        >>> from yolo_ov.serve import ServeConfig, create_app, model_spec  # doctest: +SKIP
        >>> app = create_app(ServeConfig(models=(model_spec("yolov8n_openvino_model"),)))  # doctest: +SKIP
        >>> import uvicorn; uvicorn.run(app, host="127.0.0.1", port=8000)  # doctest: +SKIP
    """
    if load is None:
        factory = detectors or open_detector

        def load(cfg: ServeConfig) -> ServeState:
            return load_models(cfg, open_detector=factory)

    state = load(config)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        state.close()

    app = FastAPI(title="yolo-ov serve", version=__version__, lifespan=lifespan, docs_url=None, redoc_url=None,
                  openapi_url=None)
    app.state.yolo = state
    _install_error_handlers(app)
    app.add_middleware(BodyLimit, max_bytes=config.max_body_bytes)
    if config.cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(
            CORSMiddleware, allow_origins=list(config.cors_origins), allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type", "Inference-Header-Content-Length", "Content-Encoding"],
            expose_headers=["Inference-Header-Content-Length", "Server-Timing", "Retry-After"],
        )

    open_routes = APIRouter()
    open_routes.add_api_route("/v2/health/live", _live, methods=["GET"])
    open_routes.add_api_route("/v2/health/ready", _ready, methods=["GET"])
    open_routes.add_api_route("/", _index, methods=["GET"], include_in_schema=False)
    app.include_router(open_routes)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    guarded = APIRouter(dependencies=[Depends(_api_key_check(config.api_key))])
    guarded.add_api_route("/v2", _server_metadata, methods=["GET"])
    guarded.add_api_route("/v2/models/stats", _all_statistics, methods=["GET"])  # before /v2/models/{name}
    for prefix in ("/v2/models/{name}", "/v2/models/{name}/versions/{version}"):
        guarded.add_api_route(prefix, _model_metadata, methods=["GET"])
        guarded.add_api_route(prefix + "/ready", _model_ready, methods=["GET"])
        guarded.add_api_route(prefix + "/config", _model_config, methods=["GET"])
        guarded.add_api_route(prefix + "/infer", _infer, methods=["POST"])
        guarded.add_api_route(prefix + "/stats", _model_statistics, methods=["GET"])
    guarded.add_api_route("/v2/repository/index", _repository_index, methods=["POST"])
    guarded.add_api_route("/v2/repository/models/{name}/load", _repository_load, methods=["POST"])
    guarded.add_api_route("/v2/repository/models/{name}/unload", _repository_unload, methods=["POST"])
    guarded.add_api_route("/predict", _predict, methods=["POST"])
    guarded.add_api_route("/models", _models, methods=["GET"])
    guarded.add_api_route("/stats", _stats, methods=["GET"])
    guarded.add_api_route("/metrics", _metrics, methods=["GET"])
    app.include_router(guarded)
    return app


# -- errors ----------------------------------------------------------------------

def _error(status: int, message: str, headers: Mapping[str, str] | None = None) -> JSONResponse:
    return JSONResponse(error_body(message), status_code=status, headers=dict(headers or {}))


def _install_error_handlers(app: FastAPI) -> None:
    """Map every error to its HTTP status and KServe's ``{"error": "..."}`` body."""

    async def serve_error(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, ServeError)
        return _error(exc.code.http_status, exc.message, error_headers(exc))

    async def http_error(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        return _error(exc.status_code, str(exc.detail), exc.headers)

    async def validation_error(_: Request, exc: Exception) -> Response:
        return _error(400, f"invalid request: {exc}")

    app.add_exception_handler(ServeError, serve_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(RequestValidationError, validation_error)


def _api_key_check(key: str | None) -> Callable[[Request], None]:
    expected = f"Bearer {key}".encode() if key else None

    def check(request: Request) -> None:
        if expected is None:
            return
        given = request.headers.get("authorization", "").encode()
        if not hmac.compare_digest(given, expected):  # constant time: no timing oracle on the key
            raise ServeError(ErrorCode.UNAUTHENTICATED,
                             "missing or wrong API key: send 'Authorization: Bearer <key>'")

    return check


def _state(request: Request) -> ServeState:
    return request.app.state.yolo


# -- open routes -------------------------------------------------------------------

async def _live() -> dict[str, bool]:
    return {"live": True}


async def _ready(request: Request) -> Response:
    ready = _state(request).ready
    return JSONResponse({"ready": ready}, status_code=200 if ready else 503)


async def _index() -> FileResponse:
    return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})


# -- KServe v2 -------------------------------------------------------------------------

async def _server_metadata() -> dict[str, Any]:
    return server_metadata()


def _versioned(request: Request, name: str, version: str | None) -> ServedModel:
    return _state(request).model(name, version)


async def _model_metadata(request: Request, name: str, version: str | None = None) -> dict[str, Any]:
    return _state(request).metadata(name, version)


async def _model_ready(request: Request, name: str, version: str | None = None) -> Response:
    model = _versioned(request, name, version)
    ready = model.ready and _state(request).accepting
    return JSONResponse({"name": model.name, "ready": ready}, status_code=200 if ready else 503)


async def _model_config(request: Request, name: str, version: str | None = None) -> dict[str, Any]:
    return _versioned(request, name, version).model_config()


async def _model_statistics(request: Request, name: str, version: str | None = None) -> dict[str, Any]:
    return {"model_stats": [_versioned(request, name, version).statistics()]}


async def _all_statistics(request: Request) -> dict[str, Any]:
    return {"model_stats": [m.statistics() for m in _state(request).served()]}


async def _infer(request: Request, name: str, version: str | None = None) -> Response:
    model = _state(request).acquire(name, version)  # held: an update retiring this version waits for the answer
    try:
        return await _observed(request, model, "kserve", lambda: _infer_body(request, model))
    finally:
        model.release()


async def _infer_body(request: Request, model: ServedModel) -> Response:
    started = time.monotonic()
    body = decode_body(await request.body(), request.headers.get("content-encoding"), model.config.max_body_bytes)
    parsed = parse_infer_request(body, request.headers.get("inference-header-content-length"))
    response = await infer(model, parsed, started=started)
    payload, header_length = encode_infer_response(parsed, response)
    if header_length is None:
        return Response(payload, media_type="application/json")
    return Response(payload, media_type="application/octet-stream",
                    headers={"Inference-Header-Content-Length": str(header_length)})


# -- the simple endpoint -------------------------------------------------------------------

async def _predict(request: Request) -> Response:
    model = _state(request).acquire(request.query_params.get("model"), request.query_params.get("version"))
    try:
        return await _observed(request, model, "predict", lambda: _predict_body(request, model))
    finally:
        model.release()


async def _predict_body(request: Request, model: ServedModel) -> Response:
    started = time.perf_counter()
    deadline = time.monotonic() + model.config.timeout_s
    detect = request_settings(model, request.query_params)
    slicing = request_slicing(model, request.query_params)
    data, source = await _upload(request, model.config.max_body_bytes)
    source = request.query_params.get("source") or source
    images = model.check([data], [source])
    (result,) = await model.infer(images, detect, deadline, slicing=slicing)
    record = result.to_dict()
    timing = result.timing
    server_timing = f"total;dur={(time.perf_counter() - started) * 1e3:.2f}"
    if timing is not None:
        server_timing += (f", preprocess;dur={timing.preprocess_ms:.2f}, inference;dur={timing.inference_ms:.2f}"
                          f", postprocess;dur={timing.postprocess_ms:.2f}")
    # The record stays the one `yolo-ov predict` writes; which model and version answered go in headers (the
    # KServe answers carry them in their body), so a client watching an update sees where each answer came from.
    return JSONResponse(record, headers={"Server-Timing": server_timing, "X-Model-Name": model.name,
                                         "X-Model-Version": model.version})


async def _upload(request: Request, max_bytes: int) -> tuple[bytes, str]:
    """The image of a ``/predict`` request: a multipart file field, or the raw body."""
    content_type = request.headers.get("content-type", "")
    encoding = request.headers.get("content-encoding")
    if content_type.startswith("multipart/form-data"):
        if encoding not in (None, "", "identity"):
            raise ServeError(ErrorCode.UNSUPPORTED_ENCODING,
                             "send a multipart upload uncompressed (no Content-Encoding)")
        form = await request.form(max_files=1, max_fields=8)
        try:
            upload = next((v for v in form.values() if hasattr(v, "read")), None)
            if upload is None:
                raise ServeError(ErrorCode.INVALID_ARGUMENT,
                                 "the form has no file: send the image as a file field (-F file=@image.jpg)")
            return await upload.read(), str(upload.filename or "upload")
        finally:
            await form.close()
    body = decode_body(await request.body(), encoding, max_bytes)
    if not body:
        raise ServeError(ErrorCode.INVALID_ARGUMENT,
                         "no image: send it as the request body or as a multipart file field")
    return body, f"<{len(body)} bytes>"


# -- listing, stats, metrics --------------------------------------------------------------------

async def _models(request: Request) -> dict[str, Any]:
    return {"models": [m.describe() for m in _state(request).served()]}


# -- the repository extension (Triton's) --------------------------------------------------------

async def _json_object(request: Request) -> dict[str, Any]:
    """The optional JSON object body of a repository call (empty body: ``{}``)."""
    body = await request.body()
    if not body.strip():
        return {}
    try:
        value = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise ServeError(ErrorCode.INVALID_ARGUMENT, "the request body is not valid JSON") from None
    if not isinstance(value, dict):
        raise ServeError(ErrorCode.INVALID_ARGUMENT, "the request body must be a JSON object")
    return value


async def _repository_index(request: Request) -> Response:
    ready = (await _json_object(request)).get("ready", False)
    if not isinstance(ready, bool):
        raise ServeError(ErrorCode.INVALID_ARGUMENT, f"'ready' must be true or false, got {ready!r}")
    return JSONResponse(_state(request).index(ready_only=ready))


async def _repository_load(request: Request, name: str) -> Response:
    await _json_object(request)
    await asyncio.to_thread(_state(request).load, name)  # compiling takes seconds: not on the event loop
    return Response(status_code=200)


async def _repository_unload(request: Request, name: str) -> Response:
    await _json_object(request)
    await asyncio.to_thread(_state(request).unload, name)
    return Response(status_code=200)


async def _stats(request: Request) -> dict[str, Any]:
    return _state(request).metrics.snapshot()


async def _metrics(request: Request) -> Response:
    from prometheus_client import CONTENT_TYPE_LATEST

    return Response(_state(request).metrics.render(), media_type=CONTENT_TYPE_LATEST)


async def _observed(request: Request, model: ServedModel, endpoint: str, handler: Callable[[], Any]) -> Response:
    """Run a model request, counting it in the metrics whatever its outcome (a hang-up as 499, not a 500)."""
    metrics = _state(request).metrics
    metrics.request_started(model.name, model.version)
    started = time.perf_counter()
    status = 500
    try:
        response = await handler()
        status = response.status_code
        return response
    except ServeError as exc:
        status = exc.code.http_status
        raise
    except ClientDisconnect:
        # The client hung up before sending its whole request: nobody is left to answer, nothing failed here.
        # Counted apart (nginx's 499) and never logged as a server error; uvicorn drops what is sent after it.
        status = CLIENT_CLOSED
        return Response(status_code=CLIENT_CLOSED)
    finally:
        metrics.request_finished(model.name, endpoint, status, time.perf_counter() - started, model.version)
