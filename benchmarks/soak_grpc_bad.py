"""10,000 bad gRPC requests against a real ``yolo-ov serve``: each gets its status, and nothing leaks.

Eight kinds of bad request, in turn, over ``tritonclient.grpc`` to a real
``yolo-ov serve --grpc-port`` process (the shared yolov8n FP32 IR, with
``--api-key-env`` so a missing key can be tried, and ``--max-body-mb 0.5`` so an
oversize message is small to send):

=====================  ==================================================  ====================
kind                   what is sent                                        expected status
=====================  ==================================================  ====================
wrong_datatype         ``image`` as FP32                                   INVALID_ARGUMENT
wrong_shape            ``UINT8 [1, 8, 8, 4]`` (four channels)              INVALID_ARGUMENT
oversize_message       a 0.6 MB ``UINT8`` frame over ``--max-body-mb 0.5``  RESOURCE_EXHAUSTED
unknown_model          model ``nope``                                      NOT_FOUND
unknown_version        version ``9`` of the model                          NOT_FOUND
expired_deadline       a real JPEG with a 2 ms gRPC deadline               DEADLINE_EXCEEDED
missing_api_key        a real JPEG without ``authorization``               UNAUTHENTICATED
corrupt_jpeg           a coco96 JPEG with a corrupt header, or cut short   INVALID_ARGUMENT
=====================  ==================================================  ====================

Every status is counted by kind; the server's RSS and thread count are read
from ``/proc/PID/status`` every 1,000 requests. Pass: every request got its
expected status with a one-line message, RSS grew < 20 MB after the first
1,000 (warm-up), the thread count came back to where it was, and the server
still answers a good request correctly and exits 0 on SIGTERM.

Run:  flock /tmp/yolo-ov-bench.lock python benchmarks/soak_grpc_bad.py [--requests 10000] [--threads 4]
Writes benchmarks/results/soak_grpc_bad.json and soak_grpc_bad.md.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import machine_info, machine_line, write_results
from tests.assets import shared_assets
from tests.serve_support import ServerProcess

KEY_ENV = "YOLO_OV_SOAK_KEY"
KEY = "soak-key-0123456789abcdef"
EXPECTED = {
    "wrong_datatype": "INVALID_ARGUMENT", "wrong_shape": "INVALID_ARGUMENT", "oversize_message": "RESOURCE_EXHAUSTED",
    "unknown_model": "NOT_FOUND", "unknown_version": "NOT_FOUND", "expired_deadline": "DEADLINE_EXCEEDED",
    "missing_api_key": "UNAUTHENTICATED", "corrupt_jpeg": "INVALID_ARGUMENT",
}
GROWTH_BAR_MB = 20.0


def _proc_status(pid: int) -> dict[str, float]:
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text(encoding="utf-8").splitlines():
        if line.startswith("VmRSS:"):
            out["rss_mb"] = int(line.split()[1]) / 1024
        elif line.startswith("Threads:"):
            out["threads"] = int(line.split()[1])
    return out


def _calls(grpcclient: Any, model: str, jpeg: bytes) -> dict[str, Callable[[Any], Any]]:
    auth = {"authorization": f"Bearer {KEY}"}

    def inp(datatype: str, array: np.ndarray) -> Any:
        i = grpcclient.InferInput("image", list(array.shape), datatype)
        i.set_data_from_numpy(array)
        return i

    fp32 = np.zeros(1, np.float32)
    four = np.zeros((1, 8, 8, 4), np.uint8)
    big = np.zeros((1, 400, 500, 3), np.uint8)  # 0.6 MB
    good = np.array([jpeg], dtype=np.object_)
    sos = jpeg.find(b"\xff\xda")
    corrupt = [jpeg[:4] + b"\x00" * 16 + jpeg[20:], jpeg[: sos + 64]]  # a broken segment length; cut in the scan
    count = iter(range(1 << 62))
    return {
        "wrong_datatype": lambda c: c.infer(model, [inp("FP32", fp32)], headers=auth),
        "wrong_shape": lambda c: c.infer(model, [inp("UINT8", four)], headers=auth),
        "oversize_message": lambda c: c.infer(model, [inp("UINT8", big)], headers=auth),
        "unknown_model": lambda c: c.infer("nope", [inp("BYTES", good)], headers=auth),
        "unknown_version": lambda c: c.infer(model, [inp("BYTES", good)], model_version="9", headers=auth),
        "expired_deadline": lambda c: c.infer(model, [inp("BYTES", good)], headers=auth, client_timeout=0.002),
        "missing_api_key": lambda c: c.infer(model, [inp("BYTES", good)]),
        "corrupt_jpeg": lambda c: c.infer(model, [inp("BYTES", np.array([corrupt[next(count) % 2]],
                                                                        dtype=np.object_))], headers=auth),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--threads", type=int, default=4, help="client threads, each with its own channel")
    parser.add_argument("--sample-every", type=int, default=1000)
    args = parser.parse_args()
    import tritonclient.grpc as grpcclient

    assets = shared_assets()
    model_dir = assets.fp32_model
    jpeg = assets.coco96_images[0].read_bytes()
    cache = Path(tempfile.mkdtemp(prefix="yolo-ov-soak-"))
    info = machine_info()
    print(machine_line(info), flush=True)
    server = ServerProcess(["--model", str(model_dir), "--grpc-port", "0", "--api-key-env", KEY_ENV,
                            "--max-body-mb", "0.5"], cache_dir=cache, env={KEY_ENV: KEY}).start()
    counts: dict[str, Counter[str]] = {k: Counter() for k in EXPECTED}
    wrong: list[str] = []
    samples: list[dict[str, Any]] = []
    try:
        found = re.search(r"gRPC on (\S+:\d+) ", server.output())
        assert found, server.output()
        address, model = found.group(1), model_dir.name.removesuffix("_openvino_model")
        calls = _calls(grpcclient, model, jpeg)
        kinds = list(EXPECTED)
        clients = [grpcclient.InferenceServerClient(address) for _ in range(args.threads)]

        def one(i: int) -> tuple[str, str, str]:
            kind = kinds[i % len(kinds)]
            try:
                calls[kind](clients[i % len(clients)])
            except grpcclient.InferenceServerException as exc:
                return kind, str(exc.status()).removeprefix("StatusCode."), exc.message() or ""
            return kind, "OK", ""

        samples.append({"requests": 0, **_proc_status(server.pid), "seconds": 0.0})
        t0 = time.perf_counter()
        with ThreadPoolExecutor(args.threads) as pool:
            for start in range(0, args.requests, args.sample_every):
                batch = range(start, min(start + args.sample_every, args.requests))
                for kind, status, message in pool.map(one, batch):
                    counts[kind][status] += 1
                    bad = status != EXPECTED[kind] or "\n" in message or "Traceback" in message
                    if bad and len(wrong) < 20:
                        wrong.append(f"{kind}: {status} {message[:200]!r}")
                samples.append({"requests": batch.stop, **_proc_status(server.pid),
                                "seconds": round(time.perf_counter() - t0, 1)})
                print(f"{batch.stop} requests, {samples[-1]}", flush=True)
        time.sleep(1.0)  # calls cancelled by their deadline finish inside the server
        settled = _proc_status(server.pid)
        good = grpcclient.InferInput("image", [1], "BYTES")
        good.set_data_from_numpy(np.array([jpeg], dtype=np.object_))
        answer = clients[0].infer(model, [good], headers={"authorization": f"Bearer {KEY}"}, client_timeout=60)
        still_serving = int(answer.as_numpy("num_detections")[0]) > 0
        for c in clients:
            c.close()
    finally:
        exit_code = server.stop()
    log = server.output().splitlines()
    warm = samples[1]
    peak = max(s["rss_mb"] for s in samples[1:])
    out = {
        "machine": info, "requests": args.requests, "threads": args.threads, "seconds": samples[-1]["seconds"],
        "expected": EXPECTED, "statuses": {k: dict(v) for k, v in counts.items()},
        "all_expected": not wrong, "unexpected_examples": wrong, "samples": samples, "settled": settled,
        "rss_growth_after_warmup_mb": round(peak - warm["rss_mb"], 1),
        "rss_end_minus_warmup_mb": round(settled["rss_mb"] - warm["rss_mb"], 1),
        "threads_at_warmup": warm["threads"], "threads_at_end": settled["threads"],
        "threads_max": max(s["threads"] for s in samples), "still_serving": still_serving,
        "server_exit_code": exit_code,
        # what the server wrote on stderr while refusing (start-up and shutdown lines excluded)
        "server_log_lines": len(log),
        "server_log_never_retrieved": sum("exception was never retrieved" in ln for ln in log),
        "server_log_tracebacks": sum(ln.startswith("Traceback") for ln in log),
        "server_log_sample": [ln for ln in log if "never retrieved" in ln or "Traceback" in ln][:3],
    }
    out["verdict"] = {
        "every_status_expected": out["all_expected"],
        "rss_flat_under_20mb": out["rss_growth_after_warmup_mb"] < GROWTH_BAR_MB,
        "threads_flat": settled["threads"] <= warm["threads"],
        "still_serving_and_clean_exit": still_serving and exit_code == 0,
        "no_tracebacks_or_unretrieved_errors": out["server_log_never_retrieved"] == 0
        and out["server_log_tracebacks"] == 0,
    }
    write_results("soak_grpc_bad", out, _markdown(out))
    print(json.dumps(out["verdict"]))


def _markdown(out: dict[str, Any]) -> str:
    lines = [
        "# 10,000 bad gRPC requests against yolo-ov serve",
        "",
        machine_line(out["machine"]),
        f"Command: `python benchmarks/soak_grpc_bad.py --requests {out['requests']} --threads {out['threads']}` "
        f"({out['seconds']} s). Server: `yolo-ov serve --model yolov8n_openvino_model --grpc-port 0 "
        "--api-key-env VAR --max-body-mb 0.5`; the eight kinds in turn from "
        f"{out['threads']} client threads (`tritonclient.grpc`, one channel each).",
        "",
        "| kind | expected | got |",
        "|---|---|---|",
    ]
    for kind, expected in out["expected"].items():
        got = ", ".join(f"{s}: {n}" for s, n in sorted(out["statuses"][kind].items()))
        lines.append(f"| {kind} | {expected} | {got} |")
    rss = ", ".join(f"{s['requests']}: {s['rss_mb']:.1f}" for s in out["samples"])
    threads = ", ".join(str(s["threads"]) for s in out["samples"])
    lines += [
        "",
        f"Server RSS (MB) by requests sent: {rss}; after the calls settled: {out['settled']['rss_mb']:.1f}.",
        f"Growth after the first 1,000 (warm-up): **{out['rss_growth_after_warmup_mb']:+} MB** at the peak, "
        f"{out['rss_end_minus_warmup_mb']:+} MB at the end (bar < {GROWTH_BAR_MB:g}).",
        f"Server threads by sample: {threads}; after the calls settled: {out['threads_at_end']}.",
        f"A good request afterwards answered correctly: {out['still_serving']}; exit code on SIGTERM: "
        f"{out['server_exit_code']}.",
        f"Server stderr: {out['server_log_lines']} lines in all; {out['server_log_tracebacks']} tracebacks; "
        f"{out['server_log_never_retrieved']} asyncio 'exception was never retrieved' lines (calls cancelled by "
        "their deadline).",
        "",
        f"Verdict: {out['verdict']}",
    ]
    if out["unexpected_examples"]:
        lines += ["", "Unexpected answers (first 20):", "", *[f"- `{w}`" for w in out["unexpected_examples"]]]
    return "\n".join(lines)


if __name__ == "__main__":
    os.environ.pop("YOLO_OV_MODEL", None)
    main()
