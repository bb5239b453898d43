"""Accuracy: YOLO datasets (:mod:`~yolo_ov.eval.dataset`), COCO mAP with faster-coco-eval
(:mod:`~yolo_ov.eval.evaluate`), Ultralytics' own metrics (:mod:`~yolo_ov.eval.metrics_ultralytics`,
:mod:`~yolo_ov.eval.ultralytics`), running a model over a dataset (:mod:`~yolo_ov.eval.validate`) and models
side by side (:mod:`~yolo_ov.eval.compare`). Scoring does not depend on the runtime."""
