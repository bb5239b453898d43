"""Reshape a statically exported YOLO graph to another input size.

YOLO is fully convolutional, but Ultralytics' static exports bake the
detection head's anchor grid into the graph as constants (``[1, 2, N]`` anchor
centres, ``[1, 1, N]`` strides, and in some exports ``Reshape`` targets holding
``N``), with ``N = 8400`` for 640x640. ``Model.reshape`` then fails on the
head. This module regenerates those constants for the new size, exactly as
Ultralytics' ``make_anchors`` does, after checking that the constants found
are the anchors of the old size (nothing else is touched), then reshapes.
"""

from __future__ import annotations

import numpy as np
import openvino as ov
import openvino.opset13 as ops

from ..errors import ConfigError, openvino_message

__all__ = ["make_anchors", "reshape_model"]


def make_anchors(hw: tuple[int, int], strides: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Anchor centres ``(2, N)`` and strides ``(N,)`` of a YOLO head for input ``hw``."""
    h, w = hw
    points, stride_list = [], []
    for s in strides:
        sy, sx = np.meshgrid(np.arange(h // s) + 0.5, np.arange(w // s) + 0.5, indexing="ij")
        points.append(np.stack((sx, sy), -1).reshape(-1, 2))
        stride_list.append(np.full(sx.size, s))
    return np.concatenate(points).T.astype(np.float32), np.concatenate(stride_list).astype(np.float32)


def _strides_for(model: ov.Model, n_old: int) -> tuple[int, ...] | None:
    """The head strides, read from the ``[.., N]`` stride constant (e.g. 8, 16, 32)."""
    for op in model.get_ordered_ops():
        if op.get_type_name() == "Constant" and op.get_output_element_type(0) == ov.Type.f32:
            shape = list(op.get_output_shape(0))
            if shape and shape[-1] == n_old and int(np.prod(shape)) == n_old:
                values = op.get_data().reshape(-1)
                uniq = tuple(int(v) for v in dict.fromkeys(values.tolist()))
                if all(v > 0 and float(v).is_integer() and (v & (v - 1)) == 0 for v in uniq):
                    return uniq
    return None


def reshape_model(model: ov.Model, old_hw: tuple[int, int], new_hw: tuple[int, int], batch: int) -> None:
    """Reshape ``model`` in place to ``(batch, 3, *new_hw)``, regenerating baked anchors.

    Raises:
        ConfigError: the graph cannot take the new shape (the message says why).
    """
    target = ov.PartialShape([batch, 3, *new_hw])
    if new_hw != old_hw:
        _replace_anchor_constants(model, old_hw, new_hw)
    try:
        # Model.reshape() rejects the graph mid-way once its constants are
        # swapped; setting the input shape and re-inferring in topological
        # order is what it does, minus that check.
        model.get_parameters()[0].set_partial_shape(target)
        model.validate_nodes_and_infer_types()
    except RuntimeError as exc:
        raise ConfigError(f"the model cannot be reshaped to {target} ({openvino_message(exc, 200)})") from exc


def _replace_anchor_constants(model: ov.Model, old_hw: tuple[int, int], new_hw: tuple[int, int]) -> None:
    out = model.outputs[0].get_partial_shape()
    if out.rank.get_length() != 3 or not out[2].is_static:
        return  # dynamic head or end-to-end: nothing baked for the anchor count
    n_old = out[2].get_length()
    strides = _strides_for(model, n_old)
    if strides is None:
        return
    old_anchors, old_strides = make_anchors(old_hw, strides)
    if old_anchors.shape[1] != n_old:
        return
    new_anchors, new_strides = make_anchors(new_hw, strides)
    n_new = new_anchors.shape[1]
    for op in list(model.get_ordered_ops()):
        if op.get_type_name() != "Constant":
            continue
        shape = list(op.get_output_shape(0))
        etype = op.get_output_element_type(0)
        replacement = None
        if etype == ov.Type.f32 and shape[-1:] == [n_old]:
            data = op.get_data()
            if shape[-2:] == [2, n_old] and np.allclose(data.reshape(2, n_old), old_anchors):
                replacement = new_anchors.reshape([*shape[:-1], n_new])
            elif int(np.prod(shape)) == n_old and np.allclose(data.reshape(-1), old_strides):
                replacement = new_strides.reshape([*shape[:-1], n_new])
        elif etype.is_integral() and len(shape) == 1 and 0 < shape[0] <= 8:
            data = op.get_data()
            feeds_reshape = any(t.get_node().get_type_name() == "Reshape" for t in op.output(0).get_target_inputs())
            if feeds_reshape and n_old in data.tolist():
                replacement = np.where(data == n_old, n_new, data).astype(data.dtype)
        if replacement is not None:
            new_const = ops.constant(replacement)
            new_const.set_friendly_name(op.get_friendly_name())
            for target in list(op.output(0).get_target_inputs()):
                target.replace_source_output(new_const.output(0))
