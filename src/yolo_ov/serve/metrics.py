"""Prometheus metrics of the server, named like OpenVINO Model Server's where one exists.

OVMS exposes ``ovms_requests_success``, ``ovms_requests_fail``,
``ovms_request_time_us``, ``ovms_inference_time_us``,
``ovms_wait_for_infer_req_time_us``, ``ovms_streams``,
``ovms_infer_req_queue_size`` and ``ovms_current_requests``; the same
metrics here are ``yolo_ov_...`` with the same suffixes, units
(microseconds) and a ``name`` label, so a dashboard built for one reads the
other. Added: images waiting per model, requests refused with 503, and
requests the client closed before sending them whole (nginx's 499: neither a
success nor a failure of the server).

:class:`InferenceStatistics` is the KServe statistics extension as Triton
reports it (``GET /v2/models/{name}/stats``, gRPC ``ModelStatistics``):
cumulative counts and nanoseconds per model, so ``perf_analyzer`` and other
Triton tooling read the server-side queue and compute times.

Each app gets its own :class:`~prometheus_client.CollectorRegistry`, so two
apps in one process (tests, or a user mounting two) never collide.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily

__all__ = ["CLIENT_CLOSED", "InferenceStatistics", "ServeMetrics"]

#: The status a request gets when its client hung up before sending it whole (nginx's "client closed request").
CLIENT_CLOSED = 499

#: Microsecond buckets from 1 ms to 60 s (OVMS uses microseconds too).
_US_BUCKETS = (
    1e3, 2e3, 5e3, 1e4, 2e4, 3e4, 5e4, 7.5e4, 1e5, 1.5e5, 2e5, 3e5, 5e5, 1e6, 2e6, 5e6, 1e7, 3e7, 6e7,
)


@dataclass
class _Totals:
    """Plain counters for the web page's live figures (no text-format parsing in the browser)."""

    success: int = 0
    fail: int = 0
    rejected: int = 0
    closed: int = 0
    images: int = 0
    in_flight: int = 0
    queued: int = 0


@dataclass
class ServeMetrics:
    """The server's metrics in their own registry; :meth:`render` is the ``/metrics`` body.

    Every per-model series has a ``name`` and a ``version`` label (``"1"`` for
    a model given with ``--model``), so two versions served side by side
    during an update are told apart; the web page's totals add up a model's
    versions. ``yolo_ov_model_loads``, ``_unloads``, ``_reloads`` and
    ``_load_failures`` count the repository's events per version.
    """

    registry: CollectorRegistry = field(default_factory=lambda: CollectorRegistry(auto_describe=True))
    started: float = field(default_factory=time.time)

    def __post_init__(self) -> None:
        r = self.registry
        nv = ["name", "version"]
        self.requests_success = Counter(
            "yolo_ov_requests_success", "Requests answered successfully", [*nv, "endpoint"], registry=r)
        self.requests_fail = Counter(
            "yolo_ov_requests_fail", "Requests answered with an error, by HTTP status",
            [*nv, "endpoint", "code"], registry=r)
        self.requests_client_closed = Counter(
            "yolo_ov_requests_client_closed", "Requests whose client hung up before sending them whole (nginx's "
            "499); not failures", [*nv, "endpoint"], registry=r)
        self.requests_rejected = Counter(
            "yolo_ov_requests_rejected", "Requests refused with 503 because the model's queue was full",
            nv, registry=r)
        self.request_time = Histogram(
            "yolo_ov_request_time_us", "Request time in the server, microseconds", [*nv, "endpoint"],
            buckets=_US_BUCKETS, registry=r)
        self.inference_time = Histogram(
            "yolo_ov_inference_time_us", "Inference time per image, microseconds", nv,
            buckets=_US_BUCKETS, registry=r)
        self.queue_wait = Histogram(
            "yolo_ov_wait_for_infer_req_time_us",
            "Time an image waited for an inference request slot, microseconds", nv,
            buckets=_US_BUCKETS, registry=r)
        self.images = Counter("yolo_ov_images", "Images inferred", nv, registry=r)
        self.images_queued = Gauge(
            "yolo_ov_images_in_queue", "Images submitted and not finished (waiting or in inference)", nv,
            registry=r)
        self.current_requests = Gauge(
            "yolo_ov_current_requests", "Requests being processed", nv, registry=r)
        self.streams = Gauge("yolo_ov_streams", "Inference streams of the compiled model", nv, registry=r)
        self.infer_req_queue_size = Gauge(
            "yolo_ov_infer_req_queue_size", "Inference request slots of the model (OpenVINO's optimal number)",
            nv, registry=r)
        self.max_queue = Gauge("yolo_ov_max_queue", "Most images allowed to wait per model", nv, registry=r)
        self.model_loads = Counter(
            "yolo_ov_model_loads", "Model versions compiled, warmed up and put in service", nv, registry=r)
        self.model_unloads = Counter(
            "yolo_ov_model_unloads", "Model versions taken out of service and closed", nv, registry=r)
        self.model_reloads = Counter(
            "yolo_ov_model_reloads", "Model versions replaced by a new instance because their files changed",
            nv, registry=r)
        self.model_load_failures = Counter(
            "yolo_ov_model_load_failures", "Model versions that failed to load (the serving one stays)", nv,
            registry=r)
        self._totals: dict[str, _Totals] = {}
        self._engine_counts: dict[tuple[str, str], Callable[[], int]] = {}
        r.register(_EngineCollector(self._engine_counts))
        self._lock = threading.Lock()  # the totals are updated from engine threads too
        self.statistics: dict[tuple[str, str], InferenceStatistics] = {}

    def add_model(self, name: str, *, streams: int, requests: int, max_queue: int,
                  infer_requests: Callable[[], int] | None = None, version: str = "1") -> None:
        """Declare a model version, so its series exist (at zero) before the first request.

        ``infer_requests`` reads how many inference requests the engine has
        started for ``submit()`` (read at each scrape): with a batch > 1 model,
        ``yolo_ov_images_total / yolo_ov_infer_requests_total`` is the batch fill.
        A version declared again (its files changed) keeps its counts.
        """
        key = (name, version)
        with self._lock:
            self._totals.setdefault(name, _Totals())
            known = self.statistics.get(key)
            self.statistics[key] = InferenceStatistics(name, executions=infer_requests, version=version,
                                                       carried=known)
            if infer_requests is not None:
                self._engine_counts[key] = _Carried(infer_requests, self._engine_counts.get(key))
        self.streams.labels(name, version).set(streams)
        self.infer_req_queue_size.labels(name, version).set(requests)
        self.max_queue.labels(name, version).set(max_queue)
        self.images_queued.labels(name, version).set(0)
        self.current_requests.labels(name, version).set(0)
        self.requests_rejected.labels(name, version)
        self.images.labels(name, version)

    def remove_model(self, name: str, version: str = "1") -> None:
        """A version left service: its gauges go, its counts stay (frozen), nothing refers to its engine."""
        key = (name, version)
        with self._lock:
            if key in self._engine_counts:
                self._engine_counts[key] = _Carried(lambda: 0, self._engine_counts[key])
            if key in self.statistics:
                self.statistics[key].freeze()
        for gauge in (self.streams, self.infer_req_queue_size, self.max_queue, self.images_queued,
                      self.current_requests):
            with contextlib.suppress(KeyError):
                gauge.remove(name, version)

    def stats_of(self, name: str, version: str = "1") -> InferenceStatistics:
        """The statistics of one model version."""
        return self.statistics[(name, version)]

    # -- requests ---------------------------------------------------------
    def request_started(self, name: str, version: str = "1") -> None:
        self.current_requests.labels(name, version).inc()
        with self._lock:
            self._totals[name].in_flight += 1

    def request_finished(self, name: str, endpoint: str, status: int, seconds: float, version: str = "1") -> None:
        self.current_requests.labels(name, version).dec()
        with self._lock:
            totals = self._totals[name]
            totals.in_flight -= 1
            if status == CLIENT_CLOSED:
                totals.closed += 1
            else:
                totals.success += status < 400
                totals.fail += status >= 400
                totals.rejected += status == 503
        if status == CLIENT_CLOSED:
            self.requests_client_closed.labels(name, version, endpoint).inc()
            return
        self.request_time.labels(name, version, endpoint).observe(seconds * 1e6)
        self.statistics[(name, version)].request_finished(ok=status < 400, seconds=seconds)
        if status < 400:
            self.requests_success.labels(name, version, endpoint).inc()
        else:
            self.requests_fail.labels(name, version, endpoint, str(status)).inc()
            if status == 503:
                self.requests_rejected.labels(name, version).inc()

    # -- images (called from engine threads: prometheus_client is thread-safe) ---
    def image_submitted(self, name: str, version: str = "1") -> None:
        self.images_queued.labels(name, version).inc()
        with self._lock:
            self._totals[name].queued += 1

    def image_done(self, name: str, *, inference_ms: float | None, wait_ms: float | None,
                   version: str = "1") -> None:
        self.images_queued.labels(name, version).dec()
        with self._lock:
            totals = self._totals[name]
            totals.queued -= 1
            totals.images += inference_ms is not None
        if inference_ms is not None:
            self.images.labels(name, version).inc()
            self.inference_time.labels(name, version).observe(inference_ms * 1e3)
        if wait_ms is not None:
            self.queue_wait.labels(name, version).observe(max(wait_ms, 0.0) * 1e3)

    # -- output -----------------------------------------------------------
    def render(self) -> bytes:
        """The Prometheus text format of every metric."""
        return generate_latest(self.registry)

    def snapshot(self) -> dict[str, object]:
        """Cumulative counts per model for the web page (it derives rates from two snapshots)."""
        return {
            "time": time.time(),
            "uptime_s": round(time.time() - self.started, 3),
            "models": self._copy_totals(),
        }

    def _copy_totals(self) -> dict[str, dict[str, int]]:
        with self._lock:
            return {name: vars(t).copy() for name, t in self._totals.items()}


class _Carried:
    """An engine's request count plus what the instances before it counted (a reload keeps the counter monotonic)."""

    def __init__(self, read: Callable[[], int], before: Callable[[], int] | None) -> None:
        self._read = read
        self._base = before() if before is not None else 0

    def __call__(self) -> int:
        return self._base + self._read()


_PHASES = ("queue", "compute_input", "compute_infer", "compute_output")


class InferenceStatistics:
    """Triton's statistics extension for one model: what ``perf_analyzer`` reads of the server side.

    As Triton counts them: ``success``/``fail`` are requests and their whole
    time in the server; ``queue`` (waiting for an inference request slot),
    ``compute_input`` (decode and letterbox), ``compute_infer`` (the device)
    and ``compute_output`` (decoding the heads) are per successful inference
    request, each the longest of its images (they run in parallel);
    ``inference_count`` counts images, ``execution_count`` device inference
    requests (fewer with batching; the warm-up is not counted), and
    ``last_inference`` is milliseconds since the epoch. Updated from engine
    threads and event loops of either transport, so under a lock.
    """

    def __init__(self, name: str, *, executions: Callable[[], int] | None = None, version: str = "1",
                 carried: InferenceStatistics | None = None) -> None:
        self.name = name
        self.version = version
        self._executions = executions
        self._executions_at_start = executions() if executions is not None else 0
        self._lock = threading.Lock()
        self._durations = {key: [0, 0] for key in ("success", "fail", *_PHASES)}
        self._inferences = 0
        self._last_inference_ms = 0
        self._executions_before = 0
        if carried is not None:  # the same version reloaded: its counts go on
            with carried._lock:
                self._durations = {k: list(v) for k, v in carried._durations.items()}
                self._inferences, self._last_inference_ms = carried._inferences, carried._last_inference_ms
            self._executions_before = carried.executions()

    def executions(self) -> int:
        """Device inference requests since this version was first declared."""
        now = 0
        if self._executions is not None:
            now = max(self._executions() - self._executions_at_start, 0)
        return self._executions_before + now

    def freeze(self) -> None:
        """The engine closes: keep its count, drop the reference to it (so its memory can be released)."""
        self._executions_before = self.executions()
        self._executions = None

    def request_finished(self, *, ok: bool, seconds: float) -> None:
        """A request answered (``ok``) or refused, after ``seconds`` in the server."""
        with self._lock:
            entry = self._durations["success" if ok else "fail"]
            entry[0] += 1
            entry[1] += int(seconds * 1e9)

    def inferred(self, *, images: int, queue_ms: float, input_ms: float, infer_ms: float, output_ms: float) -> None:
        """One request's images came back from the engine: its phases in milliseconds."""
        with self._lock:
            for key, ms in zip(_PHASES, (queue_ms, input_ms, infer_ms, output_ms), strict=True):
                self._durations[key][0] += 1
                self._durations[key][1] += int(max(ms, 0.0) * 1e6)
            self._inferences += images
            self._last_inference_ms = int(time.time() * 1e3)

    def snapshot(self) -> dict[str, Any]:
        """The model's entry of Triton's ``model_stats`` (the JSON form; counts and ns as integers)."""
        executions = self.executions()
        version = self.version
        with self._lock:
            durations = {key: {"count": c, "ns": ns} for key, (c, ns) in self._durations.items()}
            inferences, last = self._inferences, self._last_inference_ms
        zero = {"count": 0, "ns": 0}
        return {
            "name": self.name, "version": version, "last_inference": last, "inference_count": inferences,
            "execution_count": executions,
            "inference_stats": {**durations, "cache_hit": dict(zero), "cache_miss": dict(zero)},
            "batch_stats": [],
        }


class _EngineCollector:
    """``yolo_ov_infer_requests_total``: inference requests the engine started for ``submit()``, read at scrape."""

    def __init__(self, sources: dict[tuple[str, str], Callable[[], int]]) -> None:
        self._sources = sources

    def collect(self) -> Iterator[CounterMetricFamily]:
        family = CounterMetricFamily("yolo_ov_infer_requests", "Inference requests started on the device for "
                                     "submitted images (fewer than images when batches group them)",
                                     labels=["name", "version"])
        for (name, version), read in list(self._sources.items()):
            family.add_metric([name, version], read())
        yield family
