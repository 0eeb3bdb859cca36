"""In-process measurements of each format and engine: size, save time, cold load, warm throughput,
single-row latency, peak RSS and parity with the original.

Load, throughput, latency and RSS are taken in fresh child processes (:mod:`._child`); save time
and parity in this process. Every failure becomes a reason on the engine's row, never an abort:
a missing Java empties the PMML cells and the other formats are still measured.
"""

from __future__ import annotations

import gzip
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

from formats.bundle import Bundle
from formats.compare.results import CompareOptions, EngineResult, Throughput
from formats.errors import ModelportError
from formats.load import ENGINES
from formats.parity import ParityReport, parity

__all__ = ["bench_frame", "measure_engines"]

Progress = Callable[[str], None]


def bench_frame(frame: pd.DataFrame, rows: int) -> pd.DataFrame:
    """``rows`` rows of ``frame``, repeated when it is shorter (a 100k batch from 344 birds)."""
    if len(frame) >= rows:
        return frame.head(rows).reset_index(drop=True)
    times = -(-rows // len(frame))
    return pd.concat([frame] * times, ignore_index=True).head(rows)


def measure_engines(
    bundle: Bundle,
    frame: pd.DataFrame,
    options: CompareOptions,
    progress: Progress,
) -> list[EngineResult]:
    """One :class:`EngineResult` per (format, engine) of ``ENGINES`` that ``options`` selects."""
    manifest = bundle.manifest
    results: list[EngineResult] = []
    with tempfile.TemporaryDirectory(prefix="modelport-compare-") as tmp:
        rows = Path(tmp) / "rows.parquet"
        bench_frame(frame, max(options.batch_sizes)).to_parquet(rows, index=False)
        model, sample = _original(bundle)
        saves: dict[str, tuple[float | None, str]] = {}
        for fmt, engines in ENGINES.items():
            if options.formats is not None and fmt not in options.formats:
                continue
            entry = manifest.formats.get(fmt)
            for engine in engines:
                if entry is None or not entry.saved:
                    reason = entry.why_not() if entry else "not saved: not in the bundle"
                    results.append(EngineResult(fmt, engine, "not saved", reason))
                    continue
                result = EngineResult(fmt, engine, "measured")
                result.file_bytes, result.gzip_bytes = _sizes(bundle, fmt)
                if fmt not in saves:
                    progress(f"saving {fmt} again to time it")
                    saves[fmt] = _save_seconds(model, sample, fmt, Path(tmp))
                result.save_seconds, result.save_error = saves[fmt]
                progress(f"{fmt}/{engine}: {options.repeats} cold loads and the warm benchmark")
                _run_children(result, bundle, rows, options, Path(tmp))
                results.append(result)
    progress(f"parity on {min(len(frame), options.parity_rows):,} rows")
    _add_parity(results, bundle, frame.head(options.parity_rows))
    return results


def _original(bundle: Bundle) -> tuple[Any, pd.DataFrame | None]:
    """The pickled model and the bundle's input example, to re-save from (None: no pickle)."""
    import io

    from formats.sklearn_formats import load_pickle

    if not bundle.manifest.formats.get("pickle") or not bundle.manifest.formats["pickle"].saved:
        return None, None
    sample = pd.read_parquet(io.BytesIO(bundle.read("input_example.parquet")))
    return load_pickle(bundle.read(bundle.file_of("pickle"))), sample


def _sizes(bundle: Bundle, fmt: str) -> tuple[int, int]:
    data = bundle.read(bundle.file_of(fmt))
    return len(data), len(gzip.compress(data, compresslevel=6))


def _save_seconds(
    model: Any, sample: pd.DataFrame | None, fmt: str, tmp: Path
) -> tuple[float | None, str]:
    """Seconds to write ``fmt`` alone with formats.save (the manifest does not record it)."""
    from formats.save import save

    if model is None or sample is None:
        return None, "not measured: the bundle has no pickle to save again from"
    start = time.perf_counter()
    try:
        bundle = save(model, tmp / f"save-{fmt}", sample=sample, formats=[fmt])
    except ModelportError as exc:
        return None, str(exc)
    seconds = time.perf_counter() - start
    entry = bundle.manifest.formats[fmt]
    return (seconds, "") if entry.saved else (None, entry.why_not())


def _run_children(
    result: EngineResult, bundle: Bundle, rows: Path, options: CompareOptions, tmp: Path
) -> None:
    """``repeats`` fresh processes: each times the load, the first does the warm benchmark."""
    loads = []
    for i in range(max(1, options.repeats)):
        answer = _child(bundle, result.fmt, result.engine, rows, options, tmp, bench=i == 0)
        if "error" in answer:
            result.status, result.reason = "error", str(answer["error"])
            return
        loads.append(float(answer["load_seconds"]))
        if i == 0:
            result.first_predict_ms = answer["first_predict_ms"]
            result.throughput = [Throughput(**t) for t in answer["throughput"]]
            result.latency_p50_ms = answer["latency_p50_ms"]
            result.latency_p99_ms = answer["latency_p99_ms"]
            result.latency_samples = answer["latency_samples"]
            result.rss_python_mb = answer["rss_python_mb"]
            result.rss_jvm_mb = answer["rss_jvm_mb"]
    result.load_runs = loads
    result.load_seconds = statistics.median(loads)


def _child(
    bundle: Bundle,
    fmt: str,
    engine: str,
    rows: Path,
    options: CompareOptions,
    tmp: Path,
    *,
    bench: bool,
) -> dict[str, Any]:
    out = tmp / f"{fmt}-{engine}.json"
    out.unlink(missing_ok=True)
    args = {
        "bundle": bundle.location, "fmt": fmt, "engine": engine, "rows": str(rows),
        "bench": bench, "batches": list(options.batch_sizes), "threads": options.threads,
        "latency_rows": options.latency_rows, "min_seconds": options.min_seconds, "out": str(out),
    }  # fmt: skip
    (tmp / "args.json").write_text(json.dumps(args))
    command = [sys.executable, "-m", "formats.compare._child", str(tmp / "args.json")]
    try:
        proc = subprocess.run(
            command, capture_output=True, text=True, timeout=options.child_timeout
        )
    except subprocess.TimeoutExpired:
        return {"error": f"the measuring process ran over {options.child_timeout:.0f} s"}
    if not out.exists():
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        return {"error": f"the measuring process exited {proc.returncode}: {tail[0]}"}
    answer: dict[str, Any] = json.loads(out.read_text())
    return answer


def _add_parity(results: list[EngineResult], bundle: Bundle, frame: pd.DataFrame) -> None:
    """formats.parity's verdict on each row: the same function `python -m formats parity` runs."""
    measured = [r for r in results if r.status == "measured"]
    if not measured:
        return
    reason = ""
    try:
        wanted = [r.fmt for r in measured if r.fmt != "pickle"]  # the pickle row is the original
        report: ParityReport | None = parity(bundle, frame, formats=wanted)
    except ModelportError as exc:  # no pickle: there is no original to compare with
        report, reason = None, str(exc)
    for r in measured:
        if r.fmt == "pickle":
            r.parity, r.label_agreement, r.max_abs = "original", 1.0, 0.0
            continue
        found = None if report is None else next(
            (p for p in report.results if (p.fmt, p.engine) == (r.fmt, r.engine)), None
        )
        if found is None:
            r.parity, r.parity_reason = "not measured", reason
            continue
        r.parity, r.parity_reason = found.status, found.reason
        r.label_agreement = found.label_agreement
        r.max_abs = max((o.max_abs for o in found.outputs), default=None)
