"""Batch inference on Ray Data: one throughput ``Detector`` per actor, every input answered exactly once.

The flow (:func:`predict_dataset`):

1. **Inputs** become a Ray Dataset of rows ``{index, source, stream, error}``
   (:mod:`yolo_ov.ray.inputs`) in blocks of ``batch_size`` rows. A Ray Dataset of images
   (``read_images``/``read_binary_files`` with ``include_paths=True``) is used
   as it is, keyed by its ``path`` column.
2. **Actors** (``map_batches`` with :class:`~yolo_ov.ray.actor.DetectorActor`
   and ``concurrency=``): each unpacks the shipped model into its node's cache, compiles one
   throughput ``Detector`` once, and feeds a whole batch through
   ``Detector.submit()`` so the device streams stay busy; a video input runs
   through ``Detector.stream()`` (one record per frame). Each output row holds
   the JSONL record of ``yolo-ov predict`` as a string plus structured columns
   (boxes, confidences, classes, which node and process did it). An image
   that cannot be read is a failure record, not a retry.
3. **Exactly once**: Ray restarts a dead actor and re-runs the blocks it held
   (``max_restarts=-1``, ``max_task_retries=-1``), so an input can come back
   twice but is never lost; the driver keys every record (input index, frame)
   and writes a key once; at the end the keys are checked against the input
   list, and an input still missing is run again (``max_passes``) or reported.

The driver writes the JSONL file itself (one file, in input order, the same
lines as ``yolo-ov predict --save-json``) through :class:`~yolo_ov.io.sinks.Sinks`,
with any further sinks given; Parquet goes through Ray Data's distributed
writer (``Dataset.write_parquet``), from the checked results.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from ..config import DetectConfig, Mode, RuntimeConfig, SliceConfig
from ..errors import ConfigError, InferenceError
from ..io.sinks import JsonlSink, Sink, Sinks, check_output_file
from ..pipeline import PipelineConfig, Specialize
from .actor import DetectorActor
from .cluster import connect, cpu_nodes, require_extra
from .config import BatchConfig
from .inputs import expand_inputs, input_dataset
from .shipping import ModelSource, pack

__all__ = ["BatchResult", "map_detections", "predict_dataset", "ship_model"]

_KEY_COLUMNS = ("path", "source")


@dataclass
class BatchResult:
    """What a :func:`predict_dataset` run did.

    Attributes:
        inputs: inputs given (files, videos, dataset rows).
        records: records written: one per image, one per video frame.
        failed: failure records among them (unreadable inputs).
        detections: detections in all records.
        duplicates: records that came back twice (an actor died after doing
            them) and were written once.
        passes: how many passes over missing inputs it took (1 normally).
        actors: actors in the pool; ``nodes``: CPU nodes of the cluster.
        elapsed_s: from the first input handed out to the last record checked.
        startup_s: from the first input handed out to the first record back:
            the pool's start (actor processes, model unpacked and compiled)
            plus one block's inference; Ray's fixed cost per run.
        records_list: every record as a dict, in order, when ``collect=True``.
        workers: records per ``node_id:pid`` (where the work ran).
    """

    inputs: int = 0
    records: int = 0
    failed: int = 0
    detections: int = 0
    duplicates: int = 0
    passes: int = 0
    actors: int | tuple[int, int] = 0
    nodes: int = 0
    elapsed_s: float = 0.0
    startup_s: float = 0.0
    records_list: list[dict[str, Any]] | None = None
    workers: dict[str, int] = field(default_factory=dict)

    @property
    def per_second(self) -> float:
        """Records (images or frames) per second over the run."""
        return self.records / self.elapsed_s if self.elapsed_s > 0 else 0.0

    @property
    def steady_per_second(self) -> float:
        """Records per second once the first came back (the pool's start left out)."""
        running = self.elapsed_s - self.startup_s
        return (self.records - 1) / running if self.records > 1 and running > 0 else 0.0


# -- building blocks ----------------------------------------------------------------

def ship_model(model: str | os.PathLike[str] | None, ship: str = "object_store") -> ModelSource:
    """The model as workers receive it: packed into the object store once, or a shared path."""
    import ray

    from ..default_model import resolve_or_default

    path = resolve_or_default(model)
    if ship == "path":
        return ModelSource(path=path, name=path.stem)
    package = pack(path)
    return ModelSource(package=ray.put(package), name=package.folder)


def map_detections(
    dataset: Any,
    model: ModelSource,
    *,
    runtime: RuntimeConfig | None = None,
    detect: DetectConfig | None = None,
    config: BatchConfig | None = None,
    specialize: Specialize | str | bool | None = None,
    color: str = "rgb",
    slicing: SliceConfig | None = None,
) -> Any:
    """The lazy step: ``dataset`` (rows with ``source``/``path`` and optionally ``bytes`` or ``image``)
    mapped to :data:`OUTPUT_SCHEMA` rows by a pool of :class:`DetectorActor`.

    No count check here (:func:`predict_dataset` does it). ``color``: the
    channel order of an ``image`` column (``"rgb"``, as ``read_images``
    gives; ``"bgr"`` for OpenCV arrays). ``slicing``: sliced inference in every
    actor (each image's tiles interleave through its Detector, as ``predict --slice``).

    Example:
        >>> import ray.data  # doctest: +SKIP
        >>> from yolo_ov.ray import map_detections, ship_model  # doctest: +SKIP
        >>> ds = ray.data.read_images("s3://bucket/images/", include_paths=True)  # doctest: +SKIP
        >>> out = map_detections(ds, ship_model("yolov8n_openvino_model"))  # doctest: +SKIP
        >>> out.filter(lambda row: row["num_detections"] > 0).write_parquet("s3://bucket/hits/")  # doctest: +SKIP
    """
    config = config or BatchConfig()
    runtime = runtime or RuntimeConfig(mode=Mode.THROUGHPUT)
    pipeline = PipelineConfig(max_queue=config.max_queue, specialize=Specialize.parse(specialize))
    import ray.data

    concurrency = config.concurrency or max(len(cpu_nodes()), 1)
    # Two calls at once per actor (threads): the next batch is submitted while the last one's final
    # requests finish, so the device streams never drain between batches.
    overlap = {"max_concurrent_calls_per_actor": config.calls_per_actor,
               "enable_true_multi_threading": config.calls_per_actor > 1}
    pool = (ray.data.ActorPoolStrategy(min_size=concurrency[0], max_size=concurrency[1], **overlap)
            if isinstance(concurrency, tuple) else ray.data.ActorPoolStrategy(size=concurrency, **overlap))
    # Ray Data spreads actors over the nodes by default (DataContext.scheduling_strategy="SPREAD").
    return dataset.map_batches(
        DetectorActor,
        fn_constructor_kwargs={"model": model, "runtime": runtime, "detect": detect or DetectConfig(),
                               "pipeline": pipeline, "rows_per_block": config.rows_per_block, "color": color,
                               "slicing": slicing},
        batch_size=config.batch_size,
        batch_format="numpy",
        compute=pool,
        num_cpus=config.num_cpus,
        zero_copy_batch=True,
    )


# -- the driver ---------------------------------------------------------------------

class _Line:
    """A record as an actor formatted it (the JSONL line of ``yolo-ov predict``), for the driver's sinks."""

    __slots__ = ("line",)

    def __init__(self, line: str) -> None:
        self.line = line

    def to_json(self) -> str:
        return self.line

    def to_dict(self) -> dict[str, Any]:
        return json.loads(self.line)


@dataclass
class _Tally:
    result: BatchResult
    sinks: Sinks
    on_record: Callable[[dict[str, Any]], None] | None
    t0: float = field(default_factory=time.perf_counter)
    seen: set[Any] = field(default_factory=set)
    answered: set[Any] = field(default_factory=set)

    def take(self, table: pa.Table, keyed_by_source: bool) -> None:
        if not self.result.startup_s and table.num_rows:
            self.result.startup_s = time.perf_counter() - self.t0
        cols = {n: table.column(n).to_pylist() for n in ("index", "source", "frame", "record", "error",
                                                          "num_detections", "node_id", "worker_pid")}
        r = self.result
        for k in range(table.num_rows):
            item = cols["source"][k] if keyed_by_source else cols["index"][k]
            key = (item, cols["frame"][k])
            if key in self.seen:
                r.duplicates += 1
                continue
            self.seen.add(key)
            self.answered.add(item)
            line = cols["record"][k]
            if self.sinks:
                self.sinks.write(_Line(line))  # type: ignore[arg-type]
            r.records += 1
            r.failed += cols["error"][k] is not None
            r.detections += cols["num_detections"][k] or 0
            worker = f"{cols['node_id'][k]}:{cols['worker_pid'][k]}"
            r.workers[worker] = r.workers.get(worker, 0) + 1
            if r.records_list is not None or self.on_record is not None:
                record = json.loads(line)
                if r.records_list is not None:
                    r.records_list.append(record)
                if self.on_record is not None:
                    self.on_record(record)


@contextlib.contextmanager
def _data_context(config: BatchConfig) -> Iterator[None]:
    """Ray Data settings for one run: input order kept or not; inputs handed out only once every actor is up,
    and to the least busy actor wherever it is (the input blocks are a few paths made on the driver's node:
    Ray's actor locality would send them all to the actor beside the driver)."""
    import ray.data

    ctx = ray.data.DataContext.get_current()
    options = ctx.execution_options
    before = options.preserve_order, _locality(options), ctx.wait_for_min_actors_s
    options.preserve_order = config.ordered
    _locality(options, False)
    ctx.wait_for_min_actors_s = max(int(config.start_timeout_s), 1)
    try:
        yield
    finally:
        options.preserve_order, ctx.wait_for_min_actors_s = before[0], before[2]
        _locality(options, before[1])


def _locality(options: Any, value: bool | None = None) -> bool | None:
    """Read or set ``actor_locality_enabled`` (deprecated in Ray 2.60, to be managed by Ray Data itself:
    still honoured there, so set quietly while it exists)."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if not hasattr(options, "actor_locality_enabled"):
            return None
        if value is not None:
            options.actor_locality_enabled = value
        return options.actor_locality_enabled


def predict_dataset(
    source: Any,
    model: str | os.PathLike[str] | None = None,
    *,
    address: str | None = None,
    concurrency: int | tuple[int, int] | None = None,
    runtime: RuntimeConfig | None = None,
    detect: DetectConfig | None = None,
    config: BatchConfig | None = None,
    specialize: Specialize | str | bool | None = None,
    save_json: str | os.PathLike[str] | None = None,
    save_parquet: str | None = None,
    sinks: Iterable[Sink] = (),
    collect: bool = False,
    on_record: Callable[[dict[str, Any]], None] | None = None,
    color: str = "rgb",
    slicing: SliceConfig | None = None,
) -> BatchResult:
    """Detect objects in many images and videos on a Ray cluster; every input answered exactly once.

    Args:
        source: a folder, glob, file, ``s3://``-style URI or a list of them
            (every node must be able to read them: local paths on one
            machine, a shared volume or object storage on a cluster), or a
            Ray Dataset with a ``path`` (or ``source``) column and a
            ``bytes`` (encoded) or ``image`` (decoded, ``color`` order) column.
        model: the model on the driver (shipped to the workers, see
            ``BatchConfig.ship``); ``None``: the default model.
        address: the Ray cluster (see :func:`~yolo_ov.ray.connect`); ``None``
            starts a local one unless Ray is running in this process already.
        concurrency: actors (default: one per CPU node); overrides ``config``.
        runtime: how each actor compiles the model (default: throughput mode).
        detect: detection settings, as for ``yolo-ov predict``.
        slicing: sliced inference (``predict --slice``); records then carry ``"slices"``.
        specialize: shape specialisation for videos (images always keep the
            model's square input, as ``submit()`` does).
        save_json: one JSONL file, written here on the driver in input order.
        save_parquet: a folder or URI, written by Ray Data's Parquet writer
            (the results are then materialised in the object store, spilling
            to disk, so they are checked before they are written).
        sinks: more outputs (:class:`~yolo_ov.io.sinks.Sink`), written on the
            driver beside ``save_json``, each record once, in the same order;
            a record reaches them as an object with ``to_json()``/``to_dict()``
            (the JSONL record: the actors' results do not travel as
            ``Detections``), so sinks that draw or need boxes as arrays do not fit.
        collect: keep every record in ``BatchResult.records_list``.
        on_record: called on the driver with each record as it is checked.

    Raises:
        ConfigError: no input exists, a bad option, an unreachable cluster.
        InferenceError: inputs still missing after ``max_passes`` passes.

    Example:
        >>> from yolo_ov.ray import predict_dataset  # doctest: +SKIP
        >>> r = predict_dataset("images/", "yolov8n_openvino_model", save_json="out.jsonl")  # doctest: +SKIP
        >>> r.records, r.failed, round(r.per_second)  # doctest: +SKIP
    """
    require_extra("yolo-ov predict --ray")
    config = config or BatchConfig()
    if concurrency is not None:
        config = BatchConfig(**{**_fields(config), "concurrency": concurrency})
    if save_json is not None:
        check_output_file(save_json, "JSONL output")
    dataset_input = _is_dataset(source)
    inputs = [] if dataset_input else expand_inputs(source)
    connect(address)
    model_source = ship_model(model, config.ship)
    nodes = len(cpu_nodes())
    result = BatchResult(inputs=0, nodes=nodes, actors=config.concurrency or max(nodes, 1),
                         records_list=[] if collect else None)
    parts: list[Any] = []
    t0 = time.perf_counter()
    with Sinks.opening(lambda: JsonlSink(save_json) if save_json is not None else None,
                       *(lambda s=s: s for s in sinks)) as outputs, _data_context(config):
        tally = _Tally(result, outputs, on_record, t0=t0)
        if dataset_input:
            result.inputs = source.count()
            missing: list[Any] = []
            todo = source
        else:
            result.inputs = len(inputs)
            missing = list(range(len(inputs)))
            todo = input_dataset(inputs, missing, config.batch_size)
        for _ in range(config.max_passes):
            result.passes += 1
            out = map_detections(todo, model_source, runtime=runtime, detect=detect, config=config,
                                 specialize=specialize, color=color, slicing=slicing)
            if save_parquet is not None:
                out = out.materialize()
                parts.append(out)
            for table in out.iter_batches(batch_format="pyarrow", batch_size=None):
                tally.take(table, dataset_input)
            if dataset_input:
                if len(tally.answered) >= result.inputs:
                    break
                raise InferenceError(f"{result.inputs - len(tally.answered)} of {result.inputs} dataset rows were "
                                     "not answered (rows need distinct 'path' values to be counted)")
            missing = [i for i in missing if i not in tally.answered]
            if not missing:
                break
            todo = input_dataset(inputs, missing, config.batch_size)
        if not dataset_input and missing:
            names = ", ".join(inputs[i][0] for i in missing[:3])
            raise InferenceError(f"{len(missing)} inputs were not answered after {result.passes} passes "
                                 f"(first: {names}); the records written are complete and each appears once")
        if save_parquet is not None:
            _write_parquet(parts, save_parquet, dataset_input, result.duplicates)
    result.elapsed_s = time.perf_counter() - t0
    return result


def _write_parquet(parts: list[Any], path: str, keyed_by_source: bool, duplicates: int) -> None:
    """Ray Data's writer, from the checked results; duplicates (if an actor died) are dropped first."""
    ds = parts[0] if len(parts) == 1 else parts[0].union(*parts[1:])
    if duplicates:
        key = ["source" if keyed_by_source else "index", "frame"]
        ds = ds.groupby(key).map_groups(lambda t: t.slice(0, 1), batch_format="pyarrow")
    ds.write_parquet(path)


def _is_dataset(source: Any) -> bool:
    try:
        import ray.data
    except ImportError:
        return False
    if isinstance(source, ray.data.Dataset):
        columns = source.columns() or []
        if not any(c in columns for c in _KEY_COLUMNS):
            raise ConfigError(f"a Ray Dataset input needs a 'path' or 'source' column to key its records; it has "
                              f"{columns} (read_images(..., include_paths=True) adds one)")
        if not any(c in columns for c in ("bytes", "image")):
            raise ConfigError(f"a Ray Dataset input needs a 'bytes' (encoded) or 'image' (decoded) column; "
                              f"it has {columns}")
        return True
    return False


def _fields(config: BatchConfig) -> dict[str, Any]:
    from dataclasses import asdict

    return asdict(config)
