"""What shape specialisation does to accuracy: coco96 mAP50-95, square vs folder buckets vs exact shapes.

Three ways to letterbox the same 96 images, scored by faster-coco-eval with
Ultralytics' validation settings (conf 0.001, multi-label NMS):

* **square**: the model's own 640x640 input (the default for images in every mode);
* **bucket**: ``--specialize`` on a folder (at most a handful of shapes);
* **exact**: each image's own smallest stride-aligned letterbox, as a video or
  camera is specialised by default (every frame of a video shares one shape).

Accuracy does not depend on machine load, but bf16 kernels differ between CPU
kinds: the machine is recorded.

Run:  python benchmarks/bench_specialisation_map.py
Writes benchmarks/results/specialisation_map.json and .md.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import machine_info, machine_line, write_results
from tests.assets import shared_assets

from yolo_ov import DetectConfig, Detector, PipelineConfig
from yolo_ov.eval.dataset import load_dataset
from yolo_ov.eval.evaluate import evaluate
from yolo_ov.imaging.decode import load_image
from yolo_ov.io.sources import FrameSource, SourceItem


def main() -> None:
    assets = shared_assets()
    ds = load_dataset(assets.coco96 / "data.yaml")
    detect = DetectConfig(conf=0.001, multi_label=True)
    spec = PipelineConfig(specialize="on", max_shapes=64)
    rows = []
    for name, model in (("FP32", assets.fp32_model), ("INT8", assets.int8_model)):
        with Detector(model, mode="throughput", detect=detect) as det:
            square = evaluate(ds, det.stream(ds.images, config=PipelineConfig(specialize="off")))
            list(det.stream(ds.images, config=spec))
            det.pipeline(spec).wait_compiled()
            bucket_run = det.stream(ds.images, config=spec)
            bucket = evaluate(ds, bucket_run)

            def as_video() -> FrameSource:
                return FrameSource([SourceItem(load_image(str(p)), str(p)) for p in ds.images], video=True)

            list(det.stream(as_video(), config=spec))
            det.pipeline(spec).wait_compiled()
            exact_run = det.stream(as_video(), config=spec)
            exact = evaluate(ds, exact_run)
            rows.append({"model": name, "square": square.map50_95, "bucket": bucket.map50_95,
                         "exact": exact.map50_95, "bucket_shapes": dict(bucket_run.stats.shapes),
                         "exact_shapes": len(exact_run.stats.shapes)})
            print(rows[-1], flush=True)
    info = machine_info()
    md = ["# Shape specialisation and accuracy (coco96 mAP50-95)", "", machine_line(info),
          "Command: `python benchmarks/bench_specialisation_map.py`.", "",
          "| model | square 640x640 (default for images) | folder buckets (`--specialize`) | exact per image "
          "(as videos by default) |", "|---|---|---|---|"]
    for r in rows:
        md.append(f"| {r['model']} | {r['square']:.4f} | {r['bucket']:.4f} ({r['bucket'] - r['square']:+.4f}) | "
                  f"{r['exact']:.4f} ({r['exact'] - r['square']:+.4f}) |")
    write_results("specialisation_map", {"machine": info, "rows": rows}, "\n".join(md))
    print("\n".join(md))


if __name__ == "__main__":
    main()
