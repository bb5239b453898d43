"""A load sweep of a KServe v2 server, measured the way Triton's ``perf_analyzer`` measures it.

Users of Triton and OpenVINO Model Server judge a server with ``perf_analyzer``:
a concurrency sweep (closed loop: N requests always outstanding) or a fixed
request rate (open loop), each step measured in windows until its throughput
is stable, reporting throughput, p50/p90/p95/p99 latency and the server's own
queue and compute time from the statistics extension. Its binary does not
install everywhere (it needs glibc 2.38), so this module does the same with
``tritonclient``'s asyncio clients (``tritonclient.grpc.aio``, one HTTP/2
channel; ``tritonclient.http.aio``, one aiohttp connection per outstanding
request), in one event loop so the client costs one core at most.

The rules, as perf_analyzer's:

* a step runs in windows of ``window_ms``; it is **stable** when each of the
  last ``stable_windows`` (3) windows' throughput and p99 latency are within
  ``stability`` (10%) of their average; after ``max_windows`` it stops
  unstable (reported as such);
* a step's figures are those of its last 3 windows merged: throughput is
  answered requests per second of those windows, latencies are percentiles of
  every request that completed in them, and the server's queue and compute
  time are the deltas of ``/v2/models/{name}/stats`` (gRPC
  ``ModelStatistics``) over them, per request, in microseconds.

:func:`run_sweep` returns a :class:`SweepReport`; ``yolo-ov bench-serve`` is
its command line and :mod:`yolo_ov.bench.serve_report` writes the table, CSV
and plot.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from ..errors import ConfigError, MissingExtraError

__all__ = [
    "LatencySummary",
    "ServerTimes",
    "StepResult",
    "SweepConfig",
    "SweepReport",
    "Window",
    "is_stable",
    "run_sweep",
]

PROTOCOLS = ("http", "grpc")
DISTRIBUTIONS = ("constant", "poisson")


@dataclass(frozen=True, kw_only=True)
class SweepConfig:
    """What to load and how: one protocol's endpoint, one model, the steps and the stability rule.

    ``concurrency`` steps run unless ``request_rates`` is given (then the open
    loop runs at each rate, Poisson or constant arrivals as perf_analyzer's
    ``--request-distribution``).
    """

    url: str
    model: str
    protocol: str = "http"
    model_version: str = ""
    concurrency: tuple[int, ...] = (1, 2, 4, 8, 16)
    request_rates: tuple[float, ...] = ()
    distribution: str = "constant"
    window_ms: float = 2000.0
    stability: float = 0.10
    stable_windows: int = 3
    max_windows: int = 10
    timeout_s: float = 60.0
    api_key: str | None = None
    max_outstanding: int = 1024
    seed: int = 0

    def __post_init__(self) -> None:
        if self.protocol not in PROTOCOLS:
            raise ConfigError(f"--protocol must be one of {', '.join(PROTOCOLS)}, got {self.protocol!r}")
        if self.distribution not in DISTRIBUTIONS:
            raise ConfigError(f"--request-distribution must be constant or poisson, got {self.distribution!r}")
        if not self.request_rates and (not self.concurrency or any(c < 1 for c in self.concurrency)):
            raise ConfigError(f"--concurrency needs positive integers, got {list(self.concurrency)}")
        if any(r <= 0 for r in self.request_rates):
            raise ConfigError(f"--request-rate needs positive rates, got {list(self.request_rates)}")
        if self.window_ms <= 0:
            raise ConfigError(f"--window-ms must be positive, got {self.window_ms}")
        if not 0 < self.stability < 1:
            raise ConfigError(f"--stability must be a fraction between 0 and 1 (0.1 = 10%), got {self.stability}")
        if self.stable_windows < 1 or self.max_windows < self.stable_windows:
            raise ConfigError(f"--max-windows must be at least {self.stable_windows}, got {self.max_windows}")
        if not self.model:
            raise ConfigError("--model: name the model to load (as the server lists it)")

    @property
    def steps(self) -> list[tuple[str, float]]:
        """``("concurrency", n)`` or ``("request_rate", r)`` per step, in order."""
        if self.request_rates:
            return [("request_rate", float(r)) for r in self.request_rates]
        return [("concurrency", float(c)) for c in self.concurrency]


@dataclass(frozen=True)
class LatencySummary:
    """Microseconds per request: the average and the percentiles perf_analyzer prints.

    Percentiles interpolate linearly between the closest ranks (numpy's default, as
    :class:`~yolo_ov.bench.LatencyStats`).
    """

    count: int
    average_us: float
    p50_us: float
    p90_us: float
    p95_us: float
    p99_us: float

    @classmethod
    def from_samples(cls, samples_us: Sequence[float] | np.ndarray) -> LatencySummary:
        a = np.asarray(samples_us, dtype=np.float64)
        if a.size == 0:
            nan = float("nan")
            return cls(0, nan, nan, nan, nan, nan)
        p50, p90, p95, p99 = np.percentile(a, [50, 90, 95, 99])
        return cls(int(a.size), float(a.mean()), float(p50), float(p90), float(p95), float(p99))


@dataclass(frozen=True)
class Window:
    """One measurement window of a step: answered requests per second and the p99 of those answered in it."""

    seconds: float
    answered: int
    p99_us: float

    @property
    def throughput(self) -> float:
        return self.answered / self.seconds if self.seconds > 0 else 0.0


def is_stable(windows: Sequence[Window], stability: float, count: int = 3) -> bool:
    """perf_analyzer's rule: each of the last ``count`` windows' throughput and p99 within ``stability`` of their
    average (a window with no answer is never stable)."""
    if len(windows) < count:
        return False
    last = windows[-count:]
    for values in ([w.throughput for w in last], [w.p99_us for w in last]):
        if any(not np.isfinite(v) or v <= 0 for v in values):
            return False
        mean = sum(values) / len(values)
        if any(abs(v - mean) > stability * mean for v in values):
            return False
    return True


@dataclass(frozen=True)
class ServerTimes:
    """The server's own figures over a step, from the statistics extension: per request, in microseconds.

    ``queue_us`` is perf_analyzer's "Server: queue", ``compute_infer_us`` its
    "compute infer"; ``requests`` is the delta of successful requests the
    server counted (it should equal what the client saw answered).
    """

    requests: int
    inferences: int
    executions: int
    request_us: float
    queue_us: float
    compute_input_us: float
    compute_infer_us: float
    compute_output_us: float

    @classmethod
    def between(cls, before: dict[str, Any], after: dict[str, Any]) -> ServerTimes:
        """From two ``model_stats`` entries (REST's JSON or gRPC's as JSON: int64 counts come as strings)."""

        def delta(*keys: str) -> int:
            a: Any = after
            b: Any = before
            for k in keys:
                a, b = a.get(k, {}), b.get(k, {})
            return int(a or 0) - int(b or 0)

        def per(phase: str) -> float:
            n = delta("inference_stats", phase, "count")
            return delta("inference_stats", phase, "ns") / n / 1e3 if n > 0 else float("nan")

        return cls(requests=delta("inference_stats", "success", "count"), inferences=delta("inference_count"),
                   executions=delta("execution_count"), request_us=per("success"), queue_us=per("queue"),
                   compute_input_us=per("compute_input"), compute_infer_us=per("compute_infer"),
                   compute_output_us=per("compute_output"))


@dataclass(frozen=True)
class StepResult:
    """One step of the sweep: its load, what the client measured and what the server reported."""

    protocol: str
    load: str  # "concurrency" | "request_rate"
    value: float
    throughput: float  # answered inferences per second (one image per request)
    latency: LatencySummary
    statuses: dict[str, int]  # every answer by status: "OK" or the error's (gRPC name / HTTP code)
    stable: bool
    windows: tuple[Window, ...]
    server: ServerTimes | None
    late: int = 0  # open loop: requests sent late because max_outstanding were in flight

    @property
    def errors(self) -> dict[str, int]:
        return {k: v for k, v in self.statuses.items() if k != "OK"}

    def to_dict(self) -> dict[str, Any]:
        return {"protocol": self.protocol, "load": self.load, "value": self.value,
                "throughput": round(self.throughput, 3), "latency_us": _rounded(asdict(self.latency)),
                "statuses": dict(self.statuses), "errors": self.errors, "stable": self.stable,
                "windows": [{"seconds": round(w.seconds, 4), "answered": w.answered,
                             "throughput": round(w.throughput, 3), "p99_us": round(w.p99_us, 1)}
                            for w in self.windows],
                "server_us": _rounded(asdict(self.server)) if self.server else None, "late": self.late}


@dataclass(frozen=True)
class SweepReport:
    """Every step of one sweep, with what it ran against."""

    config: SweepConfig
    images: int
    steps: tuple[StepResult, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict[str, Any]:
        c = self.config
        return {"url": c.url, "protocol": c.protocol, "model": c.model, "model_version": c.model_version,
                "window_ms": c.window_ms, "stability": c.stability, "max_windows": c.max_windows,
                "distribution": c.distribution if c.request_rates else None, "images": self.images,
                "steps": [s.to_dict() for s in self.steps]}


def _rounded(d: dict[str, Any]) -> dict[str, Any]:
    return {k: (round(v, 2) if isinstance(v, float) and np.isfinite(v) else v) for k, v in d.items()}


# -- the clients ----------------------------------------------------------------------------------------------------
def _client_modules(protocol: str) -> Any:
    try:
        if protocol == "grpc":
            import tritonclient.grpc.aio as module
        else:
            import tritonclient.http.aio as module
    except ImportError as exc:
        raise MissingExtraError("tritonclient", "bench-serve", f"yolo-ov bench-serve over {protocol}") from exc
    return module


def _address(url: str) -> str:
    """``host:port`` of ``http://host:port/``, ``grpc://host:port`` or ``host:port``."""
    text = url.strip()
    for prefix in ("http://", "grpc://"):
        text = text.removeprefix(prefix)
    text = text.rstrip("/")
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or "/" in text:
        raise ConfigError(f"URL {url!r}: give the server as HOST:PORT (or http://HOST:PORT)")
    return text


class _Caller:
    """One protocol's asyncio client: ``infer(i)`` sends image ``i`` and returns its status."""

    def __init__(self, config: SweepConfig, images: Sequence[bytes]) -> None:
        self.config = config
        self.module = _client_modules(config.protocol)
        self.address = _address(config.url)
        self.headers = {"authorization": f"Bearer {config.api_key}"} if config.api_key else None
        self.images = [np.array([image], dtype=np.object_) for image in images]
        self.client: Any = None

    async def __aenter__(self) -> _Caller:
        if self.config.protocol == "grpc":
            # the server's default message limit is --max-body-mb; grpc's own client default (4 MB) would refuse first
            options = [("grpc.max_send_message_length", -1), ("grpc.max_receive_message_length", -1)]
            self.client = self.module.InferenceServerClient(self.address, channel_args=options)
        else:
            limit = max(self.config.concurrency or (1,)) if not self.config.request_rates \
                else self.config.max_outstanding
            self.client = self.module.InferenceServerClient(self.address, conn_limit=int(limit) + 4,
                                                            conn_timeout=self.config.timeout_s)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.client.close()

    async def check(self) -> None:
        """The server is live and has the model: else one line naming what is wrong."""
        from tritonclient.utils import InferenceServerException

        c, where = self.config, f"{self.config.protocol} {self.address}"
        try:
            await asyncio.wait_for(self._live(), timeout=10)
        except Exception as exc:  # noqa: BLE001  # refused, reset, not HTTP/2, timed out: the same answer
            raise ConfigError(f"URL {c.url}: no KServe v2 server answers over {where} ({_reason(exc)}); "
                              "is `yolo-ov serve` running there (gRPC needs --grpc-port)?") from None
        try:
            ready = await asyncio.wait_for(self._ready(), timeout=10)
        except (InferenceServerException, asyncio.TimeoutError) as exc:
            raise ConfigError(f"--model {c.model}: {_reason(exc)}") from None
        if not ready:
            version = f" version {c.model_version}" if c.model_version else ""
            raise ConfigError(f"--model {c.model}{version}: the server at {c.url} has no such ready model; "
                              "see GET /v2/models/{name} or its /models page") from None

    async def _live(self) -> None:
        if self.config.protocol == "grpc":
            live = await self.client.is_server_live(headers=self.headers, client_timeout=10)
        else:
            live = await self.client.is_server_live(headers=self.headers)
        if not live:
            raise OSError("the server says it is not live")

    async def _ready(self) -> bool:
        c = self.config
        return bool(await self.client.is_model_ready(c.model, c.model_version, headers=self.headers))

    async def infer(self, index: int) -> str:
        from tritonclient.utils import InferenceServerException

        c = self.config
        inp = self.module.InferInput("image", [1], "BYTES")
        inp.set_data_from_numpy(self.images[index % len(self.images)])
        try:
            if c.protocol == "grpc":
                await self.client.infer(c.model, [inp], model_version=c.model_version, headers=self.headers,
                                        client_timeout=c.timeout_s)
            else:
                await self.client.infer(c.model, [inp], model_version=c.model_version, headers=self.headers)
        except InferenceServerException as exc:
            return _status(exc)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001  # a connection error: counted by its kind, the sweep goes on
            return type(exc).__name__
        return "OK"

    async def stats(self) -> dict[str, Any] | None:
        """This model's ``model_stats`` entry, or None when the server has no statistics extension."""
        from tritonclient.utils import InferenceServerException

        c = self.config
        try:
            if c.protocol == "grpc":
                got = await self.client.get_inference_statistics(c.model, c.model_version, headers=self.headers,
                                                                 as_json=True, client_timeout=30)
            else:
                got = await self.client.get_inference_statistics(c.model, c.model_version, headers=self.headers)
        except InferenceServerException:
            return None
        entries = [e for e in got.get("model_stats", []) if e.get("name") == c.model]
        return entries[0] if entries else None


def _status(exc: Any) -> str:
    status = str(exc.status() or "error")
    return status.removeprefix("StatusCode.")


def _reason(exc: BaseException) -> str:
    text = (exc.message() if hasattr(exc, "message") and callable(exc.message) else str(exc)) or type(exc).__name__
    return " ".join(str(text).split())[:200]


# -- one step ---------------------------------------------------------------------------------------------------------
class _Recorder:
    """Completed requests as (end time, latency us, status); cut into windows by time."""

    def __init__(self) -> None:
        self.done: list[tuple[float, float, str]] = []

    def add(self, start: float, status: str) -> None:
        end = time.perf_counter()
        self.done.append((end, (end - start) * 1e6, status))

    def between(self, t0: float, t1: float) -> list[tuple[float, float, str]]:
        return [r for r in self.done if t0 <= r[0] < t1]


async def _step(caller: _Caller, load: str, value: float, config: SweepConfig,
                progress: Callable[[str], None] | None) -> StepResult:
    recorder = _Recorder()
    stop = asyncio.Event()
    late = [0]
    counter = iter(range(1 << 62))
    rng = random.Random(config.seed)  # noqa: S311  # arrival times, not secrets

    async def closed_worker() -> None:
        while not stop.is_set():
            i = next(counter)
            t0 = time.perf_counter()
            recorder.add(t0, await caller.infer(i))

    async def one(i: int, outstanding: asyncio.Semaphore) -> None:
        try:
            t0 = time.perf_counter()
            recorder.add(t0, await caller.infer(i))
        finally:
            outstanding.release()

    async def open_loop() -> None:
        outstanding = asyncio.Semaphore(config.max_outstanding)
        tasks: set[asyncio.Task[None]] = set()
        due = time.perf_counter()
        while not stop.is_set():
            due += rng.expovariate(value) if config.distribution == "poisson" else 1.0 / value
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            if outstanding.locked():
                late[0] += 1
            await outstanding.acquire()
            task = asyncio.ensure_future(one(next(counter), outstanding))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        if tasks:
            await asyncio.gather(*tasks)

    workers = [asyncio.ensure_future(open_loop())] if load == "request_rate" else \
        [asyncio.ensure_future(closed_worker()) for _ in range(int(value))]
    window_s = config.window_ms / 1e3
    bounds = [time.perf_counter()]
    snapshots = [await caller.stats()]
    windows: list[Window] = []
    try:
        while len(windows) < config.max_windows:
            await asyncio.sleep(max(0.0, bounds[-1] + window_s - time.perf_counter()))
            bounds.append(time.perf_counter())
            snapshots.append(await caller.stats())
            done = recorder.between(bounds[-2], bounds[-1])
            ok = [lat for _, lat, status in done if status == "OK"]
            p99 = float(np.percentile(ok, 99)) if ok else float("nan")
            windows.append(Window(bounds[-1] - bounds[-2], len(ok), p99))
            if progress:
                progress(f"{caller.config.protocol} {load} {value:g}: window {len(windows)} "
                         f"{windows[-1].throughput:.1f} infer/s")
            if is_stable(windows, config.stability, config.stable_windows):
                break
            if any(w.seconds > 0 for w in windows) and not any(w.answered for w in windows) and len(windows) >= 3:
                break  # nothing answered at all: the errors say why, more windows will not
    finally:
        stop.set()
        await asyncio.wait_for(asyncio.gather(*workers, return_exceptions=True), timeout=config.timeout_s + 10)
    n = min(config.stable_windows, len(windows))
    t0, t1 = bounds[-1 - n], bounds[-1]
    merged = recorder.between(t0, t1)
    statuses: dict[str, int] = {}
    for _, _, status in merged:
        statuses[status] = statuses.get(status, 0) + 1
    ok = [lat for _, lat, status in merged if status == "OK"]
    before, after = snapshots[-1 - n], snapshots[-1]
    server = ServerTimes.between(before, after) if before is not None and after is not None else None
    return StepResult(protocol=config.protocol, load=load, value=value, throughput=len(ok) / (t1 - t0),
                      latency=LatencySummary.from_samples(ok), statuses=statuses,
                      stable=is_stable(windows, config.stability, config.stable_windows),
                      windows=tuple(windows), server=server, late=late[0])


async def _sweep(config: SweepConfig, images: Sequence[bytes],
                 progress: Callable[[str], None] | None) -> SweepReport:
    async with _Caller(config, images) as caller:
        await caller.check()
        steps = []
        for load, value in config.steps:
            steps.append(await _step(caller, load, value, config, progress))
    return SweepReport(config=config, images=len(images), steps=tuple(steps))


def run_sweep(config: SweepConfig, images: Sequence[bytes],
              progress: Callable[[str], None] | None = None) -> SweepReport:
    """Run every step of ``config`` against its server, sending ``images`` (encoded bytes, one per request, in turn).

    Raises :class:`~yolo_ov.errors.ConfigError` (one line) when the server does
    not answer or lacks the model, and :class:`~yolo_ov.errors.MissingExtraError`
    without ``tritonclient``.
    """
    if not images:
        raise ConfigError("--images: no image to send; give JPEG files or a folder holding some")
    _client_modules(config.protocol)
    return asyncio.run(_sweep(config, list(images), progress))
