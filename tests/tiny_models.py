"""Tiny OpenVINO graphs built in the test, for runtime behaviour that needs no real weights."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import openvino as ov
import openvino.opset13 as ops


def save(model: ov.Model, folder: Path, name: str = "model") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    xml = folder / f"{name}.xml"
    ov.save_model(model, str(xml), compress_to_fp16=False)
    return xml


def end2end_model(detections: np.ndarray, imgsz: int = 64) -> ov.Model:
    """(1,3,s,s) f32 input -> (1, N, 6) constant detections (+ 0 x input, so the input is used)."""
    x = ops.parameter([1, 3, imgsz, imgsz], np.float32, name="images")
    zero = ops.multiply(ops.reduce_mean(x, ops.constant(np.array([1, 2, 3], np.int64)), keep_dims=False),
                        ops.constant(np.float32(0.0)))
    dets = ops.add(ops.constant(detections[None].astype(np.float32)), ops.reshape(zero, [1, 1, 1], False))
    dets.output(0).get_tensor().set_names({"output0"})
    return ov.Model([dets], [x], "tiny_end2end")


def classifier_model(imgsz: int = 64, classes: int = 10) -> ov.Model:
    """(1,3,s,s) -> (1, classes): an image model that is not a detector."""
    x = ops.parameter([1, 3, imgsz, imgsz], np.float32, name="images")
    pooled = ops.reduce_mean(x, ops.constant(np.array([2, 3], np.int64)), keep_dims=False)
    w = ops.constant(np.ones((3, classes), np.float32))
    return ov.Model([ops.matmul(pooled, w, False, False)], [x], "tiny_classifier")


def map_model(imgsz: int = 64) -> ov.Model:
    """(1,3,s,s) -> (1,1,s,s): a per-pixel map (depth-like), which no YOLO head decodes."""
    x = ops.parameter([1, 3, imgsz, imgsz], np.float32, name="images")
    mean = ops.reduce_mean(x, ops.constant(np.array([1], np.int64)), keep_dims=True)
    return ov.Model([mean], [x], "tiny_map")


def raw_head_model(raw: np.ndarray, imgsz: int = 64) -> ov.Model:
    """(1,3,s,s) -> (1, 4+nc, N) constant raw head output."""
    x = ops.parameter([1, 3, imgsz, imgsz], np.float32, name="images")
    zero = ops.multiply(ops.reduce_mean(x, ops.constant(np.array([1, 2, 3], np.int64)), keep_dims=False),
                        ops.constant(np.float32(0.0)))
    out = ops.add(ops.constant(raw[None].astype(np.float32)), ops.reshape(zero, [1, 1, 1], False))
    return ov.Model([out], [x], "tiny_raw")
