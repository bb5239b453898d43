"""The KServe v2 gRPC transport: ``inference.GRPCInferenceService`` on the same models, queues and metrics as REST.

:class:`GrpcServer` runs a ``grpc.aio`` server in a thread of its own (its own
event loop), beside uvicorn, on the same :class:`~yolo_ov.serve.state.ServeState`:
each RPC converts its protobuf message (:mod:`~yolo_ov.serve.grpc_codec`),
calls the transport-neutral operations (:mod:`~yolo_ov.serve.service`) and
maps a :class:`~yolo_ov.serve.errors.ServeError` to ``code.grpc_status`` with
the same one-line message REST sends. The same limits apply: the message size
is ``--max-body-mb`` (gRPC's own ``RESOURCE_EXHAUSTED``), pixels and queue
bound in the model, the deadline is the earliest of ``--timeout-s``, the
request's ``timeout`` parameter and the call's gRPC deadline, the API key
comes as metadata ``authorization: Bearer <key>``; every model request is
counted in the metrics with ``endpoint="grpc"`` and the HTTP status of its
code (so a refused one is ``yolo_ov_requests_rejected`` as over REST).

``ModelStreamInfer`` answers each request of the stream in the order it came,
with at most :data:`STREAM_WINDOW` requests of one stream in flight: the
server reads the next request only when one finishes, so a fast client is held
back by gRPC's flow control instead of queueing without bound. A request that
fails gets its ``error_message`` in the stream, which goes on (Triton's way).
When the server shuts down, a stream answers the requests it holds, then ends
with ``UNAVAILABLE`` at the next request it would otherwise take.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
from tritonclient.grpc import service_pb2_grpc

from ..errors import ConfigError
from . import grpc_codec as codec
from .errors import ErrorCode, ServeError
from .kserve import InferRequest, InferResponse
from .models import ServedModel
from .service import infer, server_metadata
from .state import ServeState

__all__ = ["STREAM_WINDOW", "GrpcServer", "InferenceServicer"]

#: Requests of one ``ModelStreamInfer`` stream in flight at once (further ones wait in the client's stream).
STREAM_WINDOW = 8


class InferenceServicer(service_pb2_grpc.GRPCInferenceServiceServicer):
    """The RPCs of ``inference.GRPCInferenceService`` this server implements (the rest: ``UNIMPLEMENTED``)."""

    def __init__(self, state: ServeState) -> None:
        self.state = state
        key = state.config.api_key
        self._expected = f"Bearer {key}".encode() if key else None
        self.window = max(1, min(STREAM_WINDOW, state.config.max_queue))

    # -- helpers ---------------------------------------------------------------
    def _check_key(self, context: grpc.aio.ServicerContext) -> None:
        if self._expected is None:
            return
        given = next((v for k, v in context.invocation_metadata() or () if k == "authorization"), "")
        if not hmac.compare_digest(str(given).encode(), self._expected):  # constant time, as REST
            raise ServeError(ErrorCode.UNAUTHENTICATED,
                             "missing or wrong API key: send metadata 'authorization: Bearer <key>'")

    async def _guarded(self, context: grpc.aio.ServicerContext, body: Callable[[], Awaitable[Any]]) -> Any:
        """Check the key, run ``body``, turn a ServeError into the call's status and one-line details."""
        try:
            self._check_key(context)
            return await body()
        except ServeError as exc:
            if exc.retry_after_s is not None:
                context.set_trailing_metadata((("retry-after", str(exc.retry_after_s)),))
            await context.abort(grpc.StatusCode[exc.code.grpc_status], exc.message)

    def _model(self, name: str, version: str) -> ServedModel:
        return self.state.model(name or None, version or None)

    async def _infer(self, message: Any, context: grpc.aio.ServicerContext) -> InferResponse:
        """One ``ModelInferRequest``, counted in the metrics as REST counts ``/infer`` (``endpoint="grpc"``)."""
        started = time.monotonic()
        model = self.state.acquire(message.model_name or None, message.model_version or None)
        metrics = self.state.metrics
        metrics.request_started(model.name, model.version)
        status = 500
        try:
            request = _with_deadline(codec.infer_request(message), context.time_remaining())
            response = await infer(model, request, started=started)
            status = 200
            return response
        except ServeError as exc:
            status = exc.code.http_status
            raise
        finally:
            model.release()
            metrics.request_finished(model.name, "grpc", status, time.monotonic() - started, model.version)

    # -- health and metadata -----------------------------------------------------
    async def ServerLive(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        return codec.pb2.ServerLiveResponse(live=True)

    async def ServerReady(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        return codec.pb2.ServerReadyResponse(ready=self.state.ready)

    async def ModelReady(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        async def body() -> Any:
            model = self._model(request.name, request.version)
            return codec.pb2.ModelReadyResponse(ready=model.ready and self.state.accepting)

        return await self._guarded(context, body)

    async def ServerMetadata(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        async def body() -> Any:
            return codec.pb2.ServerMetadataResponse(**server_metadata())

        return await self._guarded(context, body)

    async def ModelMetadata(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        async def body() -> Any:
            return codec.model_metadata(self.state.metadata(request.name or None, request.version or None))

        return await self._guarded(context, body)

    async def ModelConfig(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        async def body() -> Any:
            return codec.model_config(self._model(request.name, request.version).model_config())

        return await self._guarded(context, body)

    async def ModelStatistics(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        async def body() -> Any:
            named = request.name
            models = [self._model(named, request.version)] if named else self.state.served()
            return codec.statistics([m.statistics() for m in models])

        return await self._guarded(context, body)

    # -- the repository extension (Triton's) ------------------------------------------------
    async def RepositoryIndex(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        async def body() -> Any:
            response = codec.pb2.RepositoryIndexResponse()
            for entry in self.state.index(ready_only=request.ready):
                response.models.add(**entry)
            return response

        return await self._guarded(context, body)

    async def RepositoryModelLoad(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        async def body() -> Any:
            await asyncio.to_thread(self.state.load, request.model_name)  # compiling: not on the event loop
            return codec.pb2.RepositoryModelLoadResponse()

        return await self._guarded(context, body)

    async def RepositoryModelUnload(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        async def body() -> Any:
            await asyncio.to_thread(self.state.unload, request.model_name)
            return codec.pb2.RepositoryModelUnloadResponse()

        return await self._guarded(context, body)

    # -- inference -------------------------------------------------------------------
    async def ModelInfer(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        async def body() -> Any:
            return codec.infer_response(await self._infer(request, context))

        return await self._guarded(context, body)

    async def ModelStreamInfer(
        self, request_iterator: AsyncIterator[Any], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[Any]:
        try:
            self._check_key(context)
        except ServeError as exc:
            await context.abort(grpc.StatusCode[exc.code.grpc_status], exc.message)
        slots = asyncio.Semaphore(self.window)
        pending: asyncio.Queue[asyncio.Task | None] = asyncio.Queue()
        draining = False

        async def read() -> None:
            nonlocal draining
            try:
                while True:
                    await slots.acquire()  # backpressure: read the next request only when a slot is free
                    try:
                        message = await request_iterator.__anext__()
                    except StopAsyncIteration:
                        return
                    if not self.state.accepting:  # shutting down: answer what is in flight, take no more
                        draining = True
                        return
                    pending.put_nowait(asyncio.ensure_future(self._stream_one(message, context)))
            finally:
                pending.put_nowait(None)

        reader = asyncio.ensure_future(read())
        try:
            while (task := await pending.get()) is not None:
                answer = await task
                slots.release()
                yield answer
            await reader  # a failed read (the client went away) ends the call with its error
            if draining:
                await context.abort(grpc.StatusCode.UNAVAILABLE,
                                    "the server is shutting down: requests answered so far are complete; "
                                    "send the rest to another server")
        finally:
            reader.cancel()
            while not pending.empty():
                task = pending.get_nowait()
                if task is not None:
                    task.cancel()

    async def _stream_one(self, message: Any, context: grpc.aio.ServicerContext) -> Any:
        try:
            return codec.pb2.ModelStreamInferResponse(infer_response=codec.infer_response(
                await self._infer(message, context)))
        except ServeError as exc:
            return codec.pb2.ModelStreamInferResponse(
                error_message=f"{exc.code.grpc_status}: {exc.message}",
                infer_response=codec.pb2.ModelInferResponse(model_name=message.model_name,
                                                             model_version=message.model_version, id=message.id))


def _with_deadline(request: InferRequest, remaining_s: float | None) -> InferRequest:
    """The request with the call's gRPC deadline folded into its ``timeout`` parameter (microseconds).

    Raises:
        ServeError: ``DEADLINE_EXCEEDED`` when the deadline has passed already.
    """
    if remaining_s is None:
        return request
    if remaining_s <= 0:
        raise ServeError(ErrorCode.DEADLINE_EXCEEDED, "the call's deadline passed before inference started")
    given = request.parameters.get("timeout")
    timeout = remaining_s * 1e6
    if isinstance(given, (int, float)) and not isinstance(given, bool) and given > 0:
        timeout = min(timeout, float(given))
    elif given is not None:
        return request  # a malformed timeout: the service says so
    return InferRequest(id=request.id, inputs=request.inputs, parameters={**request.parameters, "timeout": timeout},
                        outputs=request.outputs)


class GrpcServer:
    """``inference.GRPCInferenceService`` on ``state``, served from a thread with its own event loop.

    Args:
        state: the models, settings and metrics REST serves too.
        host, port: where to listen (``port=0``: any free port; :attr:`port` says which).

    Example:
        >>> server = GrpcServer(app.state.yolo, "127.0.0.1", 0).start()  # doctest: +SKIP
        >>> server.port, server.stop(grace_s=5)  # doctest: +SKIP
    """

    def __init__(self, state: ServeState, host: str = "127.0.0.1", port: int = 8001) -> None:
        self.state = state
        self.host = host
        self.port = port
        self._loop = asyncio.new_event_loop()
        self._server: grpc.aio.Server | None = None
        self._thread = threading.Thread(target=self._run, name="yolo-ov-grpc", daemon=True)
        self._started = threading.Event()
        self._error: BaseException | None = None
        self._stopping: asyncio.Future | None = None

    @property
    def address(self) -> str:
        """``host:port`` as a client dials it (IPv6 in brackets)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    def start(self) -> GrpcServer:
        """Bind and start serving; returns once it listens.

        Raises:
            ConfigError: the address cannot be bound (busy port, unknown host).
        """
        self._thread.start()
        self._started.wait()
        if self._error is not None:
            self._thread.join()
            raise self._error
        return self

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._serve())
        finally:
            self._loop.close()

    async def _serve(self) -> None:
        limit = self.state.config.max_body_bytes
        server = grpc.aio.server(options=[
            ("grpc.max_receive_message_length", limit),  # the body limit: larger messages get RESOURCE_EXHAUSTED
            ("grpc.max_send_message_length", -1),
            ("grpc.so_reuseport", 0),  # a busy port is an error, not a second server sharing it
        ])
        service_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(InferenceServicer(self.state), server)
        try:
            self.port = server.add_insecure_port(self.address)
        except RuntimeError as exc:
            self._error = ConfigError(f"--grpc-port: cannot listen on {self.address} ({exc})")
        if self._error is None and self.port == 0:
            self._error = ConfigError(f"--grpc-port: cannot listen on {self.address}")
        if self._error is not None:
            self._started.set()
            return
        self._server = server
        await server.start()
        self._started.set()
        await server.wait_for_termination()
        if self._stopping is not None:
            await self._stopping

    def begin_stop(self, grace_s: float) -> None:
        """Stop taking calls now and let those in flight finish for up to ``grace_s`` (returns at once)."""
        server = self._server
        if server is not None and not self._loop.is_closed():
            def stop() -> None:
                if self._stopping is None:
                    self._stopping = asyncio.ensure_future(server.stop(grace_s))

            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile: stopped already
                self._loop.call_soon_threadsafe(stop)

    def stop(self, grace_s: float = 0.0) -> None:
        """Stop (as :meth:`begin_stop`) and wait until the calls in flight are done or cancelled."""
        self.begin_stop(grace_s)
        self._thread.join(grace_s + 10.0)
