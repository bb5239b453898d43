"""``yolo-ov serve`` under load, against the in-process engine and a plain FastAPI + Ultralytics server.

One run, one machine, loopback only, every loop bounded in requests and time:

(a) **16 concurrent clients**, one coco96 JPEG per ``POST /predict``: server
    images/s against ``Detector.stream()`` in process over the same JPEG bytes
    (decode included on both sides; the stream at the model's own 640x640 input
    like ``submit()``, and with its default shape specialisation for reference).
    The peer, a FastAPI app around Ultralytics' ``YOLO(<openvino folder>).predict``
    (what most hand-written YOLO servers are), is measured the same way.
(b) **1 client**, one request at a time: median request latency of a
    ``--mode latency`` server against the in-process latency path
    (``Detector(mode="latency")(jpeg_bytes)``, decode included) on the same
    images; the throughput-mode server's single-client latency is reported too.
(c) **4x overload**: an open-loop client offering 4x the rate (a) measured to a
    server with a small ``--max-queue``: statuses (only 200 and 503 expected),
    every 200 checked against the in-process detections, server RSS growth, and
    the server's ``/metrics`` counts against what the client saw.

The client is an asyncio ``aiohttp`` client in this process (it shares the 2
cores with the server, as any loopback load test does). ``/proc/loadavg`` is
recorded before and after: other users of the machine show there.

Run:  flock /tmp/yolo-ov-bench.lock python benchmarks/bench_serve.py [--model fp32|int8] [--requests 384]
Writes benchmarks/results/serve.json and serve.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import machine_info, machine_line, percentile, write_results
from tests.assets import shared_assets
from tests.serve_support import ServerProcess, assert_same_detections, record_arrays

from yolo_ov import Detector
from yolo_ov.pipeline import PipelineConfig

CLIENTS = 16


# -- the client ---------------------------------------------------------------------------------
async def _closed_loop(url: str, payloads: list[bytes], n: int, clients: int, deadline_s: float) -> dict[str, Any]:
    """``clients`` callers, each sending the next image as soon as its last answer came; ``n`` requests at most."""
    import aiohttp

    latencies: list[float] = []
    statuses: dict[int, int] = {}
    records: list[tuple[int, Any]] = []
    counter = iter(range(n))
    stop = time.perf_counter() + deadline_s

    async def caller(session: aiohttp.ClientSession) -> None:
        for i in counter:
            if time.perf_counter() > stop:
                return
            body = payloads[i % len(payloads)]
            t0 = time.perf_counter()
            async with session.post(url, data=body, headers={"Content-Type": "image/jpeg"}) as r:
                payload = await r.read()
            latencies.append(time.perf_counter() - t0)
            statuses[r.status] = statuses.get(r.status, 0) + 1
            if r.status == 200:
                records.append((i % len(payloads), payload))

    connector = aiohttp.TCPConnector(limit=clients)
    timeout = aiohttp.ClientTimeout(total=120)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        t0 = time.perf_counter()
        await asyncio.gather(*(caller(session) for _ in range(clients)))
        wall = time.perf_counter() - t0
    done = sum(statuses.values())
    return {
        "requests": done, "clients": clients, "seconds": round(wall, 3),
        "images_per_s": round(statuses.get(200, 0) / wall, 2), "statuses": {str(k): v for k, v in statuses.items()},
        "latency_ms": _latency(latencies), "_records": records,
    }


async def _open_loop(url: str, payloads: list[bytes], rate: float, seconds: float) -> dict[str, Any]:
    """Requests started at a fixed ``rate`` for ``seconds`` whatever the answers (an overload is offered, not asked)."""
    import aiohttp

    statuses: dict[int, int] = {}
    retry_after: set[str] = set()
    records: list[tuple[int, Any]] = []
    latencies: list[float] = []
    errors: list[str] = []

    async def one(session: aiohttp.ClientSession, i: int) -> None:
        t0 = time.perf_counter()
        try:
            async with session.post(url, data=payloads[i % len(payloads)]) as r:
                payload = await r.read()
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            errors.append(type(exc).__name__)
            return
        latencies.append(time.perf_counter() - t0)
        statuses[r.status] = statuses.get(r.status, 0) + 1
        if r.status == 503:
            retry_after.add(r.headers.get("Retry-After", ""))
        elif r.status == 200:
            records.append((i % len(payloads), payload))

    n = int(rate * seconds)
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=120)) as session:
        t0 = time.perf_counter()
        tasks = []
        for i in range(n):
            delay = t0 + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.ensure_future(one(session, i)))
        offered_s = time.perf_counter() - t0
        await asyncio.gather(*tasks)
        wall = time.perf_counter() - t0
    return {
        "offered_rate": round(rate, 1), "offered_requests": n, "achieved_offer_rate": round(n / offered_s, 1),
        "seconds": round(wall, 3), "statuses": {str(k): v for k, v in statuses.items()},
        "retry_after": sorted(retry_after), "client_errors": errors, "latency_ms": _latency(latencies),
        "served_per_s": round(statuses.get(200, 0) / wall, 2), "_records": records,
    }


def _latency(values: list[float]) -> dict[str, float]:
    ms = [v * 1e3 for v in values]
    if not ms:
        return {}
    return {"median": round(statistics.median(ms), 2), "p90": round(percentile(ms, 90), 2),
            "p99": round(percentile(ms, 99), 2), "max": round(max(ms), 2)}


def _check_records(records: list[tuple[int, bytes]], reference: list[Any], names: list[str]) -> int:
    """Every 200 against the in-process detections (class + IoU); returns how many were checked."""
    for index, payload in records:
        want = reference[index]
        got = record_arrays(json.loads(payload))
        assert_same_detections(got, (want.xyxy.astype(np.float64), want.confidence.astype(np.float64),
                                     want.class_id.astype(np.int64)), where=names[index])
    return len(records)


# -- the server side --------------------------------------------------------------------------------
def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text(encoding="utf-8").splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _metrics(url: str) -> str:
    import urllib.request

    with urllib.request.urlopen(f"{url}/metrics", timeout=30) as r:
        return r.read().decode()


def _metric(text: str, metric: str, /, **labels: str) -> float:
    from prometheus_client.parser import text_string_to_metric_families

    return sum(s.value for f in text_string_to_metric_families(text) for s in f.samples
               if s.name == metric and all(s.labels.get(k) == v for k, v in labels.items()))


def _loadavg() -> list[float]:
    return [float(v) for v in Path("/proc/loadavg").read_text(encoding="utf-8").split()[:3]]


# -- the peer: FastAPI around Ultralytics' predict ---------------------------------------------------------
PEER_APP = '''
import sys, cv2, numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from ultralytics import YOLO

model = YOLO(sys.argv[1], task="detect")
model.predict(np.full((640, 640, 3), 114, np.uint8), imgsz=640, verbose=False)  # warm-up
app = FastAPI()

@app.post("/predict")
async def predict(request: Request):
    image = cv2.imdecode(np.frombuffer(await request.body(), np.uint8), cv2.IMREAD_COLOR)
    r = model.predict(image, imgsz=640, conf=0.25, iou=0.7, verbose=False)[0]
    b = r.boxes
    return JSONResponse({"width": image.shape[1], "height": image.shape[0], "detections": [
        {"box": [round(v, 2) for v in xyxy], "confidence": round(c, 5), "class_id": int(k),
         "class_name": r.names[int(k)]}
        for xyxy, c, k in zip(b.xyxy.tolist(), b.conf.tolist(), b.cls.tolist())]})

if __name__ == "__main__":
    import uvicorn
    sock = __import__("socket").socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(1024)  # listening before the line is printed: no refused first connection
    print(f"serving on http://127.0.0.1:{sock.getsockname()[1]} ", file=sys.stderr, flush=True)
    uvicorn.Server(uvicorn.Config(app, log_level="warning")).run(sockets=[sock])
'''


class PeerServer(ServerProcess):
    """The peer as a subprocess (torch and Ultralytics stay out of this process)."""

    def __init__(self, model: Path, script: Path) -> None:
        super().__init__([], cache_dir=Path(tempfile.gettempdir()))
        self.args = [sys.executable, str(script), str(model)]


# -- the run -------------------------------------------------------------------------------------------------
def stream_rate(det: Detector, payloads: list[bytes], n: int, specialize: str) -> float:
    """Images/s of ``det.stream()`` over ``n`` of the JPEG bytes (decode included)."""
    config = PipelineConfig(specialize=specialize)
    t0 = time.perf_counter()
    count = sum(1 for _ in det.stream([payloads[i % len(payloads)] for i in range(n)], config=config))
    return count / (time.perf_counter() - t0)


def latency_times(det: Detector, payloads: list[bytes]) -> list[float]:
    """Seconds per image of the latency path, one image at a time (decode included)."""
    times = []
    for p in payloads:
        t0 = time.perf_counter()
        det(p)
        times.append(time.perf_counter() - t0)
    return times


def _median_run(runs: list[dict[str, Any]], key: str = "images_per_s") -> dict[str, Any]:
    """The run with the median figure (its own statuses and latencies kept together)."""
    ordered = sorted(runs, key=lambda r: r[key])
    return {**ordered[len(ordered) // 2], "rounds": [r[key] for r in runs]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", choices=["fp32", "int8"], default="fp32")
    parser.add_argument("--requests", type=int, default=384, help="requests per closed-loop measurement (a)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds of (a) and (b); medians reported")
    parser.add_argument("--max-seconds", type=float, default=120, help="time bound of each measurement")
    parser.add_argument("--overload-seconds", type=float, default=10, help="how long (c) offers 4x the load")
    parser.add_argument("--overload-queue", type=int, default=4, help="--max-queue of the server in (c)")
    parser.add_argument("--no-peer", action="store_true", help="skip the FastAPI + Ultralytics peer")
    args = parser.parse_args()

    assets = shared_assets()
    model = assets.fp32_model if args.model == "fp32" else assets.int8_model
    paths = assets.coco96_images
    payloads = [p.read_bytes() for p in paths]
    names = [p.name for p in paths]
    cache = Path(tempfile.mkdtemp(prefix="yolo-ov-bench-serve-"))
    os.environ["YOLO_OV_CACHE_DIR"] = str(cache)
    info = machine_info()
    load_before = _loadavg()
    print(machine_line(info), "load", load_before, flush=True)
    with Detector(model, mode="throughput") as det:  # reference detections, the server's letterbox
        reference = [det.submit(p).result() for p in payloads]
    out: dict[str, Any] = {"model": args.model, "machine": info, "loadavg_before": load_before,
                           "clients": CLIENTS, "requests": args.requests, "rounds": args.rounds}

    # (a) throughput, in interleaved rounds: in-process stream (640x640 and specialised), then the server
    server = ServerProcess(["--model", str(model)], cache_dir=cache).start()
    streams_off, streams_auto, server_runs = [], [], []
    try:
        url = f"{server.url}/predict"
        asyncio.run(_closed_loop(url, payloads, 64, CLIENTS, args.max_seconds))  # warm the connections
        with Detector(model, mode="throughput") as det:
            list(det.stream(payloads[:16], config=PipelineConfig(specialize="off")))
            list(det.stream(payloads, config=PipelineConfig(specialize="auto")))  # compile its shapes
            for r in range(args.rounds):
                order = ("stream", "server") if r % 2 == 0 else ("server", "stream")
                for what in order:
                    if what == "stream":
                        streams_off.append(stream_rate(det, payloads, args.requests, "off"))
                        streams_auto.append(stream_rate(det, payloads, args.requests, "auto"))
                    else:
                        run = asyncio.run(_closed_loop(url, payloads, args.requests, CLIENTS, args.max_seconds))
                        run["checked"] = _check_records(run.pop("_records"), reference, names)
                        server_runs.append(run)
                print(f"(a) round {r + 1}: stream {streams_off[-1]:.1f} img/s (specialised {streams_auto[-1]:.1f}), "
                      f"server {server_runs[-1]['images_per_s']:.1f} img/s {server_runs[-1]['statuses']}", flush=True)
        one_thr = asyncio.run(_closed_loop(url, payloads, len(payloads), 1, args.max_seconds))
        one_thr.pop("_records")
        rss_a = _rss_mb(server.pid)
    finally:
        server_exit = server.stop()
    a = _median_run(server_runs)
    stream_off, stream_auto = statistics.median(streams_off), statistics.median(streams_auto)
    out["a"] = {"in_process_stream_640": round(stream_off, 2), "in_process_stream_specialised": round(stream_auto, 2),
                "stream_640_rounds": [round(v, 2) for v in streams_off],
                "stream_specialised_rounds": [round(v, 2) for v in streams_auto],
                "server": a, "server_statuses_all_rounds": [r["statuses"] for r in server_runs],
                "ratio_vs_stream_640": round(a["images_per_s"] / stream_off, 3),
                "ratio_vs_stream_specialised": round(a["images_per_s"] / stream_auto, 3),
                "server_rss_mb": round(rss_a, 1), "server_exit_code": server_exit,
                "single_client_throughput_server": one_thr}

    if not args.no_peer:
        with tempfile.TemporaryDirectory() as tmp:
            script = Path(tmp) / "peer_server.py"
            script.write_text(PEER_APP, encoding="utf-8")
            peer = PeerServer(model, script).start()
            try:
                peer_url = f"{peer.url}/predict"
                asyncio.run(_closed_loop(peer_url, payloads, 16, CLIENTS, args.max_seconds))
                p = asyncio.run(_closed_loop(peer_url, payloads, args.requests, CLIENTS, args.max_seconds))
                p["checked"] = _check_records(p.pop("_records"), reference, names)
            finally:
                peer.stop()
        out["a"]["peer_ultralytics_fastapi"] = p
        out["a"]["speedup_vs_peer"] = round(a["images_per_s"] / p["images_per_s"], 2)
        print(f"(a) peer: {p['images_per_s']:.1f} img/s, statuses {p['statuses']}", flush=True)

    # (b) one client, interleaved rounds: a latency-mode server against the in-process latency path
    server = ServerProcess(["--model", str(model), "--mode", "latency"], cache_dir=cache).start()
    local_times: list[float] = []
    server_b: list[dict[str, Any]] = []
    try:
        url = f"{server.url}/predict"
        asyncio.run(_closed_loop(url, payloads, 16, 1, args.max_seconds))
        with Detector(model, mode="latency") as det:
            latency_times(det, payloads[:8])
            for r in range(args.rounds):
                for what in (("local", "server") if r % 2 == 0 else ("server", "local")):
                    if what == "local":
                        local_times += latency_times(det, payloads)
                    else:
                        run = asyncio.run(_closed_loop(url, payloads, len(payloads), 1, args.max_seconds))
                        run["checked"] = _check_records(run.pop("_records"), reference, names)
                        server_b.append(run)
    finally:
        server.stop()
    lat = _latency(local_times)
    b = {**_median_run([{**r, "median": r["latency_ms"]["median"]} for r in server_b], key="median")}
    out["b"] = {"in_process_latency_ms": lat, "server": b,
                "median_difference_ms": round(b["latency_ms"]["median"] - lat["median"], 2)}
    print(f"(b) server median {b['latency_ms']['median']} ms vs in-process {lat['median']} ms", flush=True)

    # (c) 4x overload on a small queue
    server = ServerProcess(["--model", str(model), "--max-queue", str(args.overload_queue)], cache_dir=cache).start()
    try:
        url = f"{server.url}/predict"
        asyncio.run(_closed_loop(url, payloads, 32, CLIENTS, args.max_seconds))
        rss_before = _rss_mb(server.pid)
        before = _metrics(server.url)
        rate = 4 * a["images_per_s"]
        c = asyncio.run(_open_loop(url, payloads, rate, args.overload_seconds))
        time.sleep(0.5)
        after = _metrics(server.url)
        rss_after = _rss_mb(server.pid)
        c["checked"] = _check_records(c.pop("_records"), reference, names)

        def delta(metric: str, **labels: str) -> float:
            return _metric(after, metric, **labels) - _metric(before, metric, **labels)

        seen = c["statuses"]
        c["metrics"] = {
            "success": delta("yolo_ov_requests_success_total", endpoint="predict"),
            "fail_503": delta("yolo_ov_requests_fail_total", endpoint="predict", code="503"),
            "rejected": delta("yolo_ov_requests_rejected_total"),
            "request_time_count": delta("yolo_ov_request_time_us_count", endpoint="predict"),
            "images": delta("yolo_ov_images_total"),
            "images_in_queue_after": _metric(after, "yolo_ov_images_in_queue"),
            "current_requests_after": _metric(after, "yolo_ov_current_requests"),
        }
        m = c["metrics"]
        c["metrics_add_up"] = (m["success"] == seen.get("200", 0) == m["images"]
                               and m["fail_503"] == m["rejected"] == seen.get("503", 0)
                               and m["request_time_count"] == sum(seen.values())
                               and m["images_in_queue_after"] == 0 and m["current_requests_after"] == 0)
        c["only_200_and_503"] = set(seen) <= {"200", "503"} and not c["client_errors"]
        c["rss_mb_before"], c["rss_mb_after"] = round(rss_before, 1), round(rss_after, 1)
        c["rss_growth_mb"] = round(rss_after - rss_before, 1)
        c["max_queue"] = args.overload_queue
    finally:
        server.stop()
    out["c"] = c
    print(f"(c) offered {c['offered_rate']}/s: {c['statuses']}, RSS +{c['rss_growth_mb']} MB, "
          f"metrics add up: {c['metrics_add_up']}", flush=True)

    out["loadavg_after"] = _loadavg()
    out["verdict"] = {
        "a_ratio_at_least_0.8": out["a"]["ratio_vs_stream_640"] >= 0.8 and set(a["statuses"]) == {"200"},
        "b_within_5ms": abs(out["b"]["median_difference_ms"]) <= 5,
        "c_only_503_beyond_capacity": c["only_200_and_503"],
        "c_rss_growth_under_100mb": c["rss_growth_mb"] < 100,
        "c_metrics_add_up": c["metrics_add_up"],
    }
    write_results("serve", out, _markdown(out, args))
    print(json.dumps(out["verdict"]), "load after", out["loadavg_after"])


def _markdown(out: dict[str, Any], args: argparse.Namespace) -> str:
    a, b, c = out["a"], out["b"], out["c"]
    one = a["single_client_throughput_server"]["latency_ms"]
    peer = a.get("peer_ultralytics_fastapi")
    lines = [
        f"# yolo-ov serve under load ({out['model'].upper()} model)",
        "",
        machine_line(out["machine"]),
        f"Load average (1/5/15 min) before: {out['loadavg_before']}, after: {out['loadavg_after']}.",
        "",
        *_busy_note(out),
        f"Command: `python benchmarks/bench_serve.py --model {out['model']} --requests {args.requests} "
        f"--rounds {args.rounds}` (medians of {args.rounds} interleaved rounds for (a) and (b))",
        "",
        f"**(a) {out['clients']} concurrent clients**, one coco96 JPEG per `POST /predict`, {a['server']['requests']} "
        "requests:",
        "",
        "| | images/s | median ms | p90 ms | statuses |",
        "|---|---|---|---|---|",
        f"| yolo-ov serve (throughput) | {a['server']['images_per_s']} | {a['server']['latency_ms']['median']} | "
        f"{a['server']['latency_ms']['p90']} | {a['server']['statuses']} |",
        f"| in-process `Detector.stream()`, 640x640 (as `submit()`) | {a['in_process_stream_640']} | | | |",
        f"| in-process `Detector.stream()`, shape specialisation | {a['in_process_stream_specialised']} | | | |",
    ]
    if peer:
        lines.append(f"| FastAPI + Ultralytics `YOLO.predict` (peer) | {peer['images_per_s']} | "
                     f"{peer['latency_ms']['median']} | {peer['latency_ms']['p90']} | {peer['statuses']} |")
    lines += [
        "",
        f"Server / in-process stream at 640x640: **{a['ratio_vs_stream_640']}x** (target >= 0.8x); "
        f"vs the specialised stream: {a['ratio_vs_stream_specialised']}x"
        + (f"; vs the peer: **{a['speedup_vs_peer']}x**." if peer else "."),
        f"Rounds (images/s): server {a['server']['rounds']}, stream at 640x640 {a['stream_640_rounds']}, "
        f"specialised {a['stream_specialised_rounds']}. Every 200 of the median round checked against the "
        f"in-process detections ({a['server']['checked']} responses; every round is checked).",
        "",
        "**(b) 1 client**, one request at a time over the 96 images:",
        "",
        "| | median ms | p90 ms |",
        "|---|---|---|",
        f"| yolo-ov serve --mode latency | {b['server']['latency_ms']['median']} | "
        f"{b['server']['latency_ms']['p90']} |",
        f"| in-process latency path (decode included) | {b['in_process_latency_ms']['median']} | "
        f"{b['in_process_latency_ms']['p90']} |",
        f"| yolo-ov serve (throughput mode), 1 client | {one['median']} | {one['p90']} |",
        "",
        f"Difference of medians (latency-mode server - in process): **{b['median_difference_ms']} ms** "
        f"(target within 5); the server's median per round: {b['server']['rounds']} ms.",
        "",
        f"**(c) 4x overload**: {c['offered_requests']} requests offered at {c['offered_rate']}/s "
        f"(achieved {c['achieved_offer_rate']}/s) to a server with `--max-queue {c['max_queue']}`:",
        "",
        f"- statuses: {c['statuses']} (Retry-After {c['retry_after']}); client errors: {len(c['client_errors'])}; "
        f"served {c['served_per_s']} images/s during the overload",
        f"- every 200 correct: {c['checked']} checked against the in-process detections",
        f"- server RSS {c['rss_mb_before']} -> {c['rss_mb_after']} MB (**{c['rss_growth_mb']:+} MB**, target < 100)",
        f"- `/metrics` deltas {c['metrics']}: add up with the client's counts: **{c['metrics_add_up']}**",
        "",
        f"Verdict: {out['verdict']}",
    ]
    return "\n".join(lines)


def _busy_note(out: dict[str, Any]) -> list[str]:
    cores = int(out["machine"].get("cores") or os.cpu_count() or 1)
    load = max(out["loadavg_before"][0], out["loadavg_after"][0])
    if load <= cores:
        return []
    return [f"**The machine was shared during this run** (load average {load:.1f} on {cores} cores, other "
            "sessions' tests and benchmarks): absolute figures are a fraction of a quiet machine's and single "
            "measurements are noisy; (a) and (b) interleave their rounds so each comparison saw the same load, "
            "but the 1-client latency difference in (b) is scheduling noise at this load, not the server's cost.", ""]


if __name__ == "__main__":
    main()
