"""``yolo-ov bench-serve``, the perf_analyzer-style load sweep (fast tier, fake engine).

Its arithmetic on known inputs (percentiles, perf_analyzer's stability rule,
the statistics deltas, the CSV columns), then real sweeps through the
command against a real uvicorn and a real gRPC server on free 127.0.0.1 ports
on the fake engine (:class:`tests.grpc_support.Served`), and the command's
one-line refusals.
"""

from __future__ import annotations

import csv
import json
import socket
import sys

import numpy as np
import pytest
from typer.testing import CliRunner

from tests.grpc_support import Served, png
from tests.serve_support import fake_detectors, fake_models
from yolo_ov.bench.serve_report import HEADERS, csv_rows, markdown_table, table_rows
from yolo_ov.bench.serve_sweep import LatencySummary, ServerTimes, StepResult, SweepConfig, Window, is_stable, run_sweep
from yolo_ov.cli import app
from yolo_ov.errors import ConfigError, MissingExtraError

pytest.importorskip("tritonclient.grpc")
pytest.importorskip("tritonclient.http.aio")
pytest.importorskip("fastapi")

runner = CliRunner()
VALUES = [10, 40, 77, 130, 201]


# -- the arithmetic -------------------------------------------------------------------------------------------------
def test_percentiles_of_a_known_latency_list():
    s = LatencySummary.from_samples(list(range(1, 101)))  # 1..100 us
    assert s.count == 100 and s.average_us == 50.5
    assert (s.p50_us, s.p90_us, s.p95_us, s.p99_us) == pytest.approx((50.5, 90.1, 95.05, 99.01))
    one = LatencySummary.from_samples([7.0])
    assert (one.p50_us, one.p99_us, one.average_us) == (7.0, 7.0, 7.0)
    empty = LatencySummary.from_samples([])
    assert empty.count == 0 and np.isnan(empty.p99_us)


def _w(throughput: float, p99: float) -> Window:
    return Window(seconds=1.0, answered=int(throughput), p99_us=p99)


@pytest.mark.parametrize(("windows", "stable"), [
    ([_w(100, 1000)] * 3, True),
    ([_w(100, 1000), _w(100, 1000)], False),                      # fewer than 3 windows
    ([_w(95, 1000), _w(100, 1050), _w(105, 1000)], True),         # within 10% of their average
    ([_w(100, 1000), _w(100, 1000), _w(130, 1000)], False),       # throughput 130 vs average 110
    ([_w(100, 1000), _w(100, 1000), _w(100, 1400)], False),       # p99 1400 vs average 1133
    ([_w(40, 9000), _w(100, 1000), _w(100, 1000), _w(100, 1000)], True),  # only the last 3 count
    ([_w(0, float("nan"))] * 3, False),                           # nothing answered is never stable
])
def test_stability_rule_on_fake_windows(windows, stable):
    assert is_stable(windows, 0.10) is stable


def test_stability_threshold_is_the_option():
    windows = [_w(100, 1000), _w(100, 1000), _w(125, 1000)]  # 125 is 15% over their average of 108.3
    assert not is_stable(windows, 0.10)
    assert is_stable(windows, 0.20)


def test_server_times_are_deltas_per_request_from_rest_and_grpc_json():
    before = {"inference_count": 10, "execution_count": 5,
              "inference_stats": {"success": {"count": 10, "ns": 10_000_000}, "queue": {"count": 10, "ns": 1_000_000},
                                  "compute_infer": {"count": 10, "ns": 5_000_000}}}
    after = {"inference_count": "30", "execution_count": "15",  # gRPC's JSON writes int64 as strings
             "inference_stats": {"success": {"count": "30", "ns": "50000000"},
                                 "queue": {"count": "30", "ns": "5000000"},
                                 "compute_infer": {"count": "30", "ns": "25000000"}}}
    t = ServerTimes.between(before, after)
    assert (t.requests, t.inferences, t.executions) == (20, 20, 10)
    assert (t.request_us, t.queue_us, t.compute_infer_us) == (2000.0, 200.0, 1000.0)
    assert np.isnan(t.compute_input_us)  # not reported: no figure, never a zero


def _step(protocol: str, value: float, load: str = "concurrency") -> StepResult:
    server = ServerTimes(requests=3, inferences=3, executions=3, request_us=900.0, queue_us=100.0,
                         compute_input_us=200.0, compute_infer_us=500.0, compute_output_us=50.0)
    return StepResult(protocol=protocol, load=load, value=value, throughput=123.4,
                      latency=LatencySummary.from_samples([1000.0, 2000.0, 3000.0]),
                      statuses={"OK": 3, "UNAVAILABLE": 1}, stable=True, windows=(_w(3, 3000),), server=server)


def test_csv_keeps_perf_analyzers_columns_and_table_rows():
    rows = csv_rows([_step("grpc", 8), _step("http", 20, "request_rate")])
    assert list(rows[0])[:2] == ["Concurrency", "Inferences/Second"] and "Request Rate" in rows[1]
    for column in ("Server Queue", "Server Compute Input", "Server Compute Infer", "Server Compute Output",
                   "p50 latency", "p90 latency", "p95 latency", "p99 latency", "Avg latency"):
        assert column in rows[0], column
    assert rows[0]["Server Queue"] == 100 and rows[0]["p50 latency"] == 2000 and rows[0]["Errors"] == 1
    row = table_rows([_step("grpc", 8)])[0]
    assert len(row) == len(HEADERS) and row[:3] == ["grpc", "c=8", "123.4"]
    assert row[HEADERS.index("errors")] == "UNAVAILABLE: 1" and row[HEADERS.index("server queue ms")] == "0.1"
    assert row[HEADERS.index("server compute ms in/infer/out")] == "0.2/0.5/0.1"  # 50 us rounds to 0.1
    assert markdown_table([_step("grpc", 8)]).count("\n") == 2


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"protocol": "udp"}, "--protocol must be one of http, grpc"),
    ({"concurrency": (0, 2)}, "--concurrency needs positive integers"),
    ({"request_rates": (-1.0,)}, "--request-rate needs positive rates"),
    ({"stability": 10.0}, "--stability must be a fraction"),
    ({"max_windows": 2}, "--max-windows must be at least 3"),
    ({"distribution": "uniform"}, "--request-distribution must be constant or poisson"),
])
def test_config_refusals(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        SweepConfig(url="127.0.0.1:1", model="m", **kwargs)


# -- real sweeps on the fake engine -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def served(tmp_path_factory):
    from yolo_ov.serve import ServeConfig, create_app

    root = tmp_path_factory.mktemp("models")
    config = ServeConfig(models=fake_models(root), timeout_s=30)
    with Served(create_app(config, detectors=fake_detectors(delay_s=0.004))) as s:
        yield s


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    folder = tmp_path_factory.mktemp("images")
    for v in VALUES:
        (folder / f"{v:03d}.png").write_bytes(png(v))
    return folder


def test_sweep_over_http_and_grpc_through_the_command(served, images, tmp_path):
    out_json, out_csv, out_png = tmp_path / "s.json", tmp_path / "s.csv", tmp_path / "s.png"
    result = runner.invoke(app, ["bench-serve", served.url, "--grpc-url", served.grpc, "--protocol", "both",
                                 "--model", "yolov8n", "--images", str(images), "--concurrency", "1,2",
                                 "--window-ms", "150", "--max-windows", "5", "--stability", "25%",
                                 "--json", str(out_json), "--csv", str(out_csv), "--plot", str(out_png)])
    assert result.exit_code == 0, result.output
    table = result.stdout  # the rich table (progress lines go to stderr); figures fold, never cut, when narrow
    assert "yolov8n: 5 images, windows of 150 ms" in table and "…" not in table
    assert sum(p in line and "c=1" in line for line in table.splitlines() for p in ("http", "grpc")) == 2
    sweeps = json.loads(out_json.read_text(encoding="utf-8"))["sweeps"]
    assert [s["protocol"] for s in sweeps] == ["http", "grpc"] and all(s["images"] == len(VALUES) for s in sweeps)
    for sweep in sweeps:
        assert [step["value"] for step in sweep["steps"]] == [1, 2]
        for step in sweep["steps"]:
            where = f"{sweep['protocol']} c={step['value']}"
            assert step["errors"] == {} and step["statuses"]["OK"] > 0, where  # every request answered OK
            assert 3 <= len(step["windows"]) <= 5, where
            assert step["throughput"] > 0 and step["latency_us"]["count"] == step["statuses"]["OK"], where
            lat = step["latency_us"]
            assert 0 < lat["p50_us"] <= lat["p90_us"] <= lat["p95_us"] <= lat["p99_us"], where
            srv = step["server_us"]
            # the server counted what the client saw answered in those windows (give or take one in flight at a cut)
            assert abs(srv["requests"] - step["statuses"]["OK"]) <= step["value"] + 1, where
            assert srv["compute_infer_us"] >= 3000 and srv["queue_us"] > 0 and srv["compute_input_us"] > 0, where
            assert srv["request_us"] < lat["p99_us"], where  # the server's time is inside the client's
    rows = list(csv.DictReader(out_csv.open(encoding="utf-8")))
    assert [(r["Protocol"], r["Concurrency"]) for r in rows] == [("http", "1"), ("http", "2"), ("grpc", "1"),
                                                                 ("grpc", "2")]
    assert all(int(r["Server Compute Infer"]) >= 3000 and r["Errors"] == "0" for r in rows)
    assert out_png.read_bytes()[:4] == b"\x89PNG"


def test_open_loop_request_rate(served):
    config = SweepConfig(url=served.grpc, model="yolov8n", protocol="grpc", request_rates=(40.0,),
                         distribution="poisson", window_ms=400, max_windows=5, stability=0.5)
    step = run_sweep(config, [png(v) for v in VALUES]).steps[0]
    assert step.load == "request_rate" and step.value == 40 and step.errors == {}
    assert 20 <= step.throughput <= 60, step.throughput  # Poisson arrivals at 40/s over ~1.2 s
    assert step.late == 0 and step.server is not None and step.server.requests > 0


# -- refusals ---------------------------------------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _one_line_error(result, *words: str) -> str:
    assert result.exit_code == 2, result.output
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and "Traceback" not in result.output, result.output
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_unreachable_url_is_one_line(images, protocol):
    url = f"127.0.0.1:{_free_port()}"
    result = runner.invoke(app, ["bench-serve", url, "--protocol", protocol, "--model", "yolov8n",
                                 "--images", str(images), "--window-ms", "100"])
    _one_line_error(result, f"URL {url}", "no KServe v2 server answers", protocol)


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_unknown_model_is_one_line(served, images, protocol):
    url = served.url if protocol == "http" else served.grpc
    result = runner.invoke(app, ["bench-serve", url, "--protocol", protocol, "--model", "nope",
                                 "--images", str(images), "--window-ms", "100"])
    _one_line_error(result, "--model nope")


@pytest.mark.parametrize(("args", "words"), [
    (["--images", "missing.jpg"], ["--images missing.jpg", "no such file"]),
    (["--concurrency", "1,two"], ["--concurrency", "comma-separated"]),
    (["--protocol", "both"], ["--protocol both", "--grpc-url"]),
    (["--stability", "lots"], ["--stability", "percentage"]),
    (["--request-rate", "0"], ["--request-rate needs positive rates"]),
])
def test_option_refusals_are_one_line(images, tmp_path, monkeypatch, args, words):
    monkeypatch.chdir(tmp_path)
    base = ["bench-serve", "127.0.0.1:1", "--model", "m"]
    if "--images" not in args:
        base += ["--images", str(images)]
    _one_line_error(runner.invoke(app, base + args), *words)


def test_missing_client_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "tritonclient.grpc.aio", None)
    with pytest.raises(MissingExtraError, match=r"'tritonclient'.*pip install 'yolo-ov\[bench-serve\]'"):
        run_sweep(SweepConfig(url="127.0.0.1:1", model="m", protocol="grpc"), [b"x"])
