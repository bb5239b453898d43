"""Batch inference on Ray Data: one throughput ``Detector`` per actor, every input answered exactly once.

The flow (:func:`predict_dataset`):

1. **Inputs** become a Ray Dataset of rows ``{index, source, stream, error}``
   (a folder, glob or list is expanded on the driver, as ``yolo-ov predict``
   expands it; ``s3://``-style URIs are listed with pyarrow's filesystems),
   in blocks of ``batch_size`` rows: a block is what an actor gets per call
   and what Ray re-runs if that actor dies. A Ray Dataset of images
   (``read_images``/``read_binary_files`` with ``include_paths=True``) is used
   as it is, keyed by its ``path`` column.
2. **Actors** (``map_batches`` with a callable class and ``concurrency=``):
   each unpacks the shipped model into its node's cache, compiles one
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
lines as ``yolo-ov predict --save-json``); Parquet goes through Ray Data's
distributed writer (``Dataset.write_parquet``), from the checked results.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from ..config import DetectConfig, Mode, RuntimeConfig
from ..errors import ConfigError, InferenceError, InputError, OverloadedError
from ..images import IMAGE_SUFFIXES
from ..pipeline import PipelineConfig, Specialize
from ..results import Detections, Failure
from ..sinks import JsonlSink, check_output_file
from ..sources import is_live, is_video_file, iter_image_files
from .cluster import connect, cpu_nodes, require_extra
from .config import BatchConfig
from .shipping import ModelSource, pack

__all__ = ["OUTPUT_SCHEMA", "BatchResult", "map_detections", "predict_dataset"]

#: Columns of every output block. ``record`` is the JSONL line of ``yolo-ov predict``;
#: ``error`` is set (and the structured columns empty) for a failure record.
OUTPUT_SCHEMA = pa.schema([
    ("index", pa.int64()),
    ("source", pa.string()),
    ("stream", pa.int64()),
    ("frame", pa.int64()),
    ("record", pa.string()),
    ("error", pa.string()),
    ("width", pa.int32()),
    ("height", pa.int32()),
    ("num_detections", pa.int32()),
    ("boxes", pa.list_(pa.list_(pa.float32(), 4))),
    ("confidence", pa.list_(pa.float32())),
    ("class_id", pa.list_(pa.int32())),
    ("class_name", pa.list_(pa.string())),
    ("node_id", pa.string()),
    ("worker_pid", pa.int64()),
])

_INPUT_SCHEMA = pa.schema([("index", pa.int64()), ("source", pa.string()), ("stream", pa.int64()),
                           ("error", pa.string())])
_URI_SCHEMES = ("s3://", "gs://", "gcs://", "hdfs://", "viewfs://", "abfs://", "abfss://", "az://", "file://")
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
    records_list: list[dict[str, Any]] | None = None
    workers: dict[str, int] = field(default_factory=dict)

    @property
    def per_second(self) -> float:
        """Records (images or frames) per second over the run."""
        return self.records / self.elapsed_s if self.elapsed_s > 0 else 0.0


# -- inputs ---------------------------------------------------------------------

def _is_uri(spec: str) -> bool:
    return spec.lower().startswith(_URI_SCHEMES)


def _list_uri(spec: str) -> list[str]:
    """Files under a pyarrow-filesystem URI (a file, or a folder searched recursively)."""
    import pyarrow.fs as pafs

    try:
        fs, path = pafs.FileSystem.from_uri(spec)
        info = fs.get_file_info(path)
        if info.type == pafs.FileType.File:
            return [spec]
        if info.type == pafs.FileType.NotFound:
            return []
        scheme = spec.split("://", 1)[0]
        found = fs.get_file_info(pafs.FileSelector(path, recursive=True))
    except (OSError, ValueError, pa.ArrowException) as exc:
        raise ConfigError(f"{spec}: cannot list it ({str(exc).splitlines()[0]})") from exc
    files = sorted(f.path for f in found if f.type == pafs.FileType.File
                   and Path(f.path).suffix.lower() in IMAGE_SUFFIXES | _video_suffixes())
    return [f"{scheme}://{p}" for p in files]


def _video_suffixes() -> frozenset[str]:
    from ..sources import VIDEO_SUFFIXES

    return VIDEO_SUFFIXES


def expand_inputs(source: Any) -> list[tuple[str, str | None]]:
    """``(source, error)`` per input, in ``yolo-ov predict``'s order: folders recursively, globs sorted.

    Videos stay one input each (their frames come back as records); a name
    that matches nothing is an input with an error (a failure record), unless
    nothing at all exists (:class:`ConfigError`, as ``yolo-ov predict`` says).
    """
    specs = [source] if isinstance(source, (str, Path)) else list(source)
    out: list[tuple[str, str | None]] = []
    for spec in specs:
        if not isinstance(spec, (str, Path)):
            raise ConfigError(f"unsupported input {type(spec).__name__}: pass paths, URIs or a Ray Dataset")
        text = str(spec)
        if is_live(text):
            raise ConfigError(f"{text}: live streams are not batch inputs; run them with yolo-ov predict on a node")
        if _is_uri(text):
            files = _list_uri(text)
            out += [(f, None) for f in files] or [(text, f"{text}: no such file, or no images or videos under it")]
        elif is_video_file(text):
            out.append((text, None if Path(text).expanduser().exists() else f"{text}: no such video file"))
        elif set("*?[") & set(text) and not Path(text).exists():
            matches = sorted(glob.glob(text, recursive=True))
            videos = [m for m in matches if is_video_file(m)]
            images = [(str(p), None) if not isinstance(p, InputError) else (p.source or text, str(p))
                      for p in iter_image_files([text])]
            if videos:
                out += [(v, None) for v in videos] + [i for i in images if i[1] is None]
            else:
                out += images
        else:
            out += [(str(p), None) if not isinstance(p, InputError) else (p.source or text, str(p))
                    for p in iter_image_files([text])]
    if out and all(err is not None for _, err in out):
        raise ConfigError(out[0][1] if len(out) == 1 else f"none of the inputs exist: {', '.join(s for s, _ in out)}")
    return out


def _input_dataset(inputs: list[tuple[str, str | None]], indices: list[int], block_rows: int) -> Any:
    """Rows ``{index, source, stream, error}`` in blocks of ``block_rows`` (one actor call each)."""
    import ray.data

    videos = {s for s, err in inputs if err is None and is_video_file(s)}
    ordinal = {s: k for k, s in enumerate(s for s, _ in inputs if s in videos)}
    tables = []
    for start in range(0, len(indices), block_rows):
        chunk = indices[start:start + block_rows]
        tables.append(pa.table({
            "index": pa.array(chunk, pa.int64()),
            "source": pa.array([inputs[i][0] for i in chunk], pa.string()),
            "stream": pa.array([ordinal.get(inputs[i][0]) for i in chunk], pa.int64()),
            "error": pa.array([inputs[i][1] for i in chunk], pa.string()),
        }, schema=_INPUT_SCHEMA))
    return ray.data.from_arrow(tables)


# -- the actor ----------------------------------------------------------------------

class DetectorActor:
    """A Ray Data actor: one throughput :class:`~yolo_ov.Detector`, compiled once, fed a batch at a time.

    Built by Ray Data (``map_batches(DetectorActor, fn_constructor_kwargs=...)``);
    see :func:`map_detections`.
    """

    def __init__(self, model: ModelSource, runtime: RuntimeConfig, detect: DetectConfig,
                 pipeline: PipelineConfig, rows_per_block: int = 256, color: str = "rgb") -> None:
        import ray

        from ..detector import Detector

        self.detector = Detector(model.resolve(), runtime=runtime, detect=detect, pipeline=pipeline)
        self.detect = detect
        self.rows_per_block = rows_per_block
        self.color = color
        self.node_id = ray.get_runtime_context().get_node_id()
        self.pid = os.getpid()

    def __call__(self, batch: dict[str, np.ndarray]) -> Iterator[pa.Table]:
        rows: list[dict[str, Any]] = []
        pending: list[tuple[dict[str, Any], Any]] = []
        n = len(next(iter(batch.values())))
        for i in range(n):
            row = {k: _scalar(v[i]) for k, v in batch.items()}
            index = int(row.get("index", -1) if row.get("index") is not None else -1)
            source = str(row.get("source") or row.get("path") or f"<row {i}>")
            stream = row.get("stream")
            meta = {"index": index, "source": source, "stream": None if stream is None else int(stream)}
            if row.get("error"):
                pending.append((meta, InputError(str(row["error"]), source)))
            elif "bytes" in row or "image" in row:
                pending.append((meta, self._submit(self._image_of(row), source)))
            elif is_video_file(source) and not _is_uri(source):
                rows += self._drain(pending)
                pending = []
                for chunk in self._video(meta):
                    rows += chunk
                    if len(rows) >= self.rows_per_block:
                        yield self._table(rows)
                        rows = []
            else:
                pending.append((meta, self._submit_path(source)))
        rows += self._drain(pending)
        if rows:
            yield self._table(rows)

    def _image_of(self, row: dict[str, Any]) -> Any:
        if "bytes" in row:
            return row["bytes"]
        image = np.asarray(row["image"])
        if image.ndim == 3 and image.shape[2] == 3 and self.color == "rgb":
            image = np.ascontiguousarray(image[:, :, ::-1])  # Ray's read_images gives RGB; the model wants BGR
        return image

    def _submit(self, image: Any, source: str) -> Any:
        """``Detector.submit()``; when its queue is full (the other call in flight filled it), wait a moment."""
        while True:
            try:
                return self.detector.submit(image, source=source, detect=self.detect)
            except OverloadedError:
                time.sleep(0.002)
            except InputError as exc:
                return exc

    def _submit_path(self, source: str) -> Any:
        if not _is_uri(source):
            return self._submit(source, source)
        import pyarrow.fs as pafs

        try:
            fs, path = pafs.FileSystem.from_uri(source)
            with fs.open_input_stream(path) as f:
                data = f.read()
        except (OSError, ValueError, pa.ArrowException) as exc:
            return InputError(f"{source}: cannot read it ({str(exc).splitlines()[0]})", source)
        return self._submit(data, source)

    def _drain(self, pending: list[tuple[dict[str, Any], Any]]) -> list[dict[str, Any]]:
        out = []
        for meta, job in pending:
            if isinstance(job, InputError):
                out.append(self._row(meta, Failure(meta["source"], str(job), meta["stream"])))
                continue
            try:
                result = job.result()
            except InputError as exc:  # unreadable: a failure record, never a retry
                out.append(self._row(meta, Failure(meta["source"], str(exc), meta["stream"])))
                continue
            out.append(self._row(meta, result))
        return out

    def _video(self, meta: dict[str, Any]) -> Iterator[list[dict[str, Any]]]:
        with self.detector.stream(meta["source"], detect=self.detect) as run:
            chunk: list[dict[str, Any]] = []
            for result in run:
                result.stream = meta["stream"]
                chunk.append(self._row({**meta, "frame": result.frame}, result))
                if len(chunk) >= 32:
                    yield chunk
                    chunk = []
            yield chunk

    def _row(self, meta: dict[str, Any], result: Any) -> dict[str, Any]:
        row = {"index": meta["index"], "source": meta["source"], "stream": meta["stream"],
               "frame": meta.get("frame"), "node_id": self.node_id, "worker_pid": self.pid}
        if isinstance(result, Failure):
            return {**row, "record": result.to_json(), "error": result.error, "width": None, "height": None,
                    "num_detections": 0, "boxes": [], "confidence": [], "class_id": [], "class_name": []}
        result.source = meta["source"]
        row["frame"] = getattr(result, "frame", None)
        boxes = getattr(result, "xyxy", np.zeros((0, 4), np.float32))
        return {**row, "record": result.to_json(), "error": None,
                "width": int(result.image_shape[1]), "height": int(result.image_shape[0]),
                "num_detections": len(result) if isinstance(result, Detections) else 0,
                "boxes": np.asarray(boxes, np.float32).tolist(),
                "confidence": np.asarray(getattr(result, "confidence", []), np.float32).tolist(),
                "class_id": np.asarray(getattr(result, "class_id", []), np.int32).tolist(),
                "class_name": list(getattr(result, "class_names", []))}

    @staticmethod
    def _table(rows: list[dict[str, Any]]) -> pa.Table:
        return pa.Table.from_pylist(rows, schema=OUTPUT_SCHEMA)

    def __del__(self) -> None:
        det = getattr(self, "detector", None)
        if det is not None:
            with contextlib.suppress(Exception):
                det.close()


def _scalar(value: Any) -> Any:
    """A numpy batch cell as a Python value; a null int column arrives as float NaN: ``None``."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and value != value:
        return None
    return value


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
) -> Any:
    """The lazy step: ``dataset`` (rows with ``source``/``path`` and optionally ``bytes`` or ``image``)
    mapped to :data:`OUTPUT_SCHEMA` rows by a pool of :class:`DetectorActor`.

    No count check here (:func:`predict_dataset` does it). ``color``: the
    channel order of an ``image`` column (``"rgb"``, as ``read_images``
    gives; ``"bgr"`` for OpenCV arrays).
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
                               "pipeline": pipeline, "rows_per_block": config.rows_per_block, "color": color},
        batch_size=config.batch_size,
        batch_format="numpy",
        compute=pool,
        num_cpus=config.num_cpus,
        zero_copy_batch=True,
    )


# -- the driver ---------------------------------------------------------------------

class _Line:
    """A JSONL line already formatted by an actor, for :class:`~yolo_ov.sinks.JsonlSink`."""

    __slots__ = ("line",)

    def __init__(self, line: str) -> None:
        self.line = line

    def to_json(self) -> str:
        return self.line


@dataclass
class _Tally:
    result: BatchResult
    sink: JsonlSink | None
    on_record: Callable[[dict[str, Any]], None] | None
    seen: set[Any] = field(default_factory=set)
    answered: set[Any] = field(default_factory=set)

    def take(self, table: pa.Table, keyed_by_source: bool) -> None:
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
            if self.sink is not None:
                self.sink.write(_Line(line))  # type: ignore[arg-type]
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
    """Ray Data settings for one run: input order kept or not; inputs handed out only once every actor is up
    (so work spreads over all the nodes instead of piling onto the first actor that compiled its model)."""
    import ray.data

    ctx = ray.data.DataContext.get_current()
    before = ctx.execution_options.preserve_order, ctx.wait_for_min_actors_s
    ctx.execution_options.preserve_order = config.ordered
    ctx.wait_for_min_actors_s = max(int(config.start_timeout_s), 1)
    try:
        yield
    finally:
        ctx.execution_options.preserve_order, ctx.wait_for_min_actors_s = before


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
    collect: bool = False,
    on_record: Callable[[dict[str, Any]], None] | None = None,
    color: str = "rgb",
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
        specialize: shape specialisation for videos (images always keep the
            model's square input, as ``submit()`` does).
        save_json: one JSONL file, written here on the driver in input order.
        save_parquet: a folder or URI, written by Ray Data's Parquet writer.
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
    with JsonlSink(save_json) if save_json is not None else contextlib.nullcontext() as sink, \
            _data_context(config):
        tally = _Tally(result, sink, on_record)
        if dataset_input:
            result.inputs = source.count()
            missing: list[Any] = []
            todo = source
        else:
            result.inputs = len(inputs)
            missing = list(range(len(inputs)))
            todo = _input_dataset(inputs, missing, config.batch_size)
        for _ in range(config.max_passes):
            result.passes += 1
            out = map_detections(todo, model_source, runtime=runtime, detect=detect, config=config,
                                 specialize=specialize, color=color)
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
            todo = _input_dataset(inputs, missing, config.batch_size)
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
