"""Make SAHI's sliced-prediction references for other merges (run with SAHI installed, never in yolo-ov's venv).

``../shared/data/sliced/sahi_reference_*_512.json`` hold SAHI's GREEDYNMM results;
this script makes the same for NMM and NMS, in the shared file's format, into
``tests/data/sliced_sahi/`` (and runs GREEDYNMM again to check that it reproduces
the shared file: it did, every box to 0.01 px, on 2026-12-06).

How it was run (a separate venv: SAHI 0.12.8 pulls in opencv-python with its GUI;
Ultralytics, torch and OpenVINO are the project venv's, reached through a .pth)::

    python3.11 -m venv /work/sahi-venv
    echo /work/main/.venv/lib/python3.11/site-packages > /work/sahi-venv/lib/python3.11/site-packages/main.pth
    /work/sahi-venv/bin/pip install sahi==0.12.8 shapely
    /work/sahi-venv/bin/python tests/make_sahi_slicing_references.py ../shared
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import cv2
import numpy as np


def main(shared: Path, out: Path) -> None:
    import sahi
    import ultralytics
    from sahi import AutoDetectionModel
    from sahi.predict import get_sliced_prediction

    folder = shared / "data" / "sliced"
    out.mkdir(parents=True, exist_ok=True)
    for model_dir, short in [("yolov8n_openvino_model", "yolov8n"), ("yolo11n-seg_int8_openvino_model", "yolo11n-seg")]:
        base = json.loads((folder / f"sahi_reference_{short}_512.json").read_text(encoding="utf-8"))
        model = AutoDetectionModel.from_pretrained(model_type="ultralytics",
                                                   model_path=str(shared / "models" / model_dir),
                                                   confidence_threshold=0.25, image_size=640)
        for merge in ("GREEDYNMM", "NMM", "NMS"):
            settings = {**base["settings"], "postprocess_type": merge}
            record = {"sahi": sahi.__version__, "ultralytics": ultralytics.__version__, "model": model_dir,
                      "conf": 0.25, "imgsz": 640, "settings": settings, "images": {}}
            for name in base["images"]:
                rgb = cv2.cvtColor(cv2.imread(str(folder / name)), cv2.COLOR_BGR2RGB)
                t0 = time.perf_counter()
                result = get_sliced_prediction(rgb, model, **settings)
                seconds = time.perf_counter() - t0
                preds = result.object_prediction_list
                entry = {"hw": list(rgb.shape[:2]), "slices": base["images"][name]["slices"],
                         "seconds": round(seconds, 3),
                         "xyxy": [[round(float(v), 2) for v in p.bbox.to_xyxy()] for p in preds],
                         "conf": [round(float(p.score.value), 4) for p in preds],
                         "cls": [int(p.category.id) for p in preds]}
                if preds and preds[0].mask is not None:
                    entry["segmentation"] = [p.mask.segmentation for p in preds]
                record["images"][name] = entry
                if merge == "GREEDYNMM":  # the shared reference must come out again
                    same = np.allclose(np.array(entry["xyxy"]).reshape(-1, 4),
                                       np.array(base["images"][name]["xyxy"]).reshape(-1, 4), atol=0.02) \
                        if len(entry["xyxy"]) == len(base["images"][name]["xyxy"]) else False
                    print(f"{short} {name}: reproduces the shared reference: {same}")
            if merge == "GREEDYNMM":
                continue  # the shared file already holds it
            path = out / f"sahi_reference_{short}_512_{merge.lower()}.json"
            path.write_text(json.dumps(record, separators=(",", ":")), encoding="utf-8")
            print("wrote", path)


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "../shared"), Path(__file__).parent / "data" / "sliced_sahi")
