"""``yolo-ov serve``: the inference server (KServe v2 REST, /predict, metrics, a web page).

Thin: options become a :class:`~yolo_ov.serve.ServeConfig`, the models are
loaded and warmed (a bad model exits 3 before anything listens), then uvicorn
serves :func:`~yolo_ov.serve.create_app` on a socket bound here (a busy port
is one line, exit 2). SIGTERM or Ctrl-C: uvicorn stops accepting and waits for
the requests in flight (at most ``--timeout-s``), the models drain and close,
and the command exits 0.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import sys
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import Annotated, Any

import typer

from ..config import DetectConfig
from ..errors import ConfigError
from ._app import app, err, guarded
from ._options import ConfigOpt, DeviceOpt, ModeOpt, NoCacheOpt, NoMmapOpt, build_runtime, parse_classes
from ._ray import RAY_HELP, RAY_OPTION, ray_address, serve_on_ray


@app.command()
@guarded
def serve(
    model: Annotated[
        list[str] | None,
        typer.Option("--model", "-m", help="model to serve: PATH or NAME=PATH (OpenVINO folder, .xml, .onnx, "
                                           ".tflite); repeat for several (or --model-repository)"),
    ] = None,
    model_repository: Annotated[Path | None, typer.Option(
        help="serve the models of this folder, DIR/NAME/VERSION/ (an OpenVINO folder's files, or one .xml, .onnx, "
             ".tflite), each with an optional DIR/NAME/config.yaml version_policy; instead of --model")] = None,
    repository_poll_s: Annotated[float, typer.Option(
        help="with --model-repository: read it every this many seconds and load new or changed versions, unload "
             "removed ones, without dropping a request (0: never)")] = 2.0,
    model_control: Annotated[str, typer.Option(
        help="with --model-repository, as Triton's --model-control-mode: poll (load all, follow changes), none "
             "(load all at start only) or explicit (only POST /v2/repository/models/NAME/load|unload and "
             "--load-model)")] = "poll",
    load_model: Annotated[list[str] | None, typer.Option(
        help="with --model-control explicit: load this model at start ('*': all); repeatable")] = None,
    host: Annotated[str, typer.Option(help="address to listen on; 0.0.0.0 exposes it to the network")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port (0: any free port; the line printed says which)")] = 8000,
    mode: ModeOpt = None,
    device: DeviceOpt = None,
    config: ConfigOpt = None,
    no_cache: NoCacheOpt = False,
    no_mmap: NoMmapOpt = False,
    max_queue: Annotated[int, typer.Option(help="images waiting per model before requests get 503")] = 64,
    batch: Annotated[int | None, typer.Option(help="compile with this batch: images of concurrent requests are "
                                                   "grouped into one inference request")] = None,
    max_wait_ms: Annotated[float, typer.Option(help="batch > 1 models: wait this long to fill a batch")] = 2.0,
    timeout_s: Annotated[float, typer.Option(help="a request not answered in this time gets 504")] = 60.0,
    max_body_mb: Annotated[float, typer.Option(help="larger request bodies get 413")] = 20.0,
    max_pixels: Annotated[int, typer.Option(help="images declaring more pixels get 413 (decompression bombs)")]
    = 100_000_000,
    header_timeout_s: Annotated[float, typer.Option(
        help="close a connection that has not sent a whole request head in this time (slow clients)")] = 10.0,
    keep_alive_s: Annotated[float, typer.Option(help="close an idle kept-alive connection after this")] = 5.0,
    max_connections: Annotated[int, typer.Option(
        help="open connections at most; one more gets 503 and is closed (idle sockets cannot exhaust the server)")]
    = 1000,
    http: Annotated[str, typer.Option(
        help="HTTP parser: auto (httptools when installed), httptools (C, faster) or h11 (pure Python)")] = "auto",
    api_key_env: Annotated[
        str | None, typer.Option(help="require 'Authorization: Bearer <key>' with the key in this env variable")
    ] = None,
    cors: Annotated[list[str] | None, typer.Option(help="allow browser calls from this origin (repeatable)")] = None,
    conf: Annotated[float, typer.Option(help="default confidence threshold")] = 0.25,
    iou: Annotated[float, typer.Option(help="default NMS IoU threshold")] = 0.7,
    max_det: Annotated[int, typer.Option(help="default most detections per image")] = 300,
    classes: Annotated[str | None, typer.Option(help="default class filter, e.g. 0,2")] = None,
    fast_decode: Annotated[bool, typer.Option(
        "--fast-decode", help="decode large JPEGs at 1/2, 1/4 or 1/8 size when the letterbox needs no more (phone "
        "photos: much faster; outputs differ slightly from Ultralytics' full decode)")] = False,
    access_log: Annotated[bool, typer.Option("--access-log", help="log every request")] = False,
    grpc_port: Annotated[int | None, typer.Option(
        help="also serve KServe v2 gRPC (inference.GRPCInferenceService) on this port of --host (0: any free "
             "port; the line printed says which); needs the grpc extra")] = None,
    ray: Annotated[str | None, typer.Option(RAY_OPTION, metavar="[ADDRESS]", help=RAY_HELP)] = None,
    replicas: Annotated[int, typer.Option(help="with --ray: replicas, each with its own compiled models")] = 1,
    min_replicas: Annotated[int | None, typer.Option(help="with --ray and --max-replicas: autoscaling floor")] = None,
    max_replicas: Annotated[int | None, typer.Option(help="with --ray: autoscale up to this many replicas")] = None,
    target_ongoing_requests: Annotated[
        float, typer.Option(help="with --ray autoscaling: requests per replica the autoscaler aims for")
    ] = 8.0,
) -> None:
    """Serve models: KServe v2 REST, POST /predict, /metrics, a web page at /; KServe v2 gRPC with --grpc-port."""
    from ..serve import ServeConfig, model_spec, require_extra

    require_extra()
    api_key = None
    if api_key_env:
        api_key = os.environ.get(api_key_env)
        if not api_key:
            raise ConfigError(f"--api-key-env {api_key_env}: that environment variable is not set or empty")
    settings = ServeConfig(
        models=tuple(model_spec(m) for m in model or ()),
        model_repository=model_repository, repository_poll_s=repository_poll_s, model_control=model_control,
        load_models=tuple(load_model or ()),
        host=host, port=port,
        runtime=build_runtime(mode=mode, device=device, config=config, no_cache=no_cache, no_mmap=no_mmap,
                              default_mode="throughput", batch=batch),
        detect=DetectConfig(conf=conf, iou=iou, max_det=max_det, classes=parse_classes(classes),
                            fast_decode=fast_decode),
        max_queue=max_queue, max_wait_ms=max_wait_ms, timeout_s=timeout_s, max_body_mb=max_body_mb,
        max_pixels=max_pixels, api_key=api_key, cors_origins=tuple(cors or ()),
        header_timeout_s=header_timeout_s, keep_alive_s=keep_alive_s, max_connections=max_connections,
        http_parser=http,
    )
    if ray is not None and model_repository is not None:
        raise ConfigError("--model-repository does not go with --ray: each replica serves the --model files it got")
    if ray is not None and grpc_port is not None:
        raise ConfigError("--grpc-port does not go with --ray: the Ray Serve deployment serves REST only")
    if ray is not None:  # the same app on Ray Serve replicas (yolo_ov.ray)
        serve_on_ray(settings, address=ray_address(ray), replicas=replicas, min_replicas=min_replicas,
                     max_replicas=max_replicas, target_ongoing_requests=target_ongoing_requests, say=_say)
        return
    if replicas != 1 or min_replicas is not None or max_replicas is not None:
        raise ConfigError("--replicas, --min-replicas and --max-replicas go with --ray")
    _require_grpc(grpc_port)
    sock = _listen(settings.host, settings.port)  # before loading: a busy port fails fast
    try:
        _run(settings, sock, access_log=access_log, grpc_port=grpc_port)
    finally:
        sock.close()


def _run(settings: Any, sock: socket.socket, *, access_log: bool, detectors: Any = None,
         grpc_port: int | None = None) -> None:
    """Load the models, serve on ``sock`` (and gRPC on ``grpc_port``) until SIGTERM/SIGINT, drain, print the totals.

    ``detectors`` opens each model's Detector (default: compile its file);
    an embedding program, or a test on a fake engine, passes its own.
    """
    import uvicorn

    from ..serve.app import create_app
    from ..serve.connections import fit_open_files, limit_accept_error_logs, uvicorn_options

    names = ", ".join(m.name for m in settings.models) or f"the model repository {settings.model_repository}"
    _say(f"loading {names} ({settings.runtime.mode.value}, {settings.runtime.device}) ...")
    application = create_app(settings, detectors=detectors)
    state = application.state.yolo
    for m in state.served():
        d = m.describe()
        version = f" version {m.version}" if settings.model_repository is not None else ""
        _say(f"  {m.name}{version}: {d['task']}, input {d['input_shape'][0]}x{d['input_shape'][1]}, "
             f"{d['streams']} streams, "
             f"{d['requests_in_flight']} requests, {d['inference_precision']} on {', '.join(d['execution_devices'])}")
    if settings.model_repository is not None and not state.served():
        _say(_empty_repository_note(settings))
    too_few_files = fit_open_files(settings.max_connections)
    if too_few_files:
        _say(too_few_files)
    bound_host, bound_port = sock.getsockname()[:2]
    if settings.binds_all_interfaces:
        _say(f"warning: listening on ALL interfaces ({settings.host}): anyone who can reach this machine can use "
             f"the models{'' if settings.api_key else '; consider --api-key-env'}")
    shown = f"[{bound_host}]" if ":" in bound_host else bound_host
    try:
        grpc_server = _start_grpc(state, settings.host, grpc_port)
    except BaseException:
        state.close()
        raise
    _say(f"serving on http://{shown}:{bound_port} (web page at /, KServe v2 at /v2, metrics at /metrics); "
         "Ctrl-C or SIGTERM drains and stops")
    server = uvicorn.Server(uvicorn.Config(
        # With gRPC beside it, the models close here after both transports drained, not in the app's lifespan.
        application, log_level="warning", access_log=access_log, lifespan="on" if grpc_server is None else "off",
        timeout_graceful_shutdown=int(settings.timeout_s) + 1, server_header=False, **uvicorn_options(settings),
    ))
    limit_accept_error_logs()
    uvicorn_exit = server.handle_exit

    def handle_exit(sig: int, frame: FrameType | None) -> None:
        if not server.should_exit:
            totals = state.metrics.snapshot()["models"]
            busy = sum(t["in_flight"] for t in totals.values())
            _say(f"{signal.Signals(sig).name}: stopped accepting; finishing {busy} request(s) in flight "
                 f"(at most {settings.timeout_s:g} s)")
        state.accepting = False
        if grpc_server is not None:
            grpc_server.begin_stop(settings.timeout_s)
        uvicorn_exit(sig, frame)

    server.handle_exit = handle_exit  # type: ignore[method-assign]
    try:
        with _quiet_after_drain():
            server.run(sockets=[sock])
    finally:
        if grpc_server is not None:
            grpc_server.stop(settings.timeout_s)  # waits for the gRPC calls in flight
        state.close()  # idempotent; the lifespan normally did it
    totals = state.metrics.snapshot()["models"]
    ok = sum(t["success"] for t in totals.values())
    failed = sum(t["fail"] for t in totals.values())
    _say(f"stopped: {ok} request(s) answered, {failed} failed, "
         f"{sum(t['in_flight'] for t in totals.values())} unfinished")


def _require_grpc(grpc_port: int | None) -> None:
    """``--grpc-port`` needs the grpc extra (grpcio and tritonclient's generated KServe messages): one line if not."""
    import importlib.util

    from ..errors import MissingExtraError

    if grpc_port is None:
        return
    if not 0 <= grpc_port <= 65535:
        raise ConfigError(f"--grpc-port must be 0-65535, got {grpc_port}")
    for package, module in (("grpcio", "grpc"), ("tritonclient", "tritonclient")):
        if importlib.util.find_spec(module) is None:
            raise MissingExtraError(package, "grpc", "yolo-ov serve --grpc-port")
    try:
        import tritonclient.grpc.service_pb2_grpc  # noqa: F401 - the generated service; needs tritonclient[grpc]
    except ImportError as exc:
        raise MissingExtraError(exc.name or "tritonclient[grpc]", "grpc", "yolo-ov serve --grpc-port") from None


def _empty_repository_note(settings: Any) -> str:
    """What to do when a repository starts with no version serving (Triton serves an empty repository too)."""
    root = settings.model_repository
    if settings.model_control == "poll" and settings.repository_poll_s > 0:
        then = f"it is read every {settings.repository_poll_s:g} s, so a version copied in is served then"
    elif settings.model_control == "explicit":
        then = "load one with POST /v2/repository/models/NAME/load"
    else:
        then = "restart the server after adding one (--model-control none reads it at start only)"
    return (f"note: no model is serving from {root} yet (a model is {root}/NAME/1/ holding its .xml/.bin, "
            f".onnx or .tflite; POST /v2/repository/index lists what failed and why); {then}")


def _start_grpc(state: Any, host: str, grpc_port: int | None) -> Any:
    """Start KServe v2 gRPC on ``host:grpc_port`` beside REST (same models and metrics), or nothing."""
    if grpc_port is None:
        return None
    from ..serve.grpc_server import GrpcServer

    grpc_server = GrpcServer(state, host, grpc_port).start()
    _say(f"gRPC on {grpc_server.address} (KServe v2 inference.GRPCInferenceService)")
    return grpc_server


@contextlib.contextmanager
def _quiet_after_drain() -> Iterator[None]:
    """Let a drained shutdown exit 0.

    After draining, uvicorn raises the signal again with the handler that was
    there before it started; a handler that does nothing makes that a no-op,
    where the default (or ``guarded``'s) would end the process with 143 or 130.
    """
    handled = (signal.SIGINT, signal.SIGTERM)
    previous = {sig: signal.signal(sig, lambda *_: None) for sig in handled}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler if handler is not None else signal.SIG_DFL)


def _listen(host: str, port: int) -> socket.socket:
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
    except socket.gaierror as exc:
        raise ConfigError(f"--host {host!r}: not an address this machine can listen on ({exc.strerror})") from None
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    sock.set_inheritable(True)
    return sock


def _say(message: str) -> None:
    err.print(message, soft_wrap=True, markup=False, highlight=False)
    sys.stderr.flush()


__all__ = ["serve"]
