"""Array operations the heads share: boxes (NMS, scaling, rotated boxes) in :mod:`~yolo_ov.ops.boxes` and
instance masks in :mod:`~yolo_ov.ops.masks`. Pure NumPy and OpenCV, no OpenVINO, no state."""
