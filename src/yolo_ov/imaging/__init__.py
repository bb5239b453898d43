"""Images in: decoding any input to 8-bit BGR (:mod:`~yolo_ov.imaging.decode`), sizes read from file headers
without decoding (:mod:`~yolo_ov.imaging.header`), Ultralytics' letterbox (:mod:`~yolo_ov.imaging.letterbox`)
and its Pillow-exact classification resampling (:mod:`~yolo_ov.imaging.resample`).

Pure OpenCV and NumPy: nothing here imports OpenVINO.
"""
