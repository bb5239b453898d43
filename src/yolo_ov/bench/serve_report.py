"""The load sweep's outputs: rows for a table, perf_analyzer's CSV, markdown and a latency-throughput plot.

The CSV keeps the column names of ``perf_analyzer -f`` where a figure maps
(``Concurrency`` or ``Request Rate``, ``Inferences/Second``, ``Server Queue``,
``Server Compute Input/Infer/Output``, ``p50/p90/p95/p99 latency``, ``Avg
latency``; microseconds), so the spreadsheets and scripts made for
perf_analyzer read it; the client-side breakdown it also prints (``Client
Send``, ``Client Recv``) has no counterpart here and is left out. ``Protocol``,
``Errors`` and ``Stable`` are added at the end.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..errors import MissingExtraError, OutputError
from .serve_sweep import StepResult

__all__ = ["HEADERS", "csv_rows", "markdown_table", "table_rows", "write_csv", "write_plot"]

#: Column titles of :func:`table_rows` (the rich table and the markdown).
#: Latencies and the server's times in milliseconds here (the CSV and JSON keep perf_analyzer's microseconds).
HEADERS = ("protocol", "load", "infer/s", "p50 ms", "p90 ms", "p95 ms", "p99 ms", "avg ms",
           "server queue ms", "server compute ms in/infer/out", "errors", "stable")


def _ms(us: float) -> str:
    return f"{us / 1e3:.1f}" if np.isfinite(us) else "-"




def _load(step: StepResult) -> str:
    return f"c={step.value:g}" if step.load == "concurrency" else f"{step.value:g}/s"


def table_rows(steps: Sequence[StepResult]) -> list[list[str]]:
    """One row of strings per step, in :data:`HEADERS` order."""
    rows = []
    for s in steps:
        lat, srv = s.latency, s.server
        compute = "/".join(_ms(v) for v in (srv.compute_input_us, srv.compute_infer_us, srv.compute_output_us)) \
            if srv else "-"
        errors = ", ".join(f"{k}: {v}" for k, v in sorted(s.errors.items())) or "0"
        rows.append([s.protocol, _load(s), f"{s.throughput:.1f}", _ms(lat.p50_us), _ms(lat.p90_us), _ms(lat.p95_us),
                     _ms(lat.p99_us), _ms(lat.average_us), _ms(srv.queue_us) if srv else "-", compute, errors,
                     "yes" if s.stable else "no"])
    return rows


def markdown_table(steps: Sequence[StepResult]) -> str:
    lines = ["| " + " | ".join(HEADERS) + " |", "|" + "---|" * len(HEADERS)]
    lines += ["| " + " | ".join(row) + " |" for row in table_rows(steps)]
    return "\n".join(lines)


def csv_rows(steps: Sequence[StepResult]) -> list[dict[str, object]]:
    """perf_analyzer's ``-f`` columns where they map (microseconds), then Protocol, Errors and Stable."""
    rows: list[dict[str, object]] = []
    for s in steps:
        srv, lat = s.server, s.latency

        def us(v: float) -> object:
            return round(float(v)) if np.isfinite(v) else ""

        rows.append({
            ("Concurrency" if s.load == "concurrency" else "Request Rate"): f"{s.value:g}",
            "Inferences/Second": round(s.throughput, 3),
            "Server Queue": us(srv.queue_us) if srv else "",
            "Server Compute Input": us(srv.compute_input_us) if srv else "",
            "Server Compute Infer": us(srv.compute_infer_us) if srv else "",
            "Server Compute Output": us(srv.compute_output_us) if srv else "",
            "p50 latency": us(lat.p50_us), "p90 latency": us(lat.p90_us), "p95 latency": us(lat.p95_us),
            "p99 latency": us(lat.p99_us), "Avg latency": us(lat.average_us),
            "Protocol": s.protocol, "Errors": sum(s.errors.values()), "Stable": int(s.stable),
        })
    return rows


def write_csv(path: Path, steps: Sequence[StepResult]) -> Path:
    rows = csv_rows(steps)
    fields: list[str] = []
    for row in rows:
        fields += [k for k in row if k not in fields]
    try:
        with path.open("w", encoding="utf-8", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=fields)
            writer.writeheader()
            writer.writerows(rows)
    except OSError as exc:
        raise OutputError(f"--csv {path}: cannot write it ({exc.strerror or exc})") from None
    return path


def write_plot(path: Path, steps: Sequence[StepResult], title: str = "") -> Path:
    """p99 and p50 latency against throughput, one line per protocol (perf_analyzer's latency-throughput curve)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise MissingExtraError("matplotlib", "val", "the load sweep's plot (--plot)") from exc
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for protocol in dict.fromkeys(s.protocol for s in steps):
        mine = [s for s in steps if s.protocol == protocol]
        x = [s.throughput for s in mine]
        line, = ax.plot(x, [s.latency.p99_us / 1e3 for s in mine], marker="o", label=f"{protocol} p99")
        ax.plot(x, [s.latency.p50_us / 1e3 for s in mine], marker=".", linestyle="--", color=line.get_color(),
                label=f"{protocol} p50")
        for s in mine:
            ax.annotate(_load(s), (s.throughput, s.latency.p99_us / 1e3), textcoords="offset points",
                        xytext=(4, 4), fontsize=8)
    ax.set_xlabel("throughput (infer/s)")
    ax.set_ylabel("latency (ms)")
    ax.set_title(title or "load sweep: latency vs throughput")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    try:
        fig.savefig(path, dpi=110)
    except OSError as exc:
        raise OutputError(f"--plot {path}: cannot write it ({exc.strerror or exc})") from None
    finally:
        plt.close(fig)
    return path
