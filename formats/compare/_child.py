"""One engine measured in a fresh process: ``python -m formats.compare._child ARGS.json``.

A fresh process per run is what makes the load time *cold* (the engine's library is imported and
its JVM started inside the timed ``formats.load``) and the peak RSS the engine's own, not the sum
of every engine the parent has touched. The parent reads the JSON this writes to ``args["out"]``.
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

WARM_UP_LIMIT = 2.0


def _descendants(pid: int) -> list[int]:
    """Child processes of ``pid``, recursively, from /proc (psutil is not a dependency)."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            # The comm field may hold spaces and parentheses: the ppid follows the last ')'.
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        parents.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        children = parents.get(todo.pop(), [])
        found += children
        todo += children
    return found


def _peak_kib(pid: int) -> int:
    """VmHWM (peak resident set) of a process, KiB; 0 when it is gone or unreadable."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def _throughput(
    scorer: Any, frame: pd.DataFrame, batch: int, min_seconds: float, last_rate: float | None
) -> dict[str, Any]:
    part = frame.head(batch)
    # Warm-up: first-call allocations and JIT are not throughput. Skipped where one call would
    # take over WARM_UP_LIMIT s by the last batch size's rate (a slow engine at the largest
    # batch): the smaller batches' calls have warmed the same code, and the default run must
    # stay short.
    if last_rate is None or batch / last_rate <= WARM_UP_LIMIT:
        scorer.predict(part)
    calls, start = 0, time.perf_counter()
    while True:
        scorer.predict(part)
        calls += 1
        elapsed = time.perf_counter() - start
        if elapsed >= min_seconds or calls >= 10_000:
            break
    return {"batch": batch, "rows_per_s": batch * calls / elapsed, "calls": calls,
            "seconds": elapsed}  # fmt: skip


def _latency(scorer: Any, frame: pd.DataFrame, rows: int) -> list[float]:
    # Distinct rows, one call each: what a request/response service does.
    singles = [frame.iloc[i : i + 1] for i in range(min(rows, len(frame)))]
    scorer.predict(singles[0])
    times = []
    for row in singles:
        start = time.perf_counter()
        scorer.predict(row)
        times.append((time.perf_counter() - start) * 1000)
    return times


def measure(args: dict[str, Any]) -> dict[str, Any]:
    from formats import load

    frame = pd.read_parquet(args["rows"])
    options = {"intra_op_threads": args["threads"]} if args["fmt"] == "onnx" else {}
    start = time.perf_counter()
    scorer = load(args["bundle"], args["fmt"], args["engine"], **options)
    out: dict[str, Any] = {"load_seconds": time.perf_counter() - start}
    try:
        start = time.perf_counter()
        scorer.predict(frame.head(1))
        out["first_predict_ms"] = (time.perf_counter() - start) * 1000
        if args["bench"]:
            rate, out["throughput"] = None, []
            for batch in args["batches"]:
                result = _throughput(scorer, frame, batch, args["min_seconds"], rate)
                out["throughput"].append(result)
                rate = result["rows_per_s"]
            times = _latency(scorer, frame, args["latency_rows"])
            out["latency_p50_ms"] = float(np.percentile(times, 50))
            out["latency_p99_ms"] = float(np.percentile(times, 99))
            out["latency_samples"] = len(times)
            # Read before close(): closing a PMML scorer shuts its JVM down. VmHWM, not
            # ru_maxrss: Linux keeps ru_maxrss across exec, so it would start at the parent's.
            out["rss_python_mb"] = _peak_kib(os.getpid()) / 1024
            jvm = sum(_peak_kib(p) for p in _descendants(os.getpid()))
            out["rss_jvm_mb"] = jvm / 1024 if jvm else None
    finally:
        close = getattr(scorer, "close", None)
        if close is not None:
            close()
    return out


def main() -> int:
    args = json.loads(Path(sys.argv[1]).read_text())
    try:
        result = measure(args)
    except Exception as exc:  # every failure goes back to the parent as data, one line
        from formats.errors import ModelportError

        message = " ".join(str(exc).split()) or type(exc).__name__
        if not isinstance(exc, ModelportError):
            message = f"{type(exc).__name__}: {message}"
            traceback.print_exc()
        result = {"error": message}
    Path(args["out"]).write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
