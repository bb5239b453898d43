"""Array operations under the heads, the results and the evaluators: axis-aligned boxes (NMS, ``xywh`` <->
``xyxy``, mapping from the letterbox back to the image) in :mod:`~yolo_ov.ops.boxes`, rotated boxes (corners,
``probiou``, rotated NMS) in :mod:`~yolo_ov.ops.rotated` and instance masks in :mod:`~yolo_ov.ops.masks`.
Pure NumPy and OpenCV, no OpenVINO, no state; nothing here decodes a network's output (the heads do)."""
