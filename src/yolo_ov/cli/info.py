"""``yolo-ov info``: what a model is and what OpenVINO made of it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from ..detector import Detector
from ..runtime.core import available_devices
from ._app import app, guarded, out
from ._options import ConfigOpt, DeviceOpt, ImgszOpt, ModelOpt, ModeOpt, NoCacheOpt, build_runtime, tuned_model


@app.command()
@guarded
def info(
    model: ModelOpt = None,
    device: DeviceOpt = None,
    mode: ModeOpt = None,
    imgsz: ImgszOpt = None,
    config: ConfigOpt = None,
    no_cache: NoCacheOpt = False,
    as_json: Annotated[bool, typer.Option("--json", help="print one JSON object instead of text")] = False,
) -> None:
    """Print the model's inputs, outputs, head, classes and the compiled configuration."""
    runtime = build_runtime(mode=mode, device=device, imgsz=imgsz, config=config, no_cache=no_cache)
    model = tuned_model(model, config)
    with Detector(model, runtime=runtime) as det:
        report = {
            "given": str(model) if model is not None else None,
            "model": det.model_info.to_dict(),
            "compiled": det.compiled_info.to_dict(),
            "load_ms": {
                "read": round(det.load_timings.read_ms, 1),
                "compile": round(det.load_timings.compile_ms, 1),
                "first_inference": round(det.load_timings.first_inference_ms, 1),
            },
            "available_devices": available_devices(),
        }
        names = dict(det.names)
    if as_json:
        out.print_json(json.dumps(report))
        return
    m, c = report["model"], report["compiled"]
    given = report["given"] or "(default)"
    rows = [("model", given)]
    if not report["given"] or Path(given).expanduser().resolve() != Path(m["path"]):
        rows.append(("model file", m["path"]))
    rows += [
        ("task / head", f"{m['task']} / {m['head']}"),
        ("input", f"{m['input']['name']} {m['input']['shape']}"),
        ("output", f"{m['output']['name']} {m['output']['shape']}"),
        *_task_rows(m),
        ("classes", f"{m['num_classes']} (names from {m['names_source']})"),
        ("class names", ", ".join(f"{i} {n}" for i, n in sorted(names.items()))),
        ("imgsz / stride", f"{m['imgsz'][0]}x{m['imgsz'][1]} / {m['stride']}"),
        ("device", f"{c['device']} -> {', '.join(c['execution_devices'])}"),
        ("available devices", ", ".join(report["available_devices"])),
        ("mode", c["mode"]),
        ("compiled input", "x".join(map(str, c["input_shape"])) + " uint8 NHWC BGR (pre-processing in graph)"),
        ("streams", str(c["num_streams"])),
        ("optimal requests", str(c["optimal_requests"])),
        ("precision", str(c["inference_precision"])),
        ("threads", str(c["inference_threads"])),
        ("model cache", c["cache_dir"] or "off"),
        ("mmap", "on" if c["enable_mmap"] else "off"),
        ("load (ms)", ", ".join(f"{k} {v}" for k, v in report["load_ms"].items())),
        ("openvino", c["openvino_version"]),
    ]
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        out.print(f"{key:<{width}}  {value}", soft_wrap=True, markup=False)


def _task_rows(m: dict) -> list[tuple[str, str]]:
    """What the task head needs to know: every output, end-to-end or not, keypoints, mask prototypes."""
    rows = []
    if len(m["outputs"]) > 1:
        rows.append(("outputs", ", ".join(f"{o['name']} {o['shape']}" for o in m["outputs"])))
    if m["task"] != "classify":
        rows.append(("end-to-end", "yes (the model de-duplicates; no NMS)" if m["end2end"] else "no (NMS on the host)"))
    if m.get("kpt_shape"):
        k, d = m["kpt_shape"]
        rows.append(("keypoints", f"{k} x {d} ({'x, y, visibility' if d == 3 else 'x, y'})"))
    if m.get("num_masks"):
        rows.append(("mask prototypes", str(m["num_masks"])))
    if m.get("layout") == "NHWC":
        rows.append(("input layout", "NHWC (TFLite; runs at its own size only)"))
    return rows
