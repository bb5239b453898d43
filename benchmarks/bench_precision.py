"""Does ``tune`` (and ``export --precision auto``) pick the right precision on this CPU? (issue 13, item 2)

INT8 is not always faster: on AMD EPYC (Zen 4, no AMX) the INT8 IR of YOLOv8n
ran 1.44x the FP32 IR, on an Intel Xeon with AMX the FP32 IR (executed in
bf16) beat it. This script, on whatever CPU runs it:

1. **reference**: ``benchmark_app -hint throughput`` on the shared FP32 and
   INT8 IRs, interleaved rounds; the best of the two is the bar;
2. **tune**: ``tune(models=[FP32, INT8], data=coco96, max_drop=0.01)`` (the
   ``yolo-ov tune --models ... --data ... --max-drop 0.01`` command), then its
   pick is re-measured with ``benchmark_app`` at the configuration it chose
   (``-hint none -nstreams S -nireq R [-infer_precision P]``, or
   ``-hint throughput`` when the hint's own choice won);
3. **export --precision auto** from the shared FP32 IR with ``--data coco96``:
   the kept model is re-measured with ``benchmark_app -hint throughput``.

All IRs (both shared ones, tune's pick, export's pick) are measured in every
round, interleaved, and each pick is divided by the bar of its own round.

Target: each pick measures at least 0.95x the bar.

Run:  flock /tmp/yolo-ov-bench.lock python benchmarks/bench_precision.py [--seconds 15] [--rounds 2] [--budget 60]
Writes benchmarks/results/precision.json and .md.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import machine_info, machine_line, median, run_benchmark_app, write_results
from tests.assets import shared_assets

from yolo_ov import RuntimeConfig
from yolo_ov.export.convert import ExportConfig


def _xml(folder: Path) -> Path:
    return next(iter(sorted(Path(folder).glob("*.xml"))))


def _bench_args(runtime: RuntimeConfig) -> list[str]:
    """benchmark_app flags for a tuned configuration (hint none + its streams/requests/precision)."""
    if runtime.num_streams is None:
        args = ["-hint", "throughput"]
    else:
        args = ["-hint", "none", "-nstreams", str(runtime.num_streams), "-nireq", str(runtime.num_requests)]
    if runtime.inference_precision is not None:
        args += ["-infer_precision", runtime.inference_precision.value]
    return args


def _bench(xml: Path, seconds: int, rounds: int, args: list[str] | None = None) -> list[float]:
    out = []
    for _ in range(rounds):
        extra = args or []
        hint = "throughput"
        if extra[:2] == ["-hint", "none"] or extra[:2] == ["-hint", "throughput"]:
            hint, extra = extra[1], extra[2:]
        out.append(run_benchmark_app(xml, hint, seconds, *extra)["fps"])
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=15, help="benchmark_app -t per run")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved benchmark_app rounds over all IRs")
    parser.add_argument("--budget", type=float, default=60.0, help="tune's measuring budget (s)")
    parser.add_argument("--skip-export", action="store_true", help="skip export --precision auto")
    args = parser.parse_args()
    assets = shared_assets()
    models = {"FP32": assets.fp32_model, "INT8": assets.int8_model}
    load_before = os.getloadavg()

    # 1. The picks first (tune measures, export quantises), then every IR measured in the same rounds:
    # on a 2-core machine the FPS of one IR drifts by 10-20% between minutes, so a pick is compared
    # with the bar of its own round, never with a figure taken minutes before.
    from yolo_ov.bench.tune import tune

    result = tune(None, RuntimeConfig(), models=[str(m) for m in models.values()], data=assets.coco96,
                  max_drop=0.01, budget_s=args.budget)
    best = result.best
    picked = Path(best.model)  # type: ignore[arg-type]
    print("tune picked:", best.label, flush=True)

    with tempfile.TemporaryDirectory(prefix="yolo-ov-auto-") as tmp:
        auto = None
        if not args.skip_export:
            from yolo_ov.export.precision import export_fastest

            out = Path(tmp) / "yolov8n_auto_openvino_model"
            auto = export_fastest(assets.fp32_model, ExportConfig(data=assets.coco96, output=out), max_drop=0.01)
            print("export auto chose:", auto.precision, flush=True)

        runs: dict[str, tuple[Path, list[str] | None]] = {name: (_xml(folder), None) for name, folder in models.items()}
        runs["tune pick"] = (_xml(picked), _bench_args(best.runtime))
        if auto is not None:
            runs["export auto"] = (_xml(auto.folder), None)
        fps: dict[str, list[float]] = {k: [] for k in runs}
        for r in range(args.rounds):
            for name, (xml, extra) in runs.items():
                fps[name] += _bench(xml, args.seconds, 1, extra)
            print(f"round {r + 1}:", {k: round(v[-1], 1) for k, v in fps.items()}, flush=True)
        fq = {}
        if auto is not None:
            import openvino as ov

            from yolo_ov.export.quantize import count_fake_quantize

            core = ov.Core()
            fq = {"INT8 (shared)": count_fake_quantize(core.read_model(_xml(models["INT8"])))}
            if auto.precision == "int8":
                fq["export auto"] = count_fake_quantize(core.read_model(_xml(auto.folder)))

    bars = [max(fps["FP32"][r], fps["INT8"][r]) for r in range(args.rounds)]
    ref = {k: median(fps[k]) for k in models}
    bar_name = max(ref, key=ref.get)
    bar = ref[bar_name]

    def vs_bar(name: str) -> float:
        return median([fps[name][r] / bars[r] for r in range(args.rounds)])

    tune_row = {"label": best.label, "model": str(picked), "runtime": best.runtime.to_dict(),
                "tune_fps": best.measurement.fps if best.measurement else None,
                "benchmark_app_fps": median(fps["tune pick"]), "vs_bar": vs_bar("tune pick"),
                "accuracy": [a.to_dict() for a in result.accuracy]}
    export_row = None
    if auto is not None:
        export_row = {"chosen": auto.precision, "candidates": auto.candidates,
                      "benchmark_app_fps": median(fps["export auto"]), "vs_bar": vs_bar("export auto"),
                      "fake_quantize_ops": fq}

    info = machine_info()
    info["load_average_before"] = list(load_before)
    info["load_average_after"] = list(os.getloadavg())
    lines = [
        "# Precision per CPU: benchmark_app on both IRs vs what tune and export --precision auto pick",
        "",
        machine_line(info),
        f"Load average (1 min) before/after: {load_before[0]:.1f} / {info['load_average_after'][0]:.1f}.",
        f"Command: `flock /tmp/yolo-ov-bench.lock python benchmarks/bench_precision.py --seconds {args.seconds} "
        f"--rounds {args.rounds} --budget {args.budget:g}`",
        "",
        "Every IR below is measured in each round, one after the other (`benchmark_app`, "
        f"{args.seconds} s each); a pick is compared with the faster shared IR of the same round "
        "(the bar), and the table gives the median of those per-round ratios.",
        "",
        "| IR | benchmark_app FPS (median) | per round |",
        "|---|---|---|",
    ]
    for name in runs:
        lines.append(f"| {name} | {median(fps[name]):.1f} | {', '.join(f'{f:.1f}' for f in fps[name])} |")
    lines += ["", f"Bar: the faster of FP32 and INT8 in each round (over the rounds: {bar_name}, {bar:.1f} FPS).", "",
              "| picked by | what | benchmark_app FPS of the pick | pick / bar (median of rounds) |",
              "|---|---|---|---|",
              f"| `tune --models FP32,INT8 --data coco96 --max-drop 0.01` | {best.label} | "
              f"{tune_row['benchmark_app_fps']:.1f} | {tune_row['vs_bar']:.2f}x |"]
    if export_row:
        lines.append(f"| `export --precision auto --data coco96` | {export_row['chosen']} | "
                     f"{export_row['benchmark_app_fps']:.1f} | {export_row['vs_bar']:.2f}x |")
        if fq:
            lines += ["", "FakeQuantize operations: " + ", ".join(f"{k} {v}" for k, v in fq.items()) + "."]
    if result.accuracy:
        lines += ["", "mAP50-95 on coco96 (yolo_ov.eval.validate) per model and precision hint: " + "; ".join(
            f"{Path(a.model).name} {a.precision} {a.map50_95:.4f}" for a in result.accuracy)]
    _, md = write_results("precision", {"machine": info, "fps": fps, "bar": bar, "bars": bars,
                                        "tune": tune_row, "export_auto": export_row}, "\n".join(lines))
    print(md.read_text(encoding="utf-8"))


if __name__ == "__main__":
    main()
