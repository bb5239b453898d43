"""Inputs and outputs at the edges of the data path: sources (:mod:`~yolo_ov.io.sources`: files, folders,
videos, cameras, URLs), sinks (:mod:`~yolo_ov.io.sinks`: JSONL, COCO JSON, annotated images and video) and
drawing (:mod:`~yolo_ov.io.draw`)."""
