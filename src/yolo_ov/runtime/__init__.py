"""The runtime: everything that knows OpenVINO, and the contract the layers above talk to.

* :mod:`~yolo_ov.runtime.engine`: the :class:`Engine` contract and :class:`FakeEngine` (tests without a model);
* :mod:`~yolo_ov.runtime.core`: the OpenVINO ``Core``, devices, pre-processing in the graph, the one compile,
  :class:`OpenVINOEngine`;
* :mod:`~yolo_ov.runtime.model`: finding a model and reading its metadata once (:class:`ModelInfo`);
* :mod:`~yolo_ov.runtime.prepared`: the prepared-model store (the graph as compiled, in the cache);
* :mod:`~yolo_ov.runtime.reshape`: a static Ultralytics export reshaped to another input size.

Nothing here knows about heads, the pipeline, the server or the command line.
"""

from .core import CompiledInfo, LoadTimings, OpenVINOEngine, available_devices, load
from .engine import Engine, FakeEngine
from .model import HeadType, ModelInfo, TensorSpec

__all__ = [
    "CompiledInfo",
    "Engine",
    "FakeEngine",
    "HeadType",
    "LoadTimings",
    "ModelInfo",
    "OpenVINOEngine",
    "TensorSpec",
    "available_devices",
    "load",
]
