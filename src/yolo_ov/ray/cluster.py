"""Connecting to Ray: a running cluster by address, or a local one started on this machine.

The one place that calls ``ray.init``. With no address and no Ray already
initialised in this process, a local cluster is started (``RAY_ADDRESS``, as
Ray reads it, still wins), so everything works on one machine exactly as on
many; ``"auto"`` joins the cluster this node belongs to (``ray start`` or a
KubeRay pod); ``ray://host:10001`` goes through the Ray Client.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from ..errors import ConfigError, MissingExtraError

__all__ = ["NodeInfo", "connect", "cpu_nodes", "require_extra"]

log = logging.getLogger(__name__)

_EXTRA = (("ray", "ray"), ("pyarrow", "pyarrow"))


def require_extra(purpose: str = "running on Ray", *, serve: bool = False) -> None:
    """Raise :class:`MissingExtraError` naming the ``ray`` extra if Ray (or Ray Serve's pieces) is missing."""
    for module, package in _EXTRA:
        if importlib.util.find_spec(module) is None:
            raise MissingExtraError(package, "ray", purpose)
    try:
        if importlib.util.find_spec("ray.data") is None:
            raise MissingExtraError("ray[data]", "ray", purpose)
        if serve and importlib.util.find_spec("ray.serve") is None:
            raise MissingExtraError("ray[serve]", "ray", purpose)
    except ModuleNotFoundError as exc:
        raise MissingExtraError("ray", "ray", purpose) from exc


@dataclass(frozen=True)
class NodeInfo:
    """One alive Ray node: its id, address and logical CPUs."""

    node_id: str
    address: str
    cpus: float


def connect(address: str | None = None, *, num_cpus: int | None = None, quiet: bool = True,
            runtime_env: dict[str, Any] | None = None) -> bool:
    """Make sure this process is connected to Ray; returns ``True`` when this call started the connection.

    Args:
        address: ``None`` (Ray already initialised here, else ``RAY_ADDRESS``,
            else a new local cluster), ``"local"`` (always a new local
            cluster), ``"auto"`` (the cluster of this node), ``host:port`` or
            ``ray://host:port``.
        num_cpus: CPUs of a local cluster started here (default: all).
        quiet: keep Ray's INFO lines (start-up, progress) off the terminal.
        runtime_env: passed to ``ray.init`` (e.g. ``{"pip": ["yolo-ov[ray]"]}``
            on a cluster whose image lacks yolo-ov).

    Raises:
        ConfigError: the address cannot be reached (one line, with Ray's reason).
    """
    require_extra()
    import ray

    if ray.is_initialized():
        return False
    kwargs: dict[str, Any] = {"include_dashboard": False, "ignore_reinit_error": True}
    if quiet:
        kwargs.update(logging_level=logging.ERROR, log_to_driver=False)
    if runtime_env:
        kwargs["runtime_env"] = runtime_env
    if address in (None, "", "local"):
        if num_cpus is not None:
            kwargs["num_cpus"] = num_cpus
        target = "local" if address == "local" else None
    else:
        if num_cpus is not None:
            raise ConfigError("num_cpus is for a local cluster; a running cluster's nodes say how many they have")
        kwargs.pop("include_dashboard")
        target = address
    local = target in (None, "local")
    for attempt in range(1, _LOCAL_STARTS + 1):
        try:
            with _startup_wait(attempt):
                ray.init(address=target, **kwargs)
            break
        except Exception as exc:
            # A local node whose processes do not come up in Ray's time (the GCS not writing its port file in
            # 30 s, or the raylet not registering: each seen once in a fresh-clone CI run on a 2-core VM, the
            # next start in the same run taking 0.1 s) is started again, with a longer wait; a second failure,
            # or one joining a running cluster, is one line instead of Ray's traceback.
            startup = isinstance(exc, (ConnectionError, TimeoutError, RuntimeError)) or _STARTUP_TIMEOUT in str(exc)
            if isinstance(exc, ValueError) or (startup and not local):
                raise ConfigError(f"cannot connect to the Ray cluster at {address!r}: {_first_line(exc)}") from exc
            if not startup:
                raise
            ray.shutdown()
            if attempt == _LOCAL_STARTS:
                raise ConfigError(f"the Ray cluster at {address or 'local'!r} did not start: {_first_line(exc)}; "
                                  "retry, or start one with 'ray start --head' and pass its address") from exc
            log.warning("Ray's local node did not start in time (%s); starting it once more", _first_line(exc))
    _quiet_data_progress(quiet)
    return True


#: The message of Ray's node start-up time-out (``ray._private.node.Node``, a bare ``Exception``).
_STARTUP_TIMEOUT = "timed out during startup"

#: How many times a local cluster is started before giving up.
_LOCAL_STARTS = 2

#: Ray's wait for the GCS port file on a second start, in seconds (its own default is 30).
_RETRY_GCS_WAIT_S = "90"


@contextlib.contextmanager
def _startup_wait(attempt: int) -> Iterator[None]:
    """On a second start, give Ray's GCS longer to come up (``RAY_gcs_server_port_wait_time_s``, read by the
    node this process starts), unless the user set it; the environment is put back afterwards."""
    name = "RAY_gcs_server_port_wait_time_s"
    if attempt == 1 or name in os.environ:
        yield
        return
    os.environ[name] = _RETRY_GCS_WAIT_S
    try:
        yield
    finally:
        os.environ.pop(name, None)


def _quiet_data_progress(quiet: bool) -> None:
    if not quiet:
        return
    import ray.data

    ctx = ray.data.DataContext.get_current()
    for name in ("enable_progress_bars", "enable_operator_progress_bars"):
        if hasattr(ctx, name):
            setattr(ctx, name, False)
    for name in ("ray", "ray.data", "ray.serve"):
        logging.getLogger(name).setLevel(logging.ERROR)


def cpu_nodes() -> list[NodeInfo]:
    """The alive nodes that have CPUs, in a stable order."""
    import ray

    nodes = [
        NodeInfo(str(n["NodeID"]), str(n.get("NodeManagerAddress", "")), float(n.get("Resources", {}).get("CPU", 0)))
        for n in ray.nodes() if n.get("Alive")
    ]
    return sorted((n for n in nodes if n.cpus > 0), key=lambda n: n.node_id)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
