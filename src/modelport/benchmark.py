"""``modelport bench``: latency and throughput of a model in ONNX Runtime and in its framework.

``benchmark(model, native=...)`` times the ONNX model at several batch sizes and thread counts
(ONNX Runtime's intra-op threads), and the original framework model on the same inputs when one is
given, so the two can be compared row for row. Inputs are the version's input example (or ones
synthesized from the signature) tiled to each batch size. The result is data: ``to_dict`` for
JSON, ``render`` for a rich table, ``plot`` for a matplotlib chart.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import platform
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from modelport._files import atomic_path
from modelport._lazy import require
from modelport.errors import InputError, UsageError
from modelport.signature import Signature

if TYPE_CHECKING:
    from rich.table import Table

__all__ = ["BenchmarkResult", "Measurement", "benchmark", "synthesize_feed", "tile_feed"]

ONNX_ENGINE = "onnxruntime"
_DEFAULT_DURATION = 1.0  # seconds per (engine, batch size, threads) when nothing is said
_MIN_ITERATIONS = 5
_SYMBOLIC_DIM = 8  # size given to a symbolic non-batch dimension when synthesizing inputs

Feed = dict[str, np.ndarray]
Runner = Callable[[Mapping[str, np.ndarray]], Any]


@dataclass(frozen=True)
class Measurement:
    engine: str  # "onnxruntime" or the original framework's name ("torch", "sklearn", ...)
    batch_size: int
    threads: int
    iterations: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    rows_per_s: float

    @classmethod
    def from_times(
        cls, engine: str, batch_size: int, threads: int, seconds: Sequence[float]
    ) -> Measurement:
        ms = np.asarray(seconds, dtype=np.float64) * 1000.0
        p50, p90, p99 = np.percentile(ms, [50, 90, 99])
        total = float(np.sum(seconds))
        return cls(
            engine,
            batch_size,
            threads,
            len(seconds),
            float(p50),
            float(p90),
            float(p99),
            float(ms.mean()),
            batch_size * len(seconds) / total if total > 0 else float("inf"),
        )


@dataclass
class BenchmarkResult:
    model: str
    measurements: list[Measurement]
    settings: dict[str, Any] = field(default_factory=dict)
    environment: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def engines(self) -> list[str]:
        return list(dict.fromkeys(m.engine for m in self.measurements))

    def get(self, engine: str, batch_size: int, threads: int) -> Measurement | None:
        for m in self.measurements:
            if (m.engine, m.batch_size, m.threads) == (engine, batch_size, threads):
                return m
        return None

    def speedups(self) -> list[dict[str, Any]]:
        """Native p50 latency over ONNX Runtime's p50, per batch size and thread count."""
        rows = []
        for m in self.measurements:
            if m.engine == ONNX_ENGINE:
                continue
            onnx = self.get(ONNX_ENGINE, m.batch_size, m.threads)
            if onnx is not None and onnx.p50_ms > 0:
                rows.append(
                    {
                        "engine": m.engine,
                        "batch_size": m.batch_size,
                        "threads": m.threads,
                        "speedup_p50": m.p50_ms / onnx.p50_ms,
                        "speedup_throughput": onnx.rows_per_s / m.rows_per_s,
                    }
                )
        return rows

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "settings": self.settings,
            "environment": self.environment,
            "measurements": [asdict(m) for m in self.measurements],
            "speedups": self.speedups(),
            "notes": self.notes,
        }

    def save_json(self, path: str | Path) -> Path:
        with atomic_path(path) as tmp:
            tmp.write_text(json.dumps(self.to_dict(), indent=2) + "\n", encoding="utf-8")
        return Path(path)

    def render(self) -> Table:
        from rich.table import Table

        native = [e for e in self.engines if e != ONNX_ENGINE]
        caption = f"speedup: {native[0]} p50 / {ONNX_ENGINE} p50" if native else None
        table = Table(title=f"modelport bench: {self.model}", caption=caption)
        table.add_column("engine", no_wrap=True)
        for header in ("batch", "threads", "p50 ms", "p90 ms", "p99 ms", "rows/s"):
            table.add_column(header, justify="right", no_wrap=True)
        if native:
            table.add_column("speedup", justify="right", no_wrap=True)
        speedup = {(s["batch_size"], s["threads"]): s["speedup_p50"] for s in self.speedups()}
        for m in sorted(self.measurements, key=lambda m: (m.threads, m.batch_size, m.engine)):
            row = [
                m.engine,
                str(m.batch_size),
                str(m.threads),
                f"{m.p50_ms:.3f}",
                f"{m.p90_ms:.3f}",
                f"{m.p99_ms:.3f}",
                f"{m.rows_per_s:,.0f}",
            ]
            if native:
                ratio = speedup.get((m.batch_size, m.threads))
                row.append(f"{ratio:.1f}x" if m.engine == ONNX_ENGINE and ratio else "")
            table.add_row(*row)
        return table

    def plot(self, path: str | Path) -> Path:
        """Latency (p50, with the p90 band) and throughput against batch size, per engine."""
        matplotlib = require("matplotlib", "plot")
        matplotlib.use("Agg")  # no display here, and no GUI event loop in a CLI
        from matplotlib.figure import Figure
        from matplotlib.ticker import FuncFormatter, NullLocator

        figure = Figure(figsize=(11, 4.5), layout="constrained")
        latency, throughput = figure.subplots(1, 2)
        sizes = sorted({m.batch_size for m in self.measurements})
        series: dict[tuple[str, int], list[Measurement]] = {}
        for m in self.measurements:
            series.setdefault((m.engine, m.threads), []).append(m)
        for (engine, threads), points in series.items():
            points.sort(key=lambda m: m.batch_size)
            x = [m.batch_size for m in points]
            label = f"{engine} ({threads} thread{'s' if threads != 1 else ''})"
            line = latency.plot(x, [m.p50_ms for m in points], marker="o", label=label)[0]
            latency.fill_between(
                x, [m.p50_ms for m in points], [m.p90_ms for m in points],
                color=line.get_color(), alpha=0.15,
            )  # fmt: skip
            throughput.plot(x, [m.rows_per_s for m in points], marker="o", label=label)
        for axis, title, unit in (
            (latency, "latency (p50, band to p90)", "ms per batch"),
            (throughput, "throughput", "rows/s"),
        ):
            axis.set_xscale("log", base=2)
            axis.set_xticks(sizes, [str(b) for b in sizes])  # batch sizes, not powers of two
            axis.xaxis.set_minor_locator(NullLocator())
            if axis is throughput:  # engines can differ by orders of magnitude here
                axis.set_yscale("log")
            else:  # linear from zero: ratios between the lines read off directly
                axis.set_ylim(bottom=0)
                axis.yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:,.6g}"))
            axis.set_xlabel("batch size")
            axis.set_ylabel(unit)
            axis.set_title(title)
            axis.grid(True, which="both", alpha=0.3)
            axis.legend(fontsize="small")
        figure.suptitle(self.model)
        path = Path(path)
        with atomic_path(path) as tmp:
            figure.savefig(tmp, format="png", dpi=110)
        return path


# --------------------------------------------------------------------------- the benchmark
def benchmark(
    model: str | Path,
    *,
    repo: str | Path | None = None,
    native: Any = None,
    framework: str | None = None,
    model_class: str | None = None,
    batch_sizes: Sequence[int] = (1, 8, 32),
    threads: Sequence[int] = (1,),
    duration: float | None = None,
    iterations: int | None = None,
    warmup: int = 3,
    sample: Any = None,
    providers: Sequence[str] | None = None,
    progress: Callable[[str], None] | None = None,
) -> BenchmarkResult:
    """Time ``model`` (repository reference or .onnx file) and, with ``native``, its original.

    ``native`` is the original model: a framework object or a file the converters read (with
    ``framework`` and ``model_class`` when they cannot be detected). Each configuration runs for
    ``iterations`` calls, or for ``duration`` seconds (default 1 s) after ``warmup`` calls.
    """
    from modelport.predict import resolve_model_file
    from modelport.runtime import Session, SessionOptions

    batch_sizes = _positive("batch size", batch_sizes)
    threads = _positive("thread count", threads)
    if iterations is not None and iterations < 1:
        raise UsageError(f"--iterations must be at least 1, got {iterations}")
    # "not 0 < d < inf" also refuses NaN and infinity, on which the timing loop never ends.
    if duration is not None and not 0 < duration < math.inf:
        raise UsageError(f"--duration must be a positive number of seconds, got {duration}")
    if warmup < 0:
        raise UsageError(f"--warmup must be 0 or more, got {warmup}")
    if iterations is None and duration is None:
        duration = _DEFAULT_DURATION

    resolved = resolve_model_file(model, repo)

    def make_session(n_threads: int) -> Session:
        options = SessionOptions(
            providers=tuple(providers or ()), intra_op_threads=n_threads, inter_op_threads=1
        )
        return Session(resolved.path, options)

    # The first thread count's session also gives the signature: the model is loaded once less.
    first = make_session(threads[0])
    signature = first.signature
    notes: list[str] = []

    example = _as_feed(sample, signature) if sample is not None else None
    if example is None and resolved.version is not None:
        example = resolved.version.input_example()
    if example is None:
        example, synth_notes = synthesize_feed(signature, rows=4)
        notes.extend(synth_notes)
    else:
        signature.check_feed(example)
    runner: Runner | None = None
    engine = ""
    if native is not None:
        if framework is None and resolved.version is not None:
            recorded = resolved.version.manifest.framework
            framework = recorded if recorded and recorded != "onnx" else None
        # The same rows go to both engines, keyed by the ONNX input names.
        runner, engine = _native_runner(native, framework, model_class, signature, example)

    fixed = [s.name for s in signature.inputs if s.shape and isinstance(s.shape[0], int)]
    if fixed:
        batch = signature.input(fixed[0]).shape[0]
        if any(b != batch for b in batch_sizes):
            notes.append(f"the model has a fixed batch of {batch}; only that size was timed")
        batch_sizes = [batch]  # type: ignore[list-item]

    measurements: list[Measurement] = []
    for i, n_threads in enumerate(threads):
        session = first if i == 0 else make_session(n_threads)
        for batch in batch_sizes:
            feed = tile_feed(example, batch)
            if progress:
                progress(f"{ONNX_ENGINE} batch {batch} threads {n_threads}")
            times = _time(session.run, feed, warmup, iterations, duration)
            measurements.append(Measurement.from_times(ONNX_ENGINE, batch, n_threads, times))
            if runner is not None:
                if progress:
                    progress(f"{engine} batch {batch} threads {n_threads}")
                with _native_threads(n_threads):
                    times = _time(runner, feed, warmup, iterations, duration)
                measurements.append(Measurement.from_times(engine, batch, n_threads, times))
    if runner is not None:
        notes.append(f"{engine} ran with as many threads as ONNX Runtime (threads column)")
    return BenchmarkResult(
        model=resolved.label,
        measurements=measurements,
        settings={
            "batch_sizes": list(batch_sizes),
            "threads": list(threads),
            "iterations": iterations,
            "duration_s": duration,
            "warmup": warmup,
            "providers": list(providers or ("CPUExecutionProvider",)),
        },
        environment=_environment(engine),
        notes=notes,
    )


def _positive(what: str, values: Sequence[int]) -> list[int]:
    values = [int(v) for v in values]
    if not values or any(v < 1 for v in values):
        raise UsageError(f"every {what} must be a positive integer, got {values}")
    return list(dict.fromkeys(values))


def _time(
    call: Runner, feed: Feed, warmup: int, iterations: int | None, duration: float | None
) -> list[float]:
    for _ in range(max(warmup, 0)):
        call(feed)
    times: list[float] = []
    clock = time.perf_counter
    deadline = clock() + duration if duration is not None else None
    while True:
        start = clock()
        call(feed)
        end = clock()
        times.append(end - start)
        if iterations is not None and len(times) >= iterations:
            break
        if deadline is not None and end >= deadline and len(times) >= _MIN_ITERATIONS:
            break
    return times


# --------------------------------------------------------------------------- inputs
def _as_feed(sample: Any, signature: Signature) -> Feed:
    if isinstance(sample, Mapping):
        return {str(k): np.asarray(v) for k, v in sample.items()}
    if len(signature.inputs) != 1:
        raise InputError(
            f"the model has inputs {signature.input_names}; give a sample with one array each"
        )
    return {signature.inputs[0].name: np.asarray(sample)}


def tile_feed(feed: Mapping[str, np.ndarray], batch_size: int) -> Feed:
    """Repeat (or cut) the example's rows to exactly ``batch_size`` rows per input."""
    out = {}
    for name, array in feed.items():
        array = np.asarray(array)
        if array.ndim == 0 or array.shape[0] == 0:
            raise InputError(f"the input example for {name!r} has no rows to tile")
        rows = np.arange(batch_size) % array.shape[0]
        out[name] = np.ascontiguousarray(array[rows])
    return out


def synthesize_feed(signature: Signature, rows: int = 1, seed: int = 0) -> tuple[Feed, list[str]]:
    """Inputs of the right dtypes and shapes for timing: normal floats, zeros for integers."""
    from modelport.convert.onnx import synthesize_feed as from_signature

    notes = ["no input example: timed on inputs synthesized from the signature"]
    for spec in signature.inputs:
        notes += [
            f"dimension {axis} of {spec.name!r} ({dim}) set to {_SYMBOLIC_DIM}"
            for axis, dim in enumerate(spec.shape)
            if axis > 0 and not isinstance(dim, int)
        ]
    feed = from_signature(signature, seed, batch=rows, other=_SYMBOLIC_DIM, text="a")
    return feed, notes


# --------------------------------------------------------------------------- the original model
def _native_runner(
    native: Any,
    framework: str | None,
    model_class: str | None,
    signature: Signature,
    example: Feed | None,
) -> tuple[Runner, str]:
    from modelport.convert import original_runner

    # A one-input model gets its array (converters read a dict as one column per key).
    sample: Any = next(iter(example.values())) if example and len(example) == 1 else example
    runner, _, name = original_runner(
        native, signature, sample, framework=framework, model_class=model_class
    )
    return runner, name


@contextlib.contextmanager
def _native_threads(n: int) -> Iterator[None]:
    """Give the original framework the same thread budget as ONNX Runtime, then restore it."""
    torch = sys.modules.get("torch")
    previous = torch.get_num_threads() if torch is not None else None
    limiter: Any = contextlib.nullcontext()
    try:
        from threadpoolctl import threadpool_limits

        limiter = threadpool_limits(limits=n)  # OpenMP/BLAS: sklearn, xgboost, lightgbm, numpy
    except ImportError:
        pass
    try:
        if torch is not None:
            torch.set_num_threads(n)
        with limiter:
            yield
    finally:
        if torch is not None and previous is not None:
            torch.set_num_threads(previous)


def _environment(native_engine: str) -> dict[str, Any]:
    import onnxruntime

    env: dict[str, Any] = {
        "onnxruntime": onnxruntime.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
    }
    if native_engine:
        package = {"sklearn": "scikit-learn", "keras": "keras", "trees": None}.get(
            native_engine, native_engine
        )
        if package:
            with contextlib.suppress(Exception):
                from importlib.metadata import version

                env[native_engine] = version(package)
    return env
