"""Settings of the Ray runners: frozen, keyword-only, validated on construction."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..errors import ConfigError

__all__ = ["SHIP_MODES", "BatchConfig", "Scaling"]

#: How the model reaches the workers: its files through Ray's object store, or
#: a path that every node can already read (shared volume, container image).
SHIP_MODES = ("object_store", "path")


@dataclass(frozen=True, kw_only=True)
class BatchConfig:
    """How :func:`~yolo_ov.ray.predict_dataset` spreads the work.

    Attributes:
        concurrency: actors in the pool, each owning one throughput
            ``Detector``. Default: one per CPU node of the cluster, because
            one Detector's OpenVINO streams already use every core of its node
            (a second one per node only competes with it). An ``(min, max)``
            pair lets Ray Data scale the pool.
        batch_size: inputs handed to an actor per call; also the block size,
            so it is the unit Ray retries when an actor dies. At most
            ``max_queue`` (every image of a batch is submitted at once).
        num_cpus: logical CPUs each actor reserves in Ray's scheduler. The
            Detector uses the node's cores whatever this says; keep it below
            a node's CPU count so Ray Data's own tasks can still run.
        ordered: results in input order (Ray Data's ``preserve_order``), as
            ``yolo-ov predict`` writes them; ``False``: as completed, keyed
            by ``source`` (a little faster on uneven inputs).
        ship: ``"object_store"`` (default; the driver reads the model and
            every node unpacks it into its cache) or ``"path"`` (the model
            path is readable on every node as given).
        max_passes: an input missing after a pass (never seen with Ray's own
            retries, but checked) is run again, at most this many passes in all.
        max_queue: the actor's ``submit()`` queue bound.
        calls_per_actor: batches an actor works on at once (threads sharing its
            Detector): 2 submits the next batch while the last one finishes, so
            the streams never drain between batches.
        start_timeout_s: how long the pool may take to start (every actor
            unpacks and compiles its model) before the run fails; inputs are
            handed out once all actors are up, so every node gets its share.
        rows_per_block: for videos, records sent back per block (the unit
            re-sent if an actor dies mid-video; keyed, so never written twice).
    """

    concurrency: int | tuple[int, int] | None = None
    batch_size: int = 32
    num_cpus: float = 1.0
    ordered: bool = True
    ship: str = "object_store"
    max_passes: int = 3
    max_queue: int = 64
    rows_per_block: int = 256
    calls_per_actor: int = 2
    start_timeout_s: float = 600.0

    def __post_init__(self) -> None:
        c = self.concurrency
        if isinstance(c, list):
            object.__setattr__(self, "concurrency", c := tuple(c))
        if c is not None and not (_pos_int(c) or (isinstance(c, tuple) and len(c) == 2 and all(map(_pos_int, c))
                                                  and c[0] <= c[1])):
            raise ConfigError(f"concurrency must be a positive integer or a (min, max) pair, got {c!r}")
        for name in ("batch_size", "max_passes", "max_queue", "rows_per_block", "calls_per_actor"):
            if not _pos_int(getattr(self, name)):
                raise ConfigError(f"{name} must be a positive integer, got {getattr(self, name)!r}")
        if self.batch_size > self.max_queue:
            raise ConfigError(f"batch_size {self.batch_size} is larger than max_queue {self.max_queue}: "
                              "an actor submits a whole batch at once")
        if not (isinstance(self.num_cpus, (int, float)) and self.num_cpus >= 0):
            raise ConfigError(f"num_cpus must be zero or more, got {self.num_cpus!r}")
        if not float(self.start_timeout_s) > 0:
            raise ConfigError(f"start_timeout_s must be positive, got {self.start_timeout_s!r}")
        if self.ship not in SHIP_MODES:
            raise ConfigError(f"ship={self.ship!r}: expected one of {', '.join(SHIP_MODES)}")


@dataclass(frozen=True, kw_only=True)
class Scaling:
    """How many Ray Serve replicas, and when Ray adds or removes them.

    Attributes:
        replicas: a fixed number of replicas (ignored when ``max_replicas``
            is set: then Ray Serve autoscales).
        min_replicas, max_replicas: the autoscaling range.
        target_ongoing_requests: requests per replica Ray Serve's autoscaler
            aims for (a replica keeps ``2 x streams`` images in flight; a
            little more keeps it busy between requests).
        max_ongoing_requests: most requests one replica holds at once; more
            wait in Ray Serve's router (default: the server's ``max_queue``,
            so the app's own 503 bound still applies).
        num_cpus: logical CPUs each replica reserves (see :class:`BatchConfig`).
        health_check_period_s, health_check_timeout_s: how often Ray Serve asks
            each replica whether its models are ready (a replica that fails is
            replaced).
    """

    replicas: int = 1
    min_replicas: int | None = None
    max_replicas: int | None = None
    target_ongoing_requests: float = 8.0
    max_ongoing_requests: int | None = None
    num_cpus: float = 1.0
    health_check_period_s: float = 5.0
    health_check_timeout_s: float = 30.0

    def __post_init__(self) -> None:
        if not _pos_int(self.replicas):
            raise ConfigError(f"replicas must be a positive integer, got {self.replicas!r}")
        lo, hi = self.min_replicas, self.max_replicas
        if lo is not None and not (isinstance(lo, int) and lo >= 0):
            raise ConfigError(f"min_replicas must be zero or more, got {lo!r}")
        if hi is not None and not _pos_int(hi):
            raise ConfigError(f"max_replicas must be a positive integer, got {hi!r}")
        if lo is not None and hi is None:
            raise ConfigError("min_replicas needs max_replicas (autoscaling); for a fixed number use replicas")
        if lo is not None and hi is not None and lo > hi:
            raise ConfigError(f"min_replicas {lo} is more than max_replicas {hi}")
        if self.max_ongoing_requests is not None and not _pos_int(self.max_ongoing_requests):
            raise ConfigError(f"max_ongoing_requests must be a positive integer, got {self.max_ongoing_requests!r}")
        for name in ("target_ongoing_requests", "health_check_period_s", "health_check_timeout_s"):
            if not float(getattr(self, name)) > 0:
                raise ConfigError(f"{name} must be positive, got {getattr(self, name)!r}")
        if not (isinstance(self.num_cpus, (int, float)) and self.num_cpus >= 0):
            raise ConfigError(f"num_cpus must be zero or more, got {self.num_cpus!r}")

    @property
    def autoscaling(self) -> bool:
        return self.max_replicas is not None

    def deployment_options(self, *, default_max_ongoing: int) -> dict[str, Any]:
        """Keyword arguments of ``serve.deployment(...)`` / ``.options(...)``."""
        options: dict[str, Any] = {
            "max_ongoing_requests": self.max_ongoing_requests or default_max_ongoing,
            "ray_actor_options": {"num_cpus": self.num_cpus},
            "health_check_period_s": self.health_check_period_s,
            "health_check_timeout_s": self.health_check_timeout_s,
        }
        if self.autoscaling:
            lo = self.min_replicas if self.min_replicas is not None else 1
            options["autoscaling_config"] = {
                "min_replicas": lo, "max_replicas": self.max_replicas,
                "initial_replicas": max(lo, 1), "target_ongoing_requests": self.target_ongoing_requests,
            }
        else:
            options["num_replicas"] = self.replicas
        return options


def _pos_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1
