"""``yolo-ov serve`` measured as Triton's and OVMS's users measure it: a perf_analyzer-style concurrency sweep.

One run, one machine, loopback only:

* a real ``yolo-ov serve`` process (throughput mode, the shared yolov8n FP32 IR,
  REST and ``--grpc-port``);
* the load sweep of ``yolo-ov bench-serve`` (:mod:`yolo_ov.bench.serve_sweep`) at
  concurrency 1, 2, 4, 8, 16 over HTTP and over gRPC, one coco96 JPEG per
  request (``BYTES``), each step in windows until its throughput and p99 are
  stable (perf_analyzer's rule), with the server's queue and compute time from
  the statistics extension;
* the in-process ``Detector.submit()`` rate on the same JPEG bytes (decode
  included, 8 caller threads, as ``bench_submit.py`` and a server's handlers
  call it), in the same run, interleaved with the sweeps.

Ratios: concurrency-8 throughput / ``submit()`` (bar >= 0.85) per protocol, and
gRPC / HTTP at each concurrency (bar >= 1 at 8). The client is this process:
tritonclient's asyncio clients in one event loop (one core at most), sharing
the machine with the server as any loopback load test does.

Run:  flock /tmp/yolo-ov-bench.lock python benchmarks/bench_serve_sweep.py [--window-ms 2000] [--rounds 1]
Writes benchmarks/results/serve_sweep.json, serve_sweep.md and plots/serve_sweep.png.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.bench_submit import CALLERS, submit_rate  # the same submit() rate as bench_submit.py
from benchmarks.common import RESULTS, machine_info, machine_line, write_results
from tests.assets import shared_assets
from tests.serve_support import ServerProcess

from yolo_ov import Detector
from yolo_ov.bench.serve_report import markdown_table, write_plot
from yolo_ov.bench.serve_sweep import StepResult, SweepConfig, run_sweep

BAR_C8_OVER_SUBMIT = 0.85
BAR_GRPC_OVER_HTTP = 1.0


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far (all its threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text(encoding="utf-8").rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _served(url: str, model: str) -> int:
    """Successful requests the server has counted for ``model`` (its statistics extension)."""
    import urllib.request

    with urllib.request.urlopen(f"http://{url}/v2/models/{model}/stats", timeout=30) as r:
        return int(json.loads(r.read())["model_stats"][0]["inference_stats"]["success"]["count"])


def _loadavg() -> list[float]:
    return [float(v) for v in Path("/proc/loadavg").read_text(encoding="utf-8").split()[:3]]


def _at(steps: list[StepResult], protocol: str, concurrency: float) -> StepResult | None:
    return next((s for s in steps if s.protocol == protocol and s.value == concurrency), None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--concurrency", default="1,2,4,8,16")
    parser.add_argument("--window-ms", type=float, default=2000.0, help="perf_analyzer's --measurement-interval")
    parser.add_argument("--max-windows", type=int, default=10)
    parser.add_argument("--stability", type=float, default=0.10)
    parser.add_argument("--rounds", type=int, default=1, help="sweeps per protocol, interleaved with submit()")
    parser.add_argument("--submit-images", type=int, default=384, help="images per submit() measurement")
    args = parser.parse_args()

    assets = shared_assets()
    model = assets.fp32_model
    payloads = [p.read_bytes() for p in assets.coco96_images]
    cache = Path(tempfile.mkdtemp(prefix="yolo-ov-bench-sweep-"))
    os.environ["YOLO_OV_CACHE_DIR"] = str(cache)
    info = machine_info()
    load_before = _loadavg()
    print(machine_line(info), "load", load_before, flush=True)
    concurrency = tuple(int(c) for c in args.concurrency.split(","))

    server = ServerProcess(["--model", str(model), "--grpc-port", "0"], cache_dir=cache).start()
    rounds: list[dict[str, Any]] = []
    submits: list[float] = []
    try:
        found = re.search(r"gRPC on (\S+:\d+) ", server.output())
        if not found:
            raise SystemExit("the server printed no gRPC address:\n" + server.output())
        addresses = {"http": server.host_port, "grpc": found.group(1)}
        models_line = next((ln.strip() for ln in server.output().splitlines() if "streams" in ln), "")
        with Detector(model, mode="throughput") as det:
            [f.result() for f in [det.submit(p) for p in payloads[:16]]]  # warm-up
            for r in range(args.rounds):
                order = ("http", "grpc") if r % 2 == 0 else ("grpc", "http")
                steps: list[StepResult] = []
                submits.append(submit_rate(det, payloads, args.submit_images))
                print(f"round {r + 1}: submit() x{CALLERS} {submits[-1]:.1f} img/s", flush=True)
                cpu: dict[str, dict[str, float]] = {}
                for protocol in order:
                    name = model.name.removesuffix("_openvino_model")
                    config = SweepConfig(url=addresses[protocol], model=name,
                                         protocol=protocol, concurrency=concurrency, window_ms=args.window_ms,
                                         max_windows=args.max_windows, stability=args.stability)
                    server_cpu, client_cpu, served = _cpu_s(server.pid), time.process_time(), _served(
                        addresses["http"], name)
                    report = run_sweep(config, payloads)
                    n = max(1, _served(addresses["http"], name) - served)
                    # CPU per answered request over the whole sweep: the server process (transport, decode,
                    # letterbox, inference, head) and this client process (tritonclient, the event loop)
                    cpu[protocol] = {"requests": n,
                                     "server_cpu_ms_per_request": round((_cpu_s(server.pid) - server_cpu) / n * 1e3, 2),
                                     "client_cpu_ms_per_request": round((time.process_time() - client_cpu) / n * 1e3,
                                                                        2)}
                    steps += report.steps
                    for s in report.steps:
                        print(f"round {r + 1}: {protocol} c={s.value:g} {s.throughput:.1f} infer/s, "
                              f"p99 {s.latency.p99_us / 1e3:.1f} ms, stable {s.stable}, {s.statuses}", flush=True)
                submits.append(submit_rate(det, payloads, args.submit_images))
                print(f"round {r + 1}: submit() x{CALLERS} {submits[-1]:.1f} img/s", flush=True)
                rounds.append({"steps": steps, "cpu": cpu})
                print(f"round {r + 1}: CPU per request {cpu}", flush=True)
    finally:
        exit_code = server.stop()
    # the round whose gRPC c=8 throughput is the median keeps its own steps together in the table; the ratios
    # are medians over the rounds (each round's gRPC / HTTP from the same round, the protocols' order alternating)
    ranked = sorted(rounds, key=lambda r: (_at(r["steps"], "grpc", 8) or r["steps"][0]).throughput)
    chosen_round = ranked[len(ranked) // 2]
    chosen: list[StepResult] = chosen_round["steps"]
    submit = statistics.median(submits)
    ratios: dict[str, Any] = {}
    for protocol in ("http", "grpc"):
        per_round = [s8.throughput / submit for r in rounds if (s8 := _at(r["steps"], protocol, 8))]
        if per_round:
            ratios[f"{protocol}_c8_over_submit"] = round(statistics.median(per_round), 3)
    ratios["grpc_over_http"] = {}
    for c in concurrency:
        per_round = [g.throughput / h.throughput for r in rounds
                     if (g := _at(r["steps"], "grpc", c)) and (h := _at(r["steps"], "http", c)) and h.throughput]
        if per_round:
            ratios["grpc_over_http"][f"c={c}"] = round(statistics.median(per_round), 3)
    load_after = _loadavg()
    verdict = {
        "every_request_ok": all(not s.errors for r in rounds for s in r["steps"]),
        "c8_at_least_0.85x_submit": {p: ratios.get(f"{p}_c8_over_submit", 0) >= BAR_C8_OVER_SUBMIT
                                     for p in ("http", "grpc")},
        "grpc_at_least_http_at_c8": ratios["grpc_over_http"].get("c=8", 0) >= BAR_GRPC_OVER_HTTP,
    }
    out = {"model": model.name, "machine": info, "server": models_line, "loadavg_before": load_before,
           "loadavg_after": load_after, "window_ms": args.window_ms, "max_windows": args.max_windows,
           "stability": args.stability, "rounds": args.rounds, "submit_callers": CALLERS,
           "submit_images_per_s": [round(v, 2) for v in submits], "submit_median": round(submit, 2),
           "steps": [s.to_dict() for s in chosen], "cpu_per_request": [r["cpu"] for r in rounds],
           "all_rounds": [[s.to_dict() for s in r["steps"]] for r in rounds],
           "ratios": ratios, "verdict": verdict, "server_exit_code": exit_code}
    plot = RESULTS / "plots" / "serve_sweep.png"
    try:
        plot.parent.mkdir(parents=True, exist_ok=True)
        write_plot(plot, chosen, title=f"yolo-ov serve, {model.name} (FP32 IR): latency vs throughput")
        out["plot"] = str(plot.relative_to(RESULTS))
    except Exception as exc:  # matplotlib missing: the table is the result
        print(f"no plot: {exc}", flush=True)
    write_results("serve_sweep", out, _markdown(out, chosen, args))
    print(json.dumps({"ratios": ratios, "verdict": verdict}), "load after", load_after)


def _markdown(out: dict[str, Any], steps: list[StepResult], args: argparse.Namespace) -> str:
    r = out["ratios"]
    cores = int(out["machine"].get("cores") or os.cpu_count() or 1)
    load = max(out["loadavg_before"][0], out["loadavg_after"][0])
    busy = [f"**The machine was shared during this run** (load average {load:.1f} on {cores} cores): the figures "
            "are a fraction of a quiet machine's and the ratios noisy.", ""] if load > cores else []
    short = [f"Short windows ({args.window_ms:g} ms): this run proves the benchmark, it is not the measurement "
             "(perf_analyzer's default window is 5000 ms; the script's is 2000).", ""] \
        if args.window_ms < 2000 else []
    lines = [
        "# yolo-ov serve: the load sweep (perf_analyzer-style), HTTP and gRPC",
        "",
        machine_line(out["machine"]),
        f"Load average (1/5/15 min) before: {out['loadavg_before']}, after: {out['loadavg_after']}.",
        f"Server: `yolo-ov serve --model {out['model']} --grpc-port 0` (throughput mode; {out['server']}).",
        "",
        *busy,
        *short,
        f"Command: `python benchmarks/bench_serve_sweep.py --window-ms {args.window_ms:g} --max-windows "
        f"{args.max_windows} --rounds {args.rounds}`. One coco96 JPEG per request (`BYTES`), closed loop; each step "
        f"in windows of {args.window_ms:g} ms until the last 3 windows' throughput and p99 are within "
        f"{args.stability:.0%} of their average (at most {args.max_windows} windows; 'stable no' when it never "
        "was); figures are those 3 windows merged. Server queue and compute: deltas of the statistics extension "
        "per request (compute = decode + letterbox / device / head).",
        "",
        markdown_table(steps),
        "",
        f"In-process `Detector.submit()` on the same JPEG bytes, {CALLERS} caller threads (decode included): "
        f"**{out['submit_median']} img/s** (each measurement: {out['submit_images_per_s']}).",
        "",
        f"Ratios: medians over the {out['rounds']} round(s).",
        "",
        "| ratio | value | bar |",
        "|---|---|---|",
        f"| HTTP, concurrency 8 / submit() | {r.get('http_c8_over_submit', '-')} | >= {BAR_C8_OVER_SUBMIT} |",
        f"| gRPC, concurrency 8 / submit() | {r.get('grpc_c8_over_submit', '-')} | >= {BAR_C8_OVER_SUBMIT} |",
        f"| gRPC / HTTP throughput | {', '.join(f'{k}: {v}' for k, v in r['grpc_over_http'].items())} | "
        f">= {BAR_GRPC_OVER_HTTP} at c=8 |",
        "",
        "",
        "Where the time goes, per protocol at each step of that round: client latency minus the server's own time "
        "(`success` of the statistics extension) is the transport and the client; CPU per answered request over a "
        "whole sweep, of the server process and of this client process (2 cores hold both):",
        "",
        "| protocol | load | client avg ms | server avg ms | transport + client ms |",
        "|---|---|---|---|---|",
        *[f"| {s.protocol} | c={s.value:g} | {s.latency.average_us / 1e3:.1f} | {s.server.request_us / 1e3:.1f} | "
          f"{(s.latency.average_us - s.server.request_us) / 1e3:.2f} |" for s in steps if s.server],
        "",
        "| round | protocol | requests | server CPU ms / request | client CPU ms / request |",
        "|---|---|---|---|---|",
        *[f"| {i + 1} | {p} | {c['requests']} | {c['server_cpu_ms_per_request']} | {c['client_cpu_ms_per_request']} |"
          for i, cpu in enumerate(out["cpu_per_request"]) for p, c in cpu.items()],
        "",
        f"Verdict: {out['verdict']}",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
