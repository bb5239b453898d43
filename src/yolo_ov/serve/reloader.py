"""The served versions of a model repository, kept in step with its folder: load, swap, retire.

:class:`ModelRepository` decides which versions serve (each model's version
policy over the versions that load), and changes them without dropping a
request:

1. a new or changed version is compiled and warmed up (``ServedModel``)
   while the old one still serves;
2. the routing table (:meth:`ServeState.publish`) is swapped in one
   assignment: new requests go to the new set at once;
3. a version that left the set takes no new request, finishes those routed
   to it (``ServedModel.holds``), is closed and its engine released.

A version that fails to load is reported (a log line, its repository index
entry ``UNAVAILABLE`` with the reason, ``yolo_ov_model_load_failures_total``)
and the versions serving stay; it is tried again when its files change.
With ``model_control="poll"`` a thread reads the folder every
``repository_poll_s`` and only loads a version whose files were the same at
two polls in a row (:class:`~yolo_ov.serve.repository.StableFiles`); with
``"explicit"`` only :meth:`load` and :meth:`unload` (the repository API)
change anything, as Triton's ``--model-control-mode``.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import logging
import sys
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Protocol

from ..detector import Detector
from ..errors import ConfigError
from .errors import ErrorCode, ServeError
from .metrics import ServeMetrics
from .models import ServedModel
from .repository import Fingerprint, ModelFolder, StableFiles, scan
from .settings import ModelSpec, ServeConfig

__all__ = ["STATES", "ModelRepository", "Routes", "release_memory"]

log = logging.getLogger("yolo_ov.serve")

#: A version's states in the repository index (Triton's names).
STATES = ("READY", "UNAVAILABLE", "LOADING", "UNLOADING")
#: Beyond the request deadline, how long a retiring version waits for the requests routed to it.
_RETIRE_GRACE_S = 5.0


class Routes(Protocol):
    """What the reloader needs of :class:`~yolo_ov.serve.state.ServeState` (which holds the reloader)."""

    config: ServeConfig
    metrics: ServeMetrics

    def publish(self, name: str, versions: Mapping[str, ServedModel]) -> None: ...


class ModelRepository:
    """The versions of ``root`` that serve on ``state``, opened with ``open_detector``.

    Args:
        state: where the versions are published (its config names the root and the mode).
        open_detector: opens one version's Detector (compiles its files).
    """

    def __init__(self, state: Routes, open_detector: Callable[[ModelSpec, ServeConfig], Detector]) -> None:
        config = state.config
        assert config.model_repository is not None
        self.state = state
        self.root: Path = config.model_repository
        self.open_detector = open_detector
        self._loaded: dict[tuple[str, int], tuple[ServedModel, Fingerprint]] = {}
        self._failed: dict[tuple[str, int], tuple[Fingerprint, str]] = {}
        self._status: dict[tuple[str, int], tuple[str, str]] = {}
        self._problems: dict[str, str] = {}
        self._explicit: set[str] = set()
        self._stable = StableFiles()
        self._lock = threading.RLock()  # one change of the served set at a time
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._retiring: list[threading.Thread] = []

    @property
    def explicit(self) -> bool:
        return self.state.config.model_control == "explicit"

    # -- start and stop ---------------------------------------------------------------
    def start(self) -> ModelRepository:
        """Load what the mode loads at start (every model, or ``load_models``), then poll if told to.

        Raises:
            ConfigError: a ``load_models`` name that is not in the repository (``--load-model``).
        """
        config = self.state.config
        if self.explicit:
            names = sorted(scan(self.root)) if "*" in config.load_models else list(config.load_models)
            for name in names:
                try:
                    self.load(name)
                except ServeError as exc:
                    if exc.code is ErrorCode.NOT_FOUND:
                        raise ConfigError(f"--load-model {name}: {exc.message}") from None
                    log.warning("%s", exc.message)
        else:
            self.sync(stable_only=False)
        if config.polls:
            self._thread = threading.Thread(target=self._poll, name="yolo-ov-repository", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop polling (the versions are closed by the state)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(60.0)
        self.wait_retired(self.state.config.timeout_s + _RETIRE_GRACE_S)

    def _poll(self) -> None:
        period = self.state.config.repository_poll_s
        while not self._stop.wait(period):
            try:
                self.sync(wait=False)
            except Exception:  # a poll that fails (a folder removed mid-read) is logged and the next one tries again
                log.exception("reading the model repository %s failed", self.root)

    # -- the repository API ----------------------------------------------------------------
    def load(self, name: str) -> None:
        """Load (or reload) model ``name``: its policy's versions, as they are on disk now.

        Raises:
            ServeError: ``UNAVAILABLE`` unless explicit mode (Triton's answer),
                ``NOT_FOUND`` for a model not in the repository,
                ``INVALID_ARGUMENT`` naming a version that failed to load.
        """
        self._require_explicit()
        with self._lock:
            found = scan(self.root, {name}).get(name)
            if found is None:
                raise ServeError(ErrorCode.NOT_FOUND, f"no model {name!r} in the repository {self.root}")
            self._explicit.add(name)
            failures = self._sync_model(found, stable_only=False)
        self.wait_retired()
        if failures:
            raise ServeError(ErrorCode.INVALID_ARGUMENT, f"failed to load {name!r}: " + "; ".join(failures))

    def unload(self, name: str) -> None:
        """Unload every version of model ``name`` (requests routed to them finish first).

        Raises:
            ServeError: ``UNAVAILABLE`` unless explicit mode, ``NOT_FOUND`` for
                a model neither loaded nor in the repository.
        """
        self._require_explicit()
        with self._lock:
            loaded = any(n == name for n, _ in self._loaded)
            if not loaded and not (self.root / name).is_dir():
                raise ServeError(ErrorCode.NOT_FOUND, f"no model {name!r} in the repository {self.root}")
            self._explicit.discard(name)
            self._apply(name, {}, [v for n, v in self._loaded if n == name])
        self.wait_retired()  # as Triton: the call returns once the model is unloaded

    def _require_explicit(self) -> None:
        if not self.explicit:
            raise ServeError(ErrorCode.UNAVAILABLE,
                             "explicit model load / unload is not allowed if polling is enabled "
                             "(start the server with --model-control explicit)")

    def index(self, *, ready_only: bool = False) -> list[dict[str, str]]:
        """Triton's repository index: every version on disk or serving, with its state and reason."""
        # Not under the change lock: the index answers while a version compiles or drains. The copies are
        # consistent enough (each dict() copy is atomic in CPython; an entry may be one step behind).
        status, loaded, failed, problems = dict(self._status), dict(self._loaded), dict(self._failed), \
            dict(self._problems)
        found = scan(self.root)
        keys = {(n, v) for n, m in found.items() for v in m.versions} | set(loaded) | set(status)
        entries = []
        for name, version in sorted(keys):
            key = (name, version)
            if key in status:
                state, reason = status[key]
            elif name in problems:
                state, reason = "UNAVAILABLE", problems[name]
            elif key in loaded:
                state, reason = "READY", ""
                if key in failed:
                    reason = f"serving the files loaded before; their update failed: {failed[key][1]}"
            elif key in failed:
                state, reason = "UNAVAILABLE", failed[key][1]
            else:
                state, reason = self._state_of(name, version, found.get(name))
            if ready_only and state != "READY":
                continue
            entries.append({"name": name, "version": str(version), "state": state, "reason": reason})
        return entries

    def _state_of(self, name: str, version: int, folder: ModelFolder | None) -> tuple[str, str]:
        """The state of a version on disk that is neither serving nor failed."""
        on_disk = folder.versions.get(version) if folder is not None else None
        if on_disk is None:
            return "UNAVAILABLE", "removed from the repository"
        if on_disk.problem:
            return "UNAVAILABLE", on_disk.problem
        if self.explicit and name not in self._explicit:
            return "UNAVAILABLE", "unloaded"
        if folder is not None and version not in folder.wanted():
            return "UNAVAILABLE", f"not served: version policy {folder.policy.describe()}"
        return "LOADING", "waiting for its files to stay unchanged for one poll"

    # -- keeping in step with the folder ---------------------------------------------------------
    def sync(self, *, stable_only: bool = True, wait: bool = True) -> None:
        """Read the repository and bring the served versions in line with it (one poll).

        ``wait``: return once the versions it took out of service are closed
        (the poll thread does not wait: its next poll goes on meanwhile).
        """
        self._sync(stable_only=stable_only)
        if wait:
            self.wait_retired()

    def _sync(self, *, stable_only: bool) -> None:
        with self._lock:
            names = self._explicit if self.explicit else None
            found = scan(self.root, set(names) if names is not None else None)
            self._stable.forget({(n, v) for n, m in found.items() for v in m.versions})
            for folder in found.values():
                self._sync_model(folder, stable_only=stable_only)
            for name in sorted({n for n, _ in self._loaded} - set(found)):  # its folder is gone
                self._apply(name, {}, [v for n, v in self._loaded if n == name])

    def _sync_model(self, folder: ModelFolder, *, stable_only: bool) -> list[str]:
        """Load, reload and retire ``folder``'s versions as its policy says; the failures' reasons."""
        name = folder.name
        if folder.problem:
            if self._problems.get(name) != folder.problem:
                log.warning("model %s: %s; its versions serving stay", name, folder.problem)
            self._problems[name] = folder.problem
            return [folder.problem]
        self._problems.pop(name, None)
        stable = {v: self._stable.stable(name, v, f.fingerprint) or not stable_only
                  for v, f in folder.versions.items()}
        loaded = {v: self._loaded[(n, v)] for n, v in self._loaded if n == name}
        opened: dict[int, ServedModel] = {}
        failures: list[str] = []
        excluded: set[int] = set()
        while True:
            eligible = [v for v, f in folder.versions.items() if v in loaded or (
                v not in excluded and f.model_path is not None and stable[v]
                and self._failed.get((name, v), (None,))[0] != f.fingerprint)]
            wanted = folder.policy.select(eligible)
            to_open = [v for v in wanted if v not in opened and v not in excluded and (
                v not in loaded or (loaded[v][1] != folder.versions[v].fingerprint and stable[v]
                                    and self._failed.get((name, v), (None,))[0] != folder.versions[v].fingerprint))]
            if not to_open:
                break
            for v in sorted(to_open, reverse=True):
                model = self._open(folder, v)
                if model is None:
                    excluded.add(v)
                    failures.append(f"version {v}: {self._failed[(name, v)][1]}")
                else:
                    opened[v] = model
            if not any(v not in loaded for v in excluded):
                break
        for v in [v for v in opened if v not in wanted]:  # opened, then outranked after another failed: not needed
            unused = opened.pop(v)
            unused.close()
            if v not in loaded:
                self.state.metrics.remove_model(name, str(v))
        serving = {v: opened.get(v) or loaded[v][0] for v in wanted}
        prints = {v: folder.versions[v].fingerprint if v in opened else loaded[v][1] for v in wanted}
        self._publish(name, serving, prints, [v for v in loaded if v not in wanted or v in opened])
        return failures

    def _open(self, folder: ModelFolder, version: int) -> ServedModel | None:
        """Compile and warm up one version; on failure record why and return None."""
        key = (folder.name, version)
        on_disk = folder.versions[version]
        assert on_disk.model_path is not None
        metrics = self.state.metrics
        self._status[key] = ("LOADING", "")
        t0 = time.perf_counter()
        try:
            spec = ModelSpec(name=folder.name, path=on_disk.model_path)
            detector = self.open_detector(spec, self.state.config)
            model = ServedModel(folder.name, on_disk.model_path, detector, self.state.config, metrics,
                                version=str(version))
        except Exception as exc:  # noqa: BLE001 - any load failure is reported; the serving versions stay
            reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            self._failed[key] = (on_disk.fingerprint, reason)
            metrics.model_load_failures.labels(folder.name, str(version)).inc()
            log.warning("model %s version %s failed to load (the versions serving stay): %s",
                        folder.name, version, reason)
            return None
        finally:
            self._status.pop(key, None)
        self._failed.pop(key, None)
        log.info("model %s version %s ready in %.0f ms", folder.name, version, (time.perf_counter() - t0) * 1e3)
        return model

    def _apply(self, name: str, serving: dict[int, ServedModel], retire: list[int]) -> None:
        self._publish(name, serving, {v: self._loaded[(name, v)][1] for v in serving}, retire)

    def _publish(self, name: str, serving: dict[int, ServedModel], prints: dict[int, Fingerprint],
                 retire: list[int]) -> None:
        """Swap in ``serving`` for ``name``, then retire the instances it replaced or dropped."""
        old = {v: self._loaded[(name, v)][0] for v in retire if (name, v) in self._loaded}
        before = {v for n, v in self._loaded if n == name}
        metrics = self.state.metrics
        for v, model in serving.items():
            current = self._loaded.get((name, v))
            if current is None:
                metrics.model_loads.labels(name, str(v)).inc()
            elif current[0] is not model:
                metrics.model_reloads.labels(name, str(v)).inc()
        for v in before:
            self._loaded.pop((name, v), None)
        for v, model in serving.items():
            self._loaded[(name, v)] = (model, prints[v])
        self.state.publish(name, {str(v): m for v, m in serving.items()})
        for v, model in old.items():
            if serving.get(v) is not model:
                self._begin_retire(model, reloaded=v in serving)

    def _begin_retire(self, model: ServedModel, *, reloaded: bool) -> None:
        """Retire ``model`` on a thread of its own: its requests may take up to the deadline to finish, and
        meanwhile the poll, the index and other loads go on."""
        if not reloaded:
            self._status[(model.name, int(model.version))] = ("UNLOADING", "")
        thread = threading.Thread(target=self._retire, args=(model,), kwargs={"reloaded": reloaded},
                                  name=f"yolo-ov-retire-{model.name}-{model.version}", daemon=True)
        self._retiring = [t for t in self._retiring if t.is_alive()] + [thread]
        thread.start()

    def wait_retired(self, timeout_s: float | None = None) -> None:
        """Wait until the versions taken out of service so far are closed."""
        for thread in list(self._retiring):
            thread.join(timeout_s)

    def _retire(self, model: ServedModel, *, reloaded: bool) -> None:
        """Wait for the requests routed to ``model``, close it, release its memory."""
        key = (model.name, int(model.version))
        deadline = time.monotonic() + self.state.config.timeout_s + _RETIRE_GRACE_S
        while model.holds > 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        try:
            model.close()
        finally:
            self._status.pop(key, None)
        if not reloaded:
            self.state.metrics.remove_model(model.name, model.version)
            self.state.metrics.model_unloads.labels(model.name, model.version).inc()
        log.info("model %s version %s %s", model.name, model.version, "replaced" if reloaded else "unloaded")
        release_memory()

    def close(self) -> None:
        """Stop polling and close every version (requests routed to them finish first)."""
        self.stop()


def release_memory() -> None:
    """Collect garbage and give freed heap pages back to the system (glibc keeps them otherwise).

    A compiled model's weights and buffers are large allocations that go back
    at once; the many small ones of its graph stay in glibc's arenas until
    ``malloc_trim``: without it the process's RSS does not show a version closed.
    """
    gc.collect()
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL("libc.so.6").malloc_trim(0)

