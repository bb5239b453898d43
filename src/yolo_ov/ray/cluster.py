"""Connecting to Ray: a running cluster by address, or a local one started on this machine.

The one place that calls ``ray.init``. With no address and no Ray already
initialised in this process, a local cluster is started (``RAY_ADDRESS``, as
Ray reads it, still wins), so everything works on one machine exactly as on
many; ``"auto"`` joins the cluster this node belongs to (``ray start`` or a
KubeRay pod); ``ray://host:10001`` goes through the Ray Client.
"""

from __future__ import annotations

import importlib.util
import logging
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
    for attempt in (1, 2):
        try:
            ray.init(address=target, **kwargs)
            break
        except (ConnectionError, TimeoutError, ValueError, RuntimeError) as exc:
            raise ConfigError(f"cannot connect to the Ray cluster at {address!r}: {_first_line(exc)}") from exc
        except Exception as exc:
            # Ray raises a bare Exception when a node it starts here does not register within its 30 s (seen
            # once on a loaded 2-core machine, the raylet never writing a line): a local start is tried once
            # more; a second failure, or one joining a cluster, is one line, not Ray's traceback.
            if _STARTUP_TIMEOUT not in str(exc):
                raise
            ray.shutdown()
            if attempt == 2 or target not in (None, "local"):
                raise ConfigError(f"the Ray cluster at {address or 'local'!r} did not start: {_first_line(exc)}; "
                                  "retry, or start one with 'ray start --head' and pass its address") from exc
            log.warning("Ray's local node did not start in time (%s); starting it once more", _first_line(exc))
    _quiet_data_progress(quiet)
    return True


#: The message of Ray's node start-up time-out (``ray._private.node.Node``).
_STARTUP_TIMEOUT = "timed out during startup"


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
