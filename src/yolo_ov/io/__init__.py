"""Inputs and outputs at the edges of the data path: sources (:mod:`~yolo_ov.io.sources`: files, folders,
videos, cameras, URLs; every capture opened by :func:`~yolo_ov.io.capture.open_capture`), sinks (the
:class:`~yolo_ov.io.sink.Sink` contract and :class:`~yolo_ov.io.sink.Sinks`; :mod:`~yolo_ov.io.sinks`: JSONL,
COCO JSON, annotated images and video; :mod:`~yolo_ov.io.mqtt` and :mod:`~yolo_ov.io.webhook`: events over the
network through the bounded :mod:`~yolo_ov.io.outbox`), signal-safe writes (:mod:`~yolo_ov.io.signals`) and drawing
(:mod:`~yolo_ov.io.draw`)."""
