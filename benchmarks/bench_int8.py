"""INT8 vs FP32: accuracy and throughput of the models ``yolo-ov export`` makes, side by side.

Exports, from the shared ``yolov8n.pt`` and into a temporary folder (never
the repository):

* ``fp32``: ``yolo-ov export yolov8n.pt``;
* ``int8``: ``yolo-ov export yolov8n.pt --precision int8 --data coco96``
  (NNCF, preset ``mixed``, head decode kept in float) - the default;
* ``int8-performance``: the same with ``--preset performance`` (the
  measurement behind the default preset);

and adds the shared INT8 IR Ultralytics exported (8.1.22) as the peer. For
each model, in the same run:

* COCO mAP50-95 / mAP50 on coco96 by ``yolo-ov val`` (faster-coco-eval), and
  Ultralytics' own ``YOLO(model).val()`` figure (its own AP definition);
* ``benchmark_app -hint throughput`` FPS, median of ``--rounds`` runs of
  ``--seconds`` each, rounds interleaved across models so drift hits all alike.

Writes ``benchmarks/results/int8.json`` and ``int8.md``. Run (benchmarks must
not overlap, hence the lock):

    flock /tmp/yolo-ov-bench.lock python benchmarks/bench_int8.py [--seconds 15] [--rounds 3]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import machine_info, machine_line, median, run_benchmark_app, write_results
from tests.assets import shared_assets

from yolo_ov.eval.validate import validate
from yolo_ov.export.convert import ExportConfig, export_model


def ultralytics_map(folder: Path, data_yaml: Path) -> tuple[float, float] | None:
    try:
        from ultralytics import YOLO
    except ImportError:
        return None
    metrics = YOLO(str(folder), task="detect").val(
        data=str(data_yaml), imgsz=640, batch=1, verbose=False, plots=False, save_json=False
    )
    return float(metrics.box.map), float(metrics.box.map50)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=15, help="benchmark_app -t per round")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved benchmark_app rounds per model")
    args = parser.parse_args()

    shared = shared_assets()
    machine = machine_info()
    import nncf
    import ultralytics

    machine["nncf"] = nncf.__version__
    machine["ultralytics"] = ultralytics.__version__
    with tempfile.TemporaryDirectory(prefix="yolo-ov-int8-") as tmp:
        root = Path(tmp)
        models: dict[str, dict[str, Any]] = {}
        t0 = time.perf_counter()
        fp32 = export_model(shared.pt_model, ExportConfig(output=root / "yolov8n_openvino_model"))
        models["fp32"] = {"folder": fp32, "made": "yolo-ov export yolov8n.pt", "export_s": time.perf_counter() - t0}
        for name, preset in (("int8", "mixed"), ("int8-performance", "performance")):
            t0 = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # the <300-images calibration warning: coco96 has 96
                folder = export_model(shared.pt_model, ExportConfig(
                    precision="int8", data=shared.coco96, preset=preset,
                    output=root / f"{name.replace('-', '_')}" / "yolov8n_int8_openvino_model",
                ))
            models[name] = {
                "folder": folder,
                "made": f"yolo-ov export yolov8n.pt --precision int8 --data coco96 --preset {preset}",
                "export_s": time.perf_counter() - t0,
            }
        models["ultralytics-int8 (shared)"] = {
            "folder": shared.int8_model, "made": "Ultralytics 8.1.22 export (NNCF), shared asset", "export_s": None,
        }

        for name, m in models.items():
            res = validate(m["folder"], shared.coco96)
            m["map50_95"], m["map50"] = res.map50_95, res.map50
            m["inference_precision"] = res.settings.get("inference_precision")
            ul = ultralytics_map(m["folder"], shared.coco96 / "data.yaml")
            m["ultralytics_map50_95"], m["ultralytics_map50"] = ul if ul else (None, None)
            print(f"{name}: mAP50-95 {res.map50_95:.4f} (Ultralytics' metric {m['ultralytics_map50_95']})",
                  flush=True)

        fps: dict[str, list[float]] = {name: [] for name in models}
        for r in range(args.rounds):
            for name, m in models.items():
                xml = next(Path(m["folder"]).glob("*.xml"))
                out = run_benchmark_app(xml, "throughput", args.seconds)
                fps[name].append(out["fps"])
                m["streams"] = out.get("streams")
                m["nireq"] = out.get("nireq")
                print(f"round {r + 1}: {name} {out['fps']:.1f} FPS", flush=True)

    base = median(fps["fp32"])
    rows = []
    for name, m in models.items():
        f = median(fps[name])
        rows.append({
            "model": name,
            "made": m["made"],
            "map50_95": round(m["map50_95"], 4),
            "map50": round(m["map50"], 4),
            "map50_95_drop_vs_fp32": round(models["fp32"]["map50_95"] - m["map50_95"], 4),
            "ultralytics_map50_95": None if m["ultralytics_map50_95"] is None else round(m["ultralytics_map50_95"], 4),
            "throughput_fps_median": round(f, 1),
            "throughput_fps_runs": [round(x, 1) for x in fps[name]],
            "speedup_vs_fp32": round(f / base, 2),
            "streams": m.get("streams"),
            "infer_requests": m.get("nireq"),
            "inference_precision": m["inference_precision"],
            "export_s": None if m["export_s"] is None else round(m["export_s"], 1),
        })
    data = {
        "benchmark": "int8",
        "machine": machine,
        "settings": {"benchmark_app": f"-d CPU -hint throughput -t {args.seconds}", "rounds": args.rounds,
                     "dataset": "coco96 (96 images, 717 instances)", "calibration": "coco96, all 96 images",
                     "val": "conf 0.001, iou 0.7, multi-label NMS, max_det 300, 640x640 letterbox"},
        "results": rows,
    }
    lines = [
        "### INT8",
        "",
        machine_line(machine) + f" NNCF {machine['nncf']}, Ultralytics {machine['ultralytics']}.",
        "",
        f"`benchmark_app -hint throughput -t {args.seconds}`, median of {args.rounds} interleaved rounds; "
        "mAP on coco96 by `yolo-ov val` (COCO definition, faster-coco-eval) and by Ultralytics' own `val` "
        "(its AP definition) for the same model.",
        "",
        "| model | how it was made | mAP50-95 | mAP50 | drop vs FP32 | Ultralytics' mAP50-95 | FPS (throughput) "
        "| vs FP32 |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        ul = "-" if r["ultralytics_map50_95"] is None else f"{r['ultralytics_map50_95']:.4f}"
        lines.append(
            f"| {r['model']} | {r['made']} | {r['map50_95']:.4f} | {r['map50']:.4f} | "
            f"{r['map50_95_drop_vs_fp32']:+.4f} | {ul} | {r['throughput_fps_median']:.1f} | "
            f"{r['speedup_vs_fp32']:.2f}x |"
        )
    lines += [
        "",
        "FP32 runs in bf16 on this CPU (OpenVINO's default where AVX512-BF16/AMX exist), so the INT8 speed-up "
        "is measured against bf16, not true FP32. 'drop vs FP32' is positive when INT8 is less accurate.",
    ]
    json_path, md_path = write_results("int8", data, "\n".join(lines))
    print("\n".join(lines))
    print(f"\nwrote {json_path} and {md_path}")


if __name__ == "__main__":
    main()
