"""Human-readable output of a bench run: a markdown summary and PNG plots."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..errors import MissingExtraError
from .runner import BenchReport

__all__ = ["markdown_summary", "write_report", "write_tune_report"]


def markdown_summary(report: BenchReport) -> str:
    """The bench figures as markdown tables (also what the CLI prints)."""
    m = report.machine
    lines = [
        f"# yolo-ov bench: {Path(report.model).name}",
        "",
        f"Device {report.device}; {m['cpu']}, {m['cores']} cores; OpenVINO {m['openvino'].split('-')[0]}; "
        f"process threads {m['process_threads']}; CPU used by other processes before the run "
        f"{_percent(m.get('other_cpu_busy'))}; end-to-end inputs: {report.source}; "
        f"{report.duration_s:g} s per measurement.",
        "",
        "| mode | what | FPS | median ms | avg ms | min ms | max ms | p90 ms | p99 ms | iterations | requests |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in report.modes:
        for meas in (r.model_only, r.end_to_end):
            lat = meas.latency
            lines.append(
                f"| {r.mode} | {meas.kind.replace('_', ' ')} | {meas.fps:.1f} | {lat.median_ms:.2f} | "
                f"{lat.average_ms:.2f} | {lat.min_ms:.2f} | {lat.max_ms:.2f} | {lat.p90_ms:.2f} | "
                f"{lat.p99_ms:.2f} | {meas.iterations} | {meas.requests} |"
            )
    lines += ["", "| mode | streams | optimal requests | precision | threads | execution devices | read ms | "
              "compile ms | first inference ms | host overhead (model FPS / end-to-end FPS) |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    for r in report.modes:
        c, ld = r.compiled, r.load
        lines.append(
            f"| {r.mode} | {c['num_streams']} | {c['optimal_requests']} | {c['inference_precision']} | "
            f"{c['inference_threads']} | {', '.join(c['execution_devices'])} | {ld['read_ms']:.1f} | "
            f"{ld['compile_ms']:.1f} | {ld['first_inference_ms']:.1f} | {r.host_overhead_ratio:.2f}x |"
        )
    if report.startup:
        lines += ["", "Start-up (fresh process; read + compile + first inference, median of "
                  f"{report.startup[0].repeats}):", "",
                  "| scenario | read ms | compile ms | first inference ms | total ms |", "|---|---|---|---|---|"]
        for s in report.startup:
            lines.append(f"| {s.scenario} | {s.read_ms:.1f} | {s.compile_ms:.1f} | {s.first_inference_ms:.1f} | "
                         f"{s.total_ms:.1f} |")
        cold = next((s for s in report.startup if s.cache == "cold" and s.mmap), None)
        warm = next((s for s in report.startup if s.cache == "cached" and s.mmap), None)
        if cold and warm and warm.total_ms > 0:
            lines += ["", f"Cached start is {cold.total_ms / warm.total_ms:.2f}x faster than cold (mmap on)."]
    if report.requests_sweep:
        lines += ["", "Model-only throughput vs requests in flight:", "", "| requests | FPS | median ms |",
                  "|---|---|---|"]
        lines += [f"| {m.requests} | {m.fps:.1f} | {m.latency.median_ms:.2f} |" for m in report.requests_sweep]
    if report.notes:
        lines += ["", *[f"- {n}" for n in report.notes]]
    return "\n".join(lines) + "\n"


def _percent(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.0%}"


def _pyplot() -> Any:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise MissingExtraError("matplotlib", "val", "Writing bench plots") from exc
    return plt


def write_report(report: BenchReport, folder: str | Path) -> list[Path]:
    """Write ``bench.md``, ``bench.json`` and PNG plots into ``folder``; return the files."""
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    files = [out / "bench.md", out / "bench.json"]
    files[0].write_text(markdown_summary(report), encoding="utf-8")
    files[1].write_text(json.dumps(report.to_dict(), indent=2) + "\n", encoding="utf-8")
    plt = _pyplot()

    fig, ax = plt.subplots(figsize=(7, 4))
    data = [m.samples_ms for r in report.modes for m in (r.model_only, r.end_to_end) if m.samples_ms]
    labels = [f"{r.mode}\n{m.kind.replace('_', ' ')}" for r in report.modes for m in (r.model_only, r.end_to_end)
              if m.samples_ms]
    if data:
        ax.boxplot(data, showfliers=False)
        ax.set_xticks(range(1, len(labels) + 1), labels, fontsize=8)
    ax.set_ylabel("latency per request / image (ms)")
    ax.set_title("Latency distribution per mode (whiskers 1.5 IQR, outliers hidden)")
    fig.tight_layout()
    files.append(out / "latency_distribution.png")
    fig.savefig(files[-1], dpi=100)
    plt.close(fig)

    if report.requests_sweep:
        fig, ax = plt.subplots(figsize=(6, 4))
        ax.plot([m.requests for m in report.requests_sweep], [m.fps for m in report.requests_sweep], "o-")
        ax.set_xlabel("requests in flight")
        ax.set_ylabel("model-only FPS")
        ax.set_title("Throughput vs requests in flight")
        ax.grid(alpha=0.3)
        fig.tight_layout()
        files.append(out / "throughput_vs_requests.png")
        fig.savefig(files[-1], dpi=100)
        plt.close(fig)
    return files


def write_tune_report(result: Any, folder: str | Path) -> list[Path]:
    """Write ``tune.md`` and ``tune_sweep.png`` (throughput vs latency of every candidate)."""
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    rows = ["| configuration | FPS | median ms | p90 ms |", "|---|---|---|---|"]
    measured = [c for c in result.candidates if c.measurement is not None]
    for c in measured:
        m = c.measurement
        rows.append(f"| {c.label} | {m.fps:.1f} | {m.latency.median_ms:.2f} | {m.latency.p90_ms:.2f} |")
    best = result.best
    text = [f"# yolo-ov tune (target {result.target})", "", *rows, "",
            f"Best: {best.label} ({best.measurement.fps:.1f} FPS, p90 {best.measurement.latency.p90_ms:.2f} ms)."]
    if result.baseline.measurement is not None:
        text.append(f"The hint's own choice: {result.baseline.measurement.fps:.1f} FPS.")
    files = [out / "tune.md"]
    files[0].write_text("\n".join(text) + "\n", encoding="utf-8")
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.scatter([c.measurement.latency.median_ms for c in measured], [c.measurement.fps for c in measured],
               label="candidates")
    ax.scatter([best.measurement.latency.median_ms], [best.measurement.fps], color="red", label="best")
    if result.max_latency_ms:
        ax.axvline(result.max_latency_ms, color="grey", linestyle="--", label="latency bound (p90)")
    ax.set_xlabel("median latency per request (ms)")
    ax.set_ylabel("model-only FPS")
    ax.set_title("Tuning sweep: throughput vs latency")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    files.append(out / "tune_sweep.png")
    fig.savefig(files[-1], dpi=100)
    plt.close(fig)
    return files
