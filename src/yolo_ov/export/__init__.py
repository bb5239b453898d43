"""Export: a ``.pt``, ``.onnx`` or IR to an OpenVINO folder (:mod:`~yolo_ov.export.convert`), INT8 with NNCF
(:mod:`~yolo_ov.export.quantize`) and the measured choice of precision (:mod:`~yolo_ov.export.precision`).

Example:
    >>> from yolo_ov.export import ExportConfig, export_model  # doctest: +SKIP
    >>> export_model(Path("yolov8n.pt"), ExportConfig(precision="int8", data=Path("images/")))  # doctest: +SKIP
"""

from .convert import PRECISIONS, ExportConfig, ExportWarning, default_output, export_model, place_model_folder

__all__ = ["PRECISIONS", "ExportConfig", "ExportWarning", "default_output", "export_model", "place_model_folder"]
