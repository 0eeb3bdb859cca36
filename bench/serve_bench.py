"""Serving throughput and latency: modelport against a naive FastAPI app and the raw ORT loop.

    python -m bench serve [--duration 10] [--warmup 1] [--out bench/RESULTS-serve.md]

The default is the issue's protocol, 10 s recorded per point (about 9 minutes in all);
``--duration 3`` gives a quick look in about 3 minutes.

Models (built here, no downloads): a small CNN (the one of PyTorch's MNIST example, 1x28x28 ->
10, onnx.helper with seeded random weights) and a 100-tree RandomForest trained on sklearn's
digits (skl2onnx, zipmap off), plus a 1M-float reduction to compare binary and JSON tensors.

Method: the server (modelport's ``modelport serve`` or ``bench/naive_app.py`` under uvicorn) runs
in its own process pinned to one core, ONNX Runtime at one intra-op thread; the load generator
(a bounded asyncio client on raw sockets, one request in flight per connection, keep-alive) runs
in another process pinned to another core. Each point is ``--warmup`` seconds unrecorded, then
``--duration`` seconds recorded, and every response is checked against the raw session's output
(status 200 and values within 1e-4). The raw loop is ``session.run`` in a loop in this process,
pinned to the server's core. Requests: modelport gets Open Inference Protocol JSON (binary for
the binary rows), the naive app its ``{"data": ...}``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import pickle
import platform
import shlex
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = ROOT / "bench" / "RESULTS-serve.md"
JSON_OUT = ROOT / "bench" / "out" / "serve-results.json"
PYTHON = sys.executable


# -- models -----------------------------------------------------------------------------------


def cnn_model() -> Any:
    """The small CNN of PyTorch's MNIST example (pytorch/examples ``mnist/main.py``, dropout
    left out: inference): conv3x3(32) relu, conv3x3(64) relu, maxpool2, dense 9216 -> 128 relu,
    dense 128 -> 10, log-softmax. About 12 M multiply-adds per image."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)

    def weight(name: str, *shape: int) -> Any:
        fan_in = int(np.prod(shape[1:])) if len(shape) > 1 else shape[0]
        return numpy_helper.from_array(
            (rng.normal(size=shape) / np.sqrt(fan_in)).astype(np.float32), name)

    inits = [weight("w1", 32, 1, 3, 3), weight("b1", 32), weight("w2", 64, 32, 3, 3),
             weight("b2", 64), weight("w3", 9216, 128), weight("b3", 128),
             weight("w4", 128, 10), weight("b4", 10)]
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"]),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("Conv", ["r1", "w2", "b2"], ["c2"]),
        helper.make_node("Relu", ["c2"], ["r2"]),
        helper.make_node("MaxPool", ["r2"], ["p"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Flatten", ["p"], ["f"]),
        helper.make_node("Gemm", ["f", "w3", "b3"], ["h"]),
        helper.make_node("Relu", ["h"], ["rh"]),
        helper.make_node("Gemm", ["rh", "w4", "b4"], ["z"]),
        helper.make_node("LogSoftmax", ["z"], ["logits"], axis=1),
    ]
    graph = helper.make_graph(
        nodes, "cnn",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 1, 28, 28])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 10])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def rf_model() -> tuple[Any, np.ndarray]:
    from skl2onnx import to_onnx
    from sklearn.datasets import load_digits
    from sklearn.ensemble import RandomForestClassifier

    x, y = load_digits(return_X_y=True)
    x = x.astype(np.float32)
    forest = RandomForestClassifier(n_estimators=100, random_state=0, n_jobs=1).fit(x, y)
    model = to_onnx(forest, x[:1], options={id(forest): {"zipmap": False}},
                    target_opset={"": 17, "ai.onnx.ml": 3})
    return model, x


def big_model() -> Any:
    """x [N, 1_000_000] float32 -> y [N, 1] = sum over the row (binary vs JSON tensors)."""
    from onnx import TensorProto, helper, numpy_helper

    axes = numpy_helper.from_array(np.array([1], dtype=np.int64), "axes")
    graph = helper.make_graph(
        [helper.make_node("ReduceSum", ["x", "axes"], ["y"], keepdims=1)], "big",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 1_000_000])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 1])], [axes])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


# -- request sets -----------------------------------------------------------------------------


@dataclass
class Workload:
    """Pre-encoded HTTP requests and the outputs each must answer with."""

    requests: list[bytes]
    expected: list[dict[str, list[float]]]  # per request: output name -> flat values
    style: str  # "v2" (JSON or binary answers) or "naive"
    rows: int


def _http(path: str, body: bytes, extra: dict[str, str] | None = None) -> bytes:
    lines = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1", "Content-Type: application/json",
             f"Content-Length: {len(body)}"]
    lines += [f"{k}: {v}" for k, v in (extra or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def v2_workload(path: str, input_name: str, batches: list[np.ndarray],
                outputs: list[dict[str, np.ndarray]], binary: bool = False) -> Workload:
    requests = []
    for x in batches:
        entry: dict[str, Any] = {"name": input_name, "shape": list(x.shape), "datatype": "FP32"}
        if binary:
            entry["parameters"] = {"binary_data_size": x.nbytes}
            header = json.dumps({"inputs": [entry]}, separators=(",", ":")).encode()
            requests.append(_http(path, header + x.tobytes(),
                                  {"Inference-Header-Content-Length": str(len(header))}))
        else:
            entry["data"] = x.ravel().tolist()
            requests.append(_http(path, json.dumps({"inputs": [entry]},
                                                   separators=(",", ":")).encode()))
    expected = [{k: v.ravel().astype(float).tolist() for k, v in out.items()} for out in outputs]
    return Workload(requests, expected, "v2", len(batches[0]))


def naive_workload(batches: list[np.ndarray], outputs: list[dict[str, np.ndarray]]) -> Workload:
    requests = [_http("/predict", json.dumps({"data": x.tolist()}).encode()) for x in batches]
    expected = [{k: v.ravel().astype(float).tolist() for k, v in out.items()} for out in outputs]
    return Workload(requests, expected, "naive", len(batches[0]))


# -- the load generator (its own process) ------------------------------------------------------


def _close(got: list[Any], want: list[float]) -> bool:
    if len(got) != len(want):
        return False
    return all(abs(a - b) <= 1e-5 + 1e-4 * abs(b) for a, b in zip(got, want, strict=True))


def _flat(value: Any) -> list[Any]:
    if isinstance(value, list) and value and isinstance(value[0], list):
        return [x for item in value for x in _flat(item)]
    return value if isinstance(value, list) else [value]


def check_response(style: str, head: bytes, body: bytes, want: dict[str, list[float]]) -> str:
    """'' when the answer is right, else what is wrong."""
    import orjson

    if head[9:12] != b"200":
        return f"HTTP {head[9:12].decode()}: {body[:200]!r}"
    if style == "naive":
        result = orjson.loads(body)["result"]
        for got, values in zip(result, want.values(), strict=True):
            if not _close(_flat(got), values):
                return "wrong values"
        return ""
    marker = b"inference-header-content-length:"
    cut = head.find(marker)
    if cut >= 0:
        size = int(head[cut + len(marker):].split(b"\r\n", 1)[0])
        doc = orjson.loads(body[:size])
        offset = size
        for out in doc["outputs"]:
            n = out["parameters"]["binary_data_size"]
            dtype = {"FP32": np.float32, "INT64": np.int64}[out["datatype"]]
            out["data"] = np.frombuffer(body[offset:offset + n], dtype=dtype).tolist()
            offset += n
    else:
        doc = orjson.loads(body)
    for out in doc["outputs"]:
        if not _close(out["data"], want[out["name"]]):
            return f"wrong values for {out['name']}"
    return ""


class _Connection(asyncio.Protocol):
    def __init__(self, gen: _Generator, index: int) -> None:
        self.gen = gen
        self.k = index * 7
        self.buf = bytearray()
        self.started = 0.0
        self.transport: asyncio.Transport | None = None
        self.done = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is no subclass
        self._send()

    def _send(self) -> None:
        gen = self.gen
        self.k = (self.k + 1) % len(gen.work.requests)
        self.started = time.perf_counter()
        assert self.transport is not None
        self.transport.write(gen.work.requests[self.k])

    def data_received(self, data: bytes) -> None:
        try:
            self._received(data)
        except Exception as exc:  # fail the run loudly rather than hang
            if not self.done.done():
                self.done.set_exception(exc)

    def _received(self, data: bytes) -> None:
        buf = self.buf
        buf += data
        while True:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(buf[:end]).lower()
            cut = head.find(b"content-length:")
            length = int(head[cut + 15:].split(b"\r\n", 1)[0])
            total = end + 4 + length
            if len(buf) < total:
                return
            body = bytes(buf[end + 4:total])
            del buf[:total]
            now = time.perf_counter()
            self.gen.record(self.k, head, body, now - self.started, now)
            if now < self.gen.stop_at:
                self._send()
            else:
                assert self.transport is not None
                self.transport.close()
                if not self.done.done():
                    self.done.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.done.set_result(None)


class _Generator:
    def __init__(self, work: Workload, warmup: float, duration: float) -> None:
        self.work = work
        now = time.perf_counter()
        self.record_from = now + warmup
        self.stop_at = self.record_from + duration
        self.latencies: list[float] = []
        self.errors = 0
        self.answered = 0  # warm-up included: what the server's CPU time was spent on
        self.first_error = ""

    def record(self, k: int, head: bytes, body: bytes, latency: float, now: float) -> None:
        self.answered += 1
        problem = check_response(self.work.style, head, body, self.work.expected[k])
        if now < self.record_from or now > self.stop_at:  # outside the recorded window
            if problem and not self.first_error:
                self.first_error = problem
            if problem:
                self.errors += 1
            return
        self.latencies.append(latency)
        if problem:
            self.errors += 1
            self.first_error = self.first_error or problem


async def _load(port: int, work: Workload, concurrency: int, warmup: float,
                duration: float) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    gen = _Generator(work, warmup, duration)
    cpu0 = time.process_time()
    conns = []
    for i in range(concurrency):
        _, conn = await loop.create_connection(lambda i=i: _Connection(gen, i), "127.0.0.1", port)
        conns.append(conn)
    await asyncio.gather(*(c.done for c in conns))
    cpu = time.process_time() - cpu0
    lat = sorted(gen.latencies)
    count = len(lat)

    def pct(q: float) -> float:
        return lat[min(count - 1, int(q * count))] * 1000 if count else float("nan")

    return {"requests": count, "rows": count * work.rows, "errors": gen.errors,
            "first_error": gen.first_error, "rps": count / duration,
            "rows_per_s": count * work.rows / duration, "p50_ms": pct(0.5),
            "p90_ms": pct(0.9), "p99_ms": pct(0.99),
            "client_cpu": cpu / (warmup + duration), "answered": gen.answered,
            "latencies": lat}


def loadgen_main(spec_path: str) -> None:
    with open(spec_path, "rb") as fh:
        spec = pickle.load(fh)
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    result = asyncio.run(_load(spec["port"], spec["work"], spec["concurrency"], spec["warmup"],
                               spec["duration"]))
    # A file, not stdout: the latencies of a busy point make a line of megabytes.
    Path(spec["result"]).write_text(json.dumps(result))


# -- orchestration ----------------------------------------------------------------------------


def _cores() -> tuple[int, int]:
    cores = sorted(os.sched_getaffinity(0))
    if len(cores) < 2:
        return cores[0], cores[0]
    return cores[0], cores[-1]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _pin(core: int) -> Any:
    return lambda: os.sched_setaffinity(0, {core})


def _wait_ready(port: int, path: str, timeout: float = 60.0, interval: float = 0.002) -> float:
    deadline = time.perf_counter() + timeout
    request = f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode()
    while time.perf_counter() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
                sock.sendall(request)
                if sock.recv(64)[9:12] in (b"200", b"405"):
                    return time.perf_counter()
        except OSError:
            pass
        time.sleep(interval)
    raise RuntimeError(f"server on port {port} not ready after {timeout} s")


@dataclass
class Server:
    name: str
    process: subprocess.Popen[bytes]
    port: int

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def start_modelport(repo: Path, core: int | None, refs: list[str],
                    extra: list[str] | None = None) -> tuple[Server, float]:
    port = _free_port()
    command = [PYTHON, "-c", "from modelport.cli import main; main()", "serve", "--repo",
               str(repo), "--port", str(port), "--intra-op-threads", "1", "--log-level",
               "warning", *(extra or []), *refs]
    started = time.perf_counter()
    process = subprocess.Popen(command, preexec_fn=None if core is None else _pin(core),
                               cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ready = _wait_ready(port, "/v2/health/ready")
    return Server("modelport", process, port), ready - started


def start_naive(model_path: Path, core: int) -> Server:
    port = _free_port()
    env = {**os.environ, "MODEL_PATH": str(model_path), "ORT_THREADS": "1"}
    command = [PYTHON, "-m", "uvicorn", "bench.naive_app:app", "--port", str(port),
               "--log-level", "warning", "--no-access-log"]
    process = subprocess.Popen(command, preexec_fn=_pin(core), cwd=ROOT, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _wait_ready(port, "/predict")
    return Server("naive", process, port)


def run_load(port: int, work: Workload, concurrency: int, warmup: float, duration: float,
             core: int, tmp: Path) -> dict[str, Any]:
    spec = tmp / f"spec-{port}-{concurrency}.pkl"
    result = spec.with_suffix(".json")
    result.unlink(missing_ok=True)
    with open(spec, "wb") as fh:
        pickle.dump({"port": port, "work": work, "concurrency": concurrency,
                     "warmup": warmup, "duration": duration, "result": str(result)}, fh)
    out = subprocess.run([PYTHON, "-m", "bench.serve_bench", "--loadgen", str(spec)],
                         preexec_fn=_pin(core), cwd=ROOT, capture_output=True, text=True,
                         timeout=warmup + duration + 120, check=False)
    if out.returncode != 0 or not result.exists():
        raise RuntimeError(f"load generator failed: {out.stderr[-2000:]}")
    loaded: dict[str, Any] = json.loads(result.read_text())
    return loaded


def _server_cpu(pid: int) -> float:
    """CPU seconds every thread of ``pid`` ran so far, from the scheduler's own nanosecond
    count (``schedstat``; tick-sampled utime/stime misjudge servers that sleep between short
    bursts)."""
    total = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        with contextlib.suppress(OSError), open(f"/proc/{pid}/task/{task}/schedstat") as fh:
            total += int(fh.read().split()[0])
    return total / 1e9


def run_load_cpu(server: Server, work: Workload, concurrency: int, warmup: float,
                 duration: float, core: int, tmp: Path) -> dict[str, Any]:
    """``run_load`` plus the server's CPU seconds over it (per answered request, warm-up
    included): throughput per CPU second does not depend on how much of its core the server
    got on a shared machine."""
    before = _server_cpu(server.process.pid)
    result = run_load(server.port, work, concurrency, warmup, duration, core, tmp)
    result["cpu_s"] = _server_cpu(server.process.pid) - before
    result["seconds"] = duration
    return result


def _merge(parts: list[dict[str, Any]], slice_s: float, rows: int, raw: bool) -> dict[str, Any]:
    """One point from its rounds: counts added, percentiles over every latency."""
    lat = sorted(x for p in parts for x in p["latencies"])
    count = len(lat)
    seconds = sum(p["seconds"] for p in parts) if raw else slice_s * len(parts)
    answered = sum(p["answered"] for p in parts)
    cpu = sum(p["cpu_s"] for p in parts)

    def pct(q: float) -> float:
        return lat[min(count - 1, int(q * count))] * 1000 if count else float("nan")

    return {
        "requests": count, "rows": count * rows, "errors": sum(p["errors"] for p in parts),
        "first_error": next((p["first_error"] for p in parts if p["first_error"]), ""),
        "rps": count / seconds, "rows_per_s": count * rows / seconds,
        "p50_ms": pct(0.5), "p90_ms": pct(0.9), "p99_ms": pct(0.99),
        # rows per second of server CPU (per second of the loop's own time for the raw loop)
        "rows_per_cpu_s": answered * rows / cpu if cpu > 0 else float("nan"),
        "cpu_us_per_request": cpu / answered * 1e6 if answered else float("nan"),
        "client_cpu": max((p.get("client_cpu", 0.0) for p in parts), default=0.0),
    }


def raw_loop(session: Any, feed: dict[str, np.ndarray], warmup: float, duration: float,
             core: int, idle_s: float = 0.0) -> dict[str, Any]:
    """``session.run`` back to back (or with ``idle_s`` of sleep between runs, as a server at
    concurrency 1 idles between requests; only the runs are timed)."""
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {core})
    try:
        end = time.perf_counter() + warmup
        while time.perf_counter() < end:
            session.run(None, feed)
        lat = []
        stop = time.perf_counter() + duration
        while True:
            if idle_s:
                time.sleep(idle_s)
            t0 = time.perf_counter()
            session.run(None, feed)
            t1 = time.perf_counter()
            lat.append(t1 - t0)
            if t1 >= stop:
                break
    finally:
        os.sched_setaffinity(0, before)
    rows = len(next(iter(feed.values())))
    return {"requests": len(lat), "rows": len(lat) * rows, "errors": 0, "first_error": "",
            "seconds": sum(lat), "cpu_s": sum(lat), "answered": len(lat), "latencies": lat}


@dataclass
class Point:
    model: str
    rows: int
    concurrency: int
    system: str
    result: dict[str, Any] = field(default_factory=dict)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench serve", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=10.0,
                        help="recorded seconds per point (the issue's protocol; 3 for a quick "
                        "look)")
    parser.add_argument("--warmup", type=float, default=1.0, help="unrecorded seconds first")
    parser.add_argument("--rounds", type=int, default=3,
                        help="interleaved rounds per point (the duration is split over them)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--json", type=Path, default=JSON_OUT)
    parser.add_argument("--loadgen", help=argparse.SUPPRESS)
    parser.add_argument("--skip-naive", action="store_true", help="modelport and raw loop only")
    args = parser.parse_args(argv)
    if args.loadgen:
        loadgen_main(args.loadgen)
        return 0

    import onnx
    import onnxruntime as ort

    from modelport.repository import Repository

    server_core, client_core = _cores()
    print(f"server core {server_core}, load generator core {client_core}, "
          f"{args.duration:g} s per point after {args.warmup:g} s warm-up", file=sys.stderr)
    tmp = Path(tempfile.mkdtemp(prefix="modelport-serve-bench-"))
    repo = Repository(tmp / "repo")
    cnn = cnn_model()
    rf, digits = rf_model()
    big = big_model()
    paths = {}
    for name, model in (("cnn", cnn), ("rf", rf), ("big", big)):
        paths[name] = tmp / f"{name}.onnx"
        onnx.save_model(model, str(paths[name]))
        repo.register(model, name)
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    sessions = {n: ort.InferenceSession(str(p), options, providers=["CPUExecutionProvider"])
                for n, p in paths.items()}

    rng = np.random.default_rng(1)
    inputs = {
        "cnn": ("x", lambda rows, i: rng.random((rows, 1, 28, 28), dtype=np.float32)),
        "rf": ("X", lambda rows, i: digits[(np.arange(rows) + rows * i) % len(digits)]),
    }
    points: list[Point] = []
    ready_times: list[float] = []
    slice_s = args.duration / args.rounds
    for model in ("cnn", "rf"):
        input_name, make = inputs[model]
        session = sessions[model]
        out_names = [o.name for o in session.get_outputs()]
        for rows in (1, 32):
            batches = [make(rows, i) for i in range(64)]
            outputs = [dict(zip(out_names, session.run(None, {input_name: x}), strict=True))
                       for x in batches]
            path = f"/v2/models/{model}/infer"
            servers: list[tuple[Server, list[tuple[str, Workload]]]] = []
            server, _ = start_modelport(tmp / "repo", server_core, [model])
            servers.append((server, [
                ("modelport JSON", v2_workload(path, input_name, batches, outputs)),
                ("modelport binary", v2_workload(path, input_name, batches, outputs,
                                                 binary=True)),
            ]))
            if not args.skip_naive:
                servers.append((start_naive(paths[model], server_core),
                                [("naive FastAPI", naive_workload(batches, outputs))]))
            acc: dict[tuple[str, int], list[dict[str, Any]]] = {}
            raws = [("raw ORT loop", 0.0)] + ([("raw ORT loop, 0.2 ms idle", 0.0002)]
                                              if rows == 1 else [])
            try:
                # Rounds interleave every system so that a neighbour's burst of load on this
                # shared machine falls on all of them alike; the first round warms up longer.
                for round_ in range(args.rounds):
                    warm = args.warmup if round_ == 0 else min(args.warmup, 0.3)
                    for system, idle in raws:
                        acc.setdefault((system, 1), []).append(raw_loop(
                            session, {input_name: batches[0]}, warm, slice_s, server_core,
                            idle_s=idle))
                    for server, works in servers:
                        for system, work in works:
                            for concurrency in (1, 16):
                                acc.setdefault((system, concurrency), []).append(
                                    run_load_cpu(server, work, concurrency, warm, slice_s,
                                                 client_core, tmp))
            finally:
                for server, _ in servers:
                    server.stop()
            for (system, concurrency), parts in acc.items():
                point = Point(model, rows, concurrency, system)
                point.result = _merge(parts, slice_s, rows, raw=system.startswith("raw"))
                points.append(point)
                _report(point)

    # Binary against JSON tensors for one 1M-float row.
    x = rng.random((1, 1_000_000), dtype=np.float32)
    expect = [{"y": sessions["big"].run(None, {"x": x})[0]}]
    server, _ = start_modelport(tmp / "repo", server_core, ["big"])
    try:
        for binary in (False, True):
            work = v2_workload("/v2/models/big/infer", "x", [x], expect, binary=binary)
            point = Point("1M floats", 1, 1, "modelport binary" if binary else "modelport JSON")
            seconds = max(args.duration / 2, 2.0)
            point.result = _merge([run_load_cpu(server, work, 1, min(args.warmup, 1.0), seconds,
                                                client_core, tmp)], seconds, 1, raw=False)
            points.append(point)
            _report(point)
    finally:
        server.stop()

    # Time to ready: process start -> /v2/health/ready answers 200, both models; not pinned
    # (a start is not a steady state: imports and session builds may use every core).
    for _ in range(3):
        server, ready = start_modelport(tmp / "repo", None, ["cnn", "rf"])
        server.stop()
        ready_times.append(ready)

    summary = _summary(points, ready_times)
    _write(args, points, summary, ready_times)
    return 0


def _find(points: list[Point], model: str, rows: int, conc: int, system: str) -> dict[str, Any]:
    for p in points:
        if (p.model, p.rows, p.concurrency, p.system) == (model, rows, conc, system):
            return p.result
    return {}


def _summary(points: list[Point], ready: list[float]) -> list[tuple[str, str, str, str, bool]]:
    """(target, measured, per server CPU second, goal, met) for each target of the issue."""
    out: list[tuple[str, str, str, str, bool]] = []
    systems = ("modelport JSON", "modelport binary")
    # Throughput at concurrency 16 against a baseline: (label, model, baseline point, key, goal)
    throughput = [
        ("CNN 1-row c16 rows/s vs raw loop", "cnn", (1, "raw ORT loop"), "rows_per_s", 0.8),
        ("RF 1-row c16 req/s vs naive app", "rf", (16, "naive FastAPI"), "rps", 3.0),
    ]
    for label, model, (base_concurrency, base_system), key, goal in throughput:
        base = _find(points, model, 1, base_concurrency, base_system)
        for system in systems:
            mp = _find(points, model, 1, 16, system)
            if mp and base:
                ratio = mp[key] / base[key]
                per_cpu = mp["rows_per_cpu_s"] / base["rows_per_cpu_s"]
                out.append((f"{label} ({system})", f"{ratio:.2f}x", f"{per_cpu:.2f}x",
                            f">= {goal:g}x", ratio >= goal))
    for model in ("cnn", "rf"):
        raw = _find(points, model, 1, 1, "raw ORT loop")
        idle = _find(points, model, 1, 1, "raw ORT loop, 0.2 ms idle")
        for system in systems:
            mp = _find(points, model, 1, 1, system)
            if mp and raw:
                gap = mp["p50_ms"] - raw["p50_ms"]
                note = f" ({mp['p50_ms'] - idle['p50_ms']:.3f} ms vs the idle-gap loop)" \
                    if idle else ""
                out.append((f"{model.upper()} 1-row c1 p50 minus raw p50 ({system})",
                            f"{gap:.3f} ms{note}", "", "<= 0.25 ms", gap <= 0.25))
    js = _find(points, "1M floats", 1, 1, "modelport JSON")
    bi = _find(points, "1M floats", 1, 1, "modelport binary")
    if js and bi:
        ratio = js["p50_ms"] / bi["p50_ms"]
        out.append(("1M floats: JSON p50 / binary p50", f"{ratio:.1f}x", "", ">= 10x",
                    ratio >= 10))
    if ready:
        best = statistics.median(ready[-3:])
        out.append(("time to ready (process start, CNN + RF, median of 3)", f"{best:.2f} s", "",
                    "<= 1 s", best <= 1.0))
    return out


def _report(point: Point) -> None:
    r = point.result
    print(f"{point.model:>9} rows={point.rows:<2} c={point.concurrency:<2} {point.system:<26} "
          f"{r['rps']:8.0f} req/s {r['rows_per_s']:8.0f} rows/s p50 {r['p50_ms']:7.3f} ms "
          f"p99 {r['p99_ms']:7.3f} ms cpu/req {r['cpu_us_per_request']:6.0f} us "
          f"errors {r['errors']} client cpu {r['client_cpu']:.0%}"
          + (f"  first error: {r['first_error']}" if r.get("first_error") else ""),
          file=sys.stderr, flush=True)


_NOTES = """\
Systems: **modelport** = `modelport serve` with its defaults (inference requests answered by
the fast lane in its HTTP protocol, dynamic batching on, max batch 64 rows, no queue delay,
models whose runs take under 1 ms run on the event loop, slower ones on their worker thread),
sent Open Inference Protocol requests with JSON tensors (`modelport JSON`) or binary tensors
both ways (`modelport binary`, what `tritonclient` sends by default);
**naive FastAPI** = `bench/naive_app.py` (pydantic body, `def` endpoint, `tolist()`), same
uvicorn, no access log; **raw ORT loop** = `session.run` back to back in one process.
`raw ORT loop, 0.2 ms idle` times the same run after a 0.2 ms sleep, as a server at concurrency 1
runs it after idling between requests: caches are colder and the difference is not the
server's overhead. CNN = PyTorch's MNIST example network (two 3x3 convolutions, 9216->128->10,
about 12 M multiply-adds per image); RF = 100 trees on sklearn's digits (64 features, 10
classes). ONNX Runtime at one intra-op thread everywhere; server and load generator each pinned
to its own core; rows/s counts rows of requests answered and checked. The machine may be shared:
"server CPU us/request" and "rows per server CPU-s" divide by the CPU time the server process
(all its threads) actually got, which a neighbour's load does not change the way it changes
wall-clock throughput; for the raw loop they are per second of its own run time.\
"""


def _write(args: argparse.Namespace, points: list[Point], summary: list[Any],
           ready: list[float]) -> None:
    from importlib import metadata

    def version(name: str) -> str:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return "-"

    env = {"python": platform.python_version(), "cpu": platform.processor() or platform.machine(),
           "cores_visible": len(os.sched_getaffinity(0)),
           **{n: version(n) for n in ("onnxruntime", "uvicorn", "starlette", "fastapi",
                                      "httptools", "uvloop", "orjson", "scikit-learn")}}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"env": env, "duration": args.duration,
                                     "points": [asdict(p) for p in points],
                                     "ready_s": ready, "summary": summary}, indent=1))
    lines = ["| model | rows/request | concurrency | system | req/s | rows/s | p50 ms | p99 ms "
             "| server CPU us/request | rows per server CPU-s | errors |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for p in points:
        r = p.result
        lines.append(f"| {p.model} | {p.rows} | {p.concurrency} | {p.system} | {r['rps']:.0f} | "
                     f"{r['rows_per_s']:.0f} | {r['p50_ms']:.3f} | {r['p99_ms']:.3f} | "
                     f"{r['cpu_us_per_request']:.0f} | {r['rows_per_cpu_s']:.0f} | "
                     f"{r['errors']} |")
    targets = ["| target | measured | per server CPU-second | goal | met |",
               "|---|---|---|---|---|"]
    targets += [f"| {t} | {m} | {c} | {g} | {'yes' if ok else 'NO'} |"
                for t, m, c, g, ok in summary]
    command = "python -m bench serve " + " ".join(
        shlex.quote(a) for a in sys.argv[1:] if a != "serve")
    text = "\n".join([
        "# Serving benchmark", "", _NOTES, "",
        f"Command: `{command.strip()}`; {args.duration:g} s recorded per point in "
        f"{args.rounds} interleaved rounds after {args.warmup:g} s warm-up; server and load "
        "generator pinned to separate cores; ONNX Runtime at one intra-op thread everywhere. "
        "Every response checked.", "",
        "Environment: " + ", ".join(f"{k} {v}" for k, v in env.items()), "",
        *targets, "", *lines, "",
        "Ready times (s, process start to /v2/health/ready): "
        + ", ".join(f"{t:.2f}" for t in ready), "",
    ])
    args.out.write_text(text)
    print("\n" + "\n".join(targets) + "\n\n" + "\n".join(lines))
    print(f"\nwrote {args.out} and {args.json}", file=sys.stderr)


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--loadgen":
        loadgen_main(sys.argv[2])
    else:
        sys.exit(main(sys.argv[1:]))

