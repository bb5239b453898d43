"""The Ray Data actor: one throughput ``Detector`` per actor, compiled once, fed a block at a time.

Images go through ``Detector.submit()`` (every image of a block at once, so
the device streams stay busy; the model's own square input, so the record is
the one local ``yolo-ov predict`` writes), videos through ``Detector.stream()``
(one record per frame). An image that cannot be read becomes a failure
record, never an exception: Ray would retry it forever.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pyarrow as pa

from ..config import DetectConfig, RuntimeConfig, SliceConfig
from ..errors import InputError, OverloadedError
from ..io.sources import is_video_file
from ..pipeline import PipelineConfig
from ..results import Detections, Failure
from .inputs import is_uri
from .shipping import ModelSource

__all__ = ["OUTPUT_SCHEMA", "DetectorActor"]

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


class DetectorActor:
    """A Ray Data actor: one throughput :class:`~yolo_ov.Detector`, compiled once, fed a batch at a time.

    Built by Ray Data (``map_batches(DetectorActor, fn_constructor_kwargs=...)``);
    see :func:`yolo_ov.ray.batch.map_detections`.
    """

    def __init__(self, model: ModelSource, runtime: RuntimeConfig, detect: DetectConfig,
                 pipeline: PipelineConfig, rows_per_block: int = 256, color: str = "rgb",
                 slicing: SliceConfig | None = None) -> None:
        import ray

        from ..detector import Detector

        self.detector = Detector(model.resolve(), runtime=runtime, detect=detect, pipeline=pipeline, slicing=slicing)
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
            elif is_video_file(source) and not is_uri(source):
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
        if not is_uri(source):
            return self._submit(source, source)
        if is_video_file(source):
            return InputError(f"{source}: videos are read with OpenCV from a path; copy it to a path every node "
                              "can read (object storage is supported for images)", source)
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
