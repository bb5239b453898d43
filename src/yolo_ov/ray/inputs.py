"""The inputs of a batch run: what the driver lists, as ``yolo-ov predict`` lists it, and the rows actors get.

Folders are searched recursively and globs sorted, as local ``predict`` does;
``s3://``-style URIs are listed with pyarrow's filesystems; videos stay one
input each (their frames come back as records). The rows ``{index, source,
stream, error}`` are cut in blocks of ``batch_size``: a block is what an actor
gets per call and what Ray re-runs if that actor dies.
"""

from __future__ import annotations

import glob
from pathlib import Path
from typing import Any

import pyarrow as pa

from ..errors import ConfigError, InputError
from ..imaging.decode import IMAGE_SUFFIXES
from ..io.sources import VIDEO_SUFFIXES, is_live, is_video_file, iter_image_files

__all__ = ["INPUT_SCHEMA", "expand_inputs", "input_dataset", "is_uri"]

INPUT_SCHEMA = pa.schema([("index", pa.int64()), ("source", pa.string()), ("stream", pa.int64()),
                           ("error", pa.string())])
_URI_SCHEMES = ("s3://", "gs://", "gcs://", "hdfs://", "viewfs://", "abfs://", "abfss://", "az://", "file://")

def is_uri(spec: str) -> bool:
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
                   and Path(f.path).suffix.lower() in IMAGE_SUFFIXES | VIDEO_SUFFIXES)
    return [f"{scheme}://{p}" for p in files]


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
        if is_uri(text):
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


def input_dataset(inputs: list[tuple[str, str | None]], indices: list[int], block_rows: int) -> Any:
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
        }, schema=INPUT_SCHEMA))
    return ray.data.from_arrow(tables)
