"""Latency measured here: median per batch size, the models interleaved so load hits all alike.

Timings run ONNX Runtime as modelport serves (all graph optimizations on at load) but with one
intra-op thread, so that the numbers compare kernels rather than how many cores were free. On a
shared machine a burst of load would favour whichever model ran in the quiet moment; taking
turns in short slices spreads any burst over every candidate.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnx

from modelport.optimize.data import Feed, feed_rows, take_rows
from modelport.signature import Signature

__all__ = ["Latency", "SpeedResult", "batch_sizes", "measure"]

DEFAULT_BATCHES = (1, 32)
WARMUP_RUNS = 3
MIN_RUNS = 5
SLICE_S = 0.05


@dataclass(frozen=True)
class Latency:
    batch: int
    median_ms: float
    p90_ms: float
    runs: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "batch": self.batch,
            "median_ms": round(self.median_ms, 4),
            "p90_ms": round(self.p90_ms, 4),
            "runs": self.runs,
        }


@dataclass
class SpeedResult:
    latency: dict[int, Latency] = field(default_factory=dict)
    load_ms: float = 0.0
    threads: int = 1

    def median_ms(self, batch: int) -> float | None:
        lat = self.latency.get(batch)
        return lat.median_ms if lat else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "threads": self.threads,
            "load_ms": round(self.load_ms, 3),
            "latency": {f"batch_{b}": lat.to_dict() for b, lat in sorted(self.latency.items())},
        }


def batch_sizes(signature: Signature) -> tuple[int, ...]:
    """Batch 1 and 32 where the batch axis is free; the fixed batch size otherwise."""
    fixed = {s.shape[0] for s in signature.inputs if s.shape and isinstance(s.shape[0], int)}
    if len(fixed) == 1:
        return (int(next(iter(fixed))),)  # type: ignore[call-overload]
    return DEFAULT_BATCHES


def measure(
    models: Mapping[str, onnx.ModelProto | bytes],
    rows: Feed,
    batches: Sequence[int] = DEFAULT_BATCHES,
    budget_s: float = 1.0,
    threads: int = 1,
) -> dict[str, SpeedResult]:
    """Median latency of each model at each batch size, about ``budget_s`` seconds per model.

    Batches are built by cycling through ``rows``, so any number of rows will do.
    """
    from modelport.runtime import Session, SessionOptions

    options = SessionOptions(intra_op_threads=threads, inter_op_threads=1)
    count = feed_rows(rows)
    feeds = {b: take_rows(rows, np.arange(b) % count) for b in batches}
    sessions = {}
    results: dict[str, SpeedResult] = {}
    for name, model in models.items():
        data = model if isinstance(model, bytes) else model.SerializeToString()
        start = time.perf_counter()
        session = Session(data, options)
        results[name] = SpeedResult(load_ms=(time.perf_counter() - start) * 1e3, threads=threads)
        sessions[name] = session.ort_session
        for feed in feeds.values():
            for _ in range(WARMUP_RUNS):
                session.run(feed)  # also maps a model that cannot run this batch to our error

    times: dict[tuple[str, int], list[float]] = {(n, b): [] for n in sessions for b in batches}
    deadline = time.perf_counter() + budget_s * len(sessions)
    slice_s = SLICE_S / len(batches)
    while True:
        for name, ort_session in sessions.items():
            for batch, feed in feeds.items():
                samples = times[(name, batch)]
                end = time.perf_counter() + slice_s
                while True:
                    t0 = time.perf_counter()
                    ort_session.run(None, feed)
                    t1 = time.perf_counter()
                    samples.append(t1 - t0)
                    if t1 >= end:
                        break
        enough = all(len(s) >= MIN_RUNS for s in times.values())
        if enough and time.perf_counter() >= deadline:
            break

    for (name, batch), samples in times.items():
        ms = np.asarray(samples) * 1e3
        results[name].latency[batch] = Latency(
            batch, float(np.median(ms)), float(np.percentile(ms, 90)), len(samples)
        )
    return results
