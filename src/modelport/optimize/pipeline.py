"""The pipeline behind ``optimize()``: data in, candidates built and gated, the fastest stored.

Defaults: with neither ``level`` nor ``quantize``, ``quantize="auto"``, which tries dynamic,
static and static per-channel int8. Quantized candidates are stored as ONNX Runtime's quantizer
writes them (QDQ or integer operators, portable across processors); ``level`` optimizes them
offline as well. Speed is measured with one intra-op thread; "fastest" is the highest geometric
mean of the speed-ups over the measured batch sizes (1 and 32).

Evaluation data, in order of preference: ``eval_data``, the calibration file, rows generated
around the version's input example (the report then says the gate was weak). Calibration data:
the calibration file, else generated rows, else the evaluation data.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import onnx

from modelport.errors import InputError, ModelportError, UsageError, VerificationFailedError
from modelport.optimize.data import (
    Feed,
    feed_rows,
    generate_around,
    iter_batches,
    load_feed,
    resolve_labels,
    take_rows,
)
from modelport.optimize.gate import compare, predictions
from modelport.optimize.graph import (
    HARDWARE_SPECIFIC_LEVELS,
    check_level,
    optimize_graph,
    strip_unused_opsets,
)
from modelport.optimize.quantize import (
    CALIBRATION_BATCH,
    CALIBRATION_ROWS,
    check_mode,
    cpu_features,
    default_settings,
    preprocess,
    quantize_dynamic_model,
    quantize_static_model,
)
from modelport.optimize.register import register_candidate
from modelport.optimize.report import Candidate, OptimizationReport
from modelport.optimize.speed import SpeedResult, batch_sizes, measure

if TYPE_CHECKING:
    from modelport.repository import ModelVersion, Repository
    from modelport.signature import Signature

__all__ = ["optimize"]

EVAL_BATCH = 256
# Below this mean speed-up the report says the chosen candidate is slower (timing noise aside).
SLOWER_THAN = 0.95


@dataclass
class _Data:
    """What the gate and the calibration run on."""

    eval_feed: Feed
    eval_source: str
    labels: np.ndarray | None
    calibration: Feed | None = None
    calibration_source: str | None = None
    notes: list[str] = field(default_factory=list)


def optimize(
    repo: Repository,
    ref: str,
    level: str | None = None,
    quantize: str | None = None,
    calibration: str | Path | None = None,
    eval_data: str | Path | None = None,
    labels: str | Path | np.ndarray | None = None,
    max_accuracy_drop: float = 0.005,
    atol: float | None = None,
    per_channel: bool = False,
    *,
    rtol: float | None = None,
    register: bool = True,
    speed_budget_s: float = 1.0,
    threads: int = 1,
    measure_all: bool = False,
    min_speedup: float | None = None,
) -> OptimizationReport:
    """Optimize version ``ref`` of ``repo``; register the fastest candidate that passes the gate.

    ``labels`` is an array, a file, or the name of a column (or .npz key) of the evaluation
    data. ``max_accuracy_drop`` is a fraction (see :mod:`modelport.optimize.gate` for how each
    kind of model reads it); ``atol`` also bounds every float output's max absolute error;
    ``rtol`` is the relative error budget of models that are not classifiers. ``register=False``
    gates and times but stores nothing; ``speed_budget_s`` is the timing per model;
    ``measure_all`` also times candidates the gate refused (for benchmarks). ``min_speedup``
    is the mean speed-up over the float model the chosen candidate needs to be registered:
    1.0 by default with ``quantize="auto"`` (an "optimization" that runs slower here is not
    one), none when a mode was named explicitly (the user may want the smaller file). Raises
    VerificationFailedError (exit 1) carrying the report when no candidate passes.
    """
    _check_budget(max_accuracy_drop, atol, rtol, speed_budget_s)
    if min_speedup is not None and not 0 <= min_speedup < math.inf:
        raise UsageError(f"--min-speedup must be a number 0 or more, got {min_speedup}")
    if level is not None:
        check_level(level)
    if quantize is not None:
        check_mode(quantize)
    if level is None and quantize is None:
        quantize = "auto"
    if min_speedup is None:
        min_speedup = 1.0 if quantize == "auto" else 0.0

    version = repo.load(ref)
    model = onnx.load(str(version.model_path))
    batches = batch_sizes(version.signature)
    fixed_batch = batches[0] if len(batches) == 1 else None
    candidates = _plan(quantize, level, per_channel)
    static = any(c.quantize == "static" for c in candidates)
    data = _data(version, calibration, eval_data, labels, fixed_batch, static)

    report = OptimizationReport(
        source=version.ref,
        max_accuracy_drop=max_accuracy_drop,
        atol=atol,
        rtol=rtol,
        eval_source=data.eval_source,
        eval_rows=feed_rows(data.eval_feed),
        calibration_source=data.calibration_source,
        candidates=candidates,
        baseline_size=model.ByteSize(),
        cpu=cpu_features(),
        notes=data.notes,
    )
    if any(c.quantize for c in candidates) and default_settings().reduce_range:
        report.notes.append(
            "this processor has no VNNI int8 dot-product instructions: int8 gains are smaller "
            "than on newer processors; weights use 7 bits (reduce_range) to avoid saturation"
        )
    if level in HARDWARE_SPECIFIC_LEVELS:
        report.notes.append(
            f"level {level!r} rewrites the graph for this processor's vector width: the stored "
            "model should run only on machines like this one (use 'extended' to stay portable)"
        )

    predict = predictions(
        version.signature,
        task=version.manifest.source.get("task"),
        label_output=_label_output(version),
        labels_given=data.labels is not None,
    )
    _build_and_gate(
        model,
        candidates,
        version.signature,
        data,
        fixed_batch,
        predict=predict,
        labels=data.labels,
        max_accuracy_drop=max_accuracy_drop,
        atol=atol,
        rtol=rtol,
    )
    passed = [c for c in candidates if c.passed]
    if not passed:
        problems = [p for c in candidates for p in _problems(c)]
        first = problems[0] if problems else "no candidate could be built"
        raise VerificationFailedError(
            f"no optimized candidate of {version.ref} passed the accuracy gate ({first}); "
            "nothing was registered",
            report=report,
        )
    timed = [c for c in candidates if c.model is not None and c.error is None]
    _time_and_choose(
        report, model, timed if measure_all else passed, data.eval_feed, batches,
        speed_budget_s, threads,
    )  # fmt: skip
    chosen = report.candidate(str(report.chosen))
    speedup = _mean_speedup(chosen, report.baseline)
    if speedup < min_speedup:
        report.chosen = None
        raise VerificationFailedError(
            f"no candidate of {version.ref} that passed the gate is faster than the float model "
            f"here (best: {chosen.name} at {speedup:.2f}x, needed {min_speedup:g}x); nothing was "
            "registered (name a mode, e.g. --quantize static, to register it anyway)",
            report=report,
        )
    if register:
        report.registered = register_candidate(repo, version, report, chosen)
    return report


def _data(
    version: ModelVersion,
    calibration: str | Path | None,
    eval_data: str | Path | None,
    labels: Any,
    fixed_batch: int | None,
    static: bool,
) -> _Data:
    signature = version.signature
    # A string that names no file is a column (or .npz key) of the evaluation data.
    label_key = labels if isinstance(labels, str) and not Path(labels).is_file() else None
    calib_feed = calib_labels = None
    if calibration is not None:
        calib_feed, calib_labels = load_feed(calibration, signature, label_key)
        if static:
            _require_finite(calib_feed, calibration)
    example = version.input_example()
    notes: list[str] = []
    if eval_data is not None:
        eval_feed, column = load_feed(eval_data, signature, label_key)
        eval_source = f"file {Path(eval_data).name}"
    elif calib_feed is not None:
        eval_feed, column = calib_feed, calib_labels
        eval_source = f"calibration file {Path(str(calibration)).name}"
    elif example:
        if labels is not None:
            raise UsageError("labels need evaluation data to go with them: add --eval FILE")
        eval_feed, column = generate_around(example), None
        eval_source = "inputs generated around the input example"
        notes.append(
            "the gate ran on generated inputs, a weak test of accuracy: pass --eval with real "
            "data (and --labels) to measure it"
        )
    else:
        raise UsageError(
            f"{version.ref} has no input example; give evaluation data with --eval FILE "
            "or --calibration FILE"
        )
    truth = _labels(labels, label_key, column, feed_rows(eval_feed))
    index = _fit_rows(feed_rows(eval_feed), fixed_batch)
    if index is not None:
        eval_feed = take_rows(eval_feed, index)
        truth = None if truth is None else truth[index]
    data = _Data(eval_feed, eval_source, truth, notes=notes)
    if static:
        data.calibration, data.calibration_source = _calibration(
            calib_feed, calibration, example, eval_feed
        )
        index = _fit_rows(feed_rows(data.calibration), fixed_batch)
        if index is not None:
            data.calibration = take_rows(data.calibration, index)
        if calibration is None:
            notes.append(
                f"static quantization was calibrated on {data.calibration_source}; "
                "pass --calibration with real inputs for better activation ranges"
            )
    return data


def _require_finite(feed: Mapping[str, np.ndarray], path: str | Path) -> None:
    """Static calibration derives value ranges from the data: NaN or inf make them garbage."""
    for name, array in feed.items():
        if array.dtype.kind == "f" and not np.isfinite(array).all():
            raise InputError(
                f"calibration data {str(path)!r} has NaN or infinite values in input {name!r}; "
                "static quantization needs finite values to measure ranges"
            )


def _check_budget(
    max_accuracy_drop: float, atol: float | None, rtol: float | None, speed_budget_s: float
) -> None:
    if not 0.0 <= max_accuracy_drop <= 1.0:
        raise UsageError(
            f"--max-accuracy-drop {max_accuracy_drop} is a fraction between 0 and 1 "
            "(0.005 is half a point)"
        )
    for name, value in (("--atol", atol), ("--rtol", rtol)):
        if value is not None and not value >= 0:
            raise UsageError(f"{name} must not be negative (got {value})")
    if not speed_budget_s > 0:
        raise UsageError("the speed budget must be positive")


def _plan(quantize: str | None, level: str | None, per_channel: bool) -> list[Candidate]:
    if quantize is None:
        return [Candidate(None, level=level)]
    if quantize == "auto":
        statics = [True] if per_channel else [False, True]
        return [Candidate("dynamic", per_channel, level)] + [
            Candidate("static", pc, level) for pc in statics
        ]
    return [Candidate(quantize, per_channel, level)]


def _labels(
    labels: Any, label_key: str | None, column: np.ndarray | None, rows: int
) -> np.ndarray | None:
    if labels is None:
        return None
    if label_key is not None:
        if column is None:
            raise UsageError(
                f"labels {label_key!r} are neither a file nor a column (or key) of the "
                "evaluation data"
            )
        return resolve_labels(column, len(column))
    return resolve_labels(labels, rows)


def _label_output(version: ModelVersion) -> str | None:
    """The output the conversion's verification compared as labels, if any."""
    source = version.manifest.source
    if isinstance(source.get("label_output"), str):
        return str(source["label_output"])
    for comp in (version.manifest.verification or {}).get("outputs", []) or []:
        if isinstance(comp, Mapping) and comp.get("label_agreement") is not None:
            return str(comp.get("output"))
    return None


def _calibration(
    calib_feed: Feed | None, calibration: Any, example: Feed | None, eval_feed: Feed
) -> tuple[Feed, str]:
    if calib_feed is not None:
        feed, source = calib_feed, f"file {Path(str(calibration)).name}"
    elif example:
        feed, source = generate_around(example, seed=1), "inputs generated around the input example"
    else:
        feed, source = eval_feed, "the evaluation data"
    rows = feed_rows(feed)
    if rows > CALIBRATION_ROWS:
        feed = take_rows(feed, np.linspace(0, rows - 1, CALIBRATION_ROWS).astype(int))
    return feed, f"{source} ({feed_rows(feed)} rows)"


def _fit_rows(rows: int, fixed_batch: int | None) -> np.ndarray | None:
    """Rows to keep when the model runs whole batches of a fixed size only (None: all)."""
    if fixed_batch is None or rows % fixed_batch == 0:
        return None
    return np.arange(max(fixed_batch, rows - rows % fixed_batch)) % rows


def _run(model: onnx.ModelProto, feed: Feed, fixed_batch: int | None) -> dict[str, np.ndarray]:
    from modelport.runtime import Session

    session = Session(model)
    parts = [session.run(batch) for batch in iter_batches(feed, fixed_batch or EVAL_BATCH)]
    return {name: np.concatenate([p[name] for p in parts]) for name in parts[0]}


def _build_and_gate(
    model: onnx.ModelProto,
    candidates: list[Candidate],
    signature: Signature,
    data: _Data,
    fixed_batch: int | None,
    **gate_kwargs: Any,
) -> None:
    """Build every candidate, check it, and compare it with the float model on the eval data.

    A candidate that cannot be built or loaded records its error and the others go on.
    """
    from modelport.verify import run_checks

    reference = _run(model, data.eval_feed, fixed_batch)
    settings = default_settings()
    prepared: onnx.ModelProto | None = None
    for cand in candidates:
        try:
            if cand.quantize is not None:
                prepared = prepared or preprocess(model)
                cand.settings = settings.to_dict()
                if cand.quantize == "dynamic":
                    built = quantize_dynamic_model(
                        prepared, per_channel=cand.per_channel, settings=settings
                    )
                else:
                    assert data.calibration is not None
                    built = quantize_static_model(
                        prepared,
                        data.calibration,
                        per_channel=cand.per_channel,
                        settings=settings,
                        batch=fixed_batch or CALIBRATION_BATCH,
                    )
            else:
                built = onnx.ModelProto()
                built.CopyFrom(model)
            if cand.level is not None:
                built = optimize_graph(built, cand.level)
            built = strip_unused_opsets(built)
            cand.model, cand.size_bytes = built, built.ByteSize()
            checks, _ = run_checks(built)
            failed = [f"{c.name}: {c.detail}" for c in checks if not c.passed]
            if failed:
                cand.error = "; ".join(failed)
                continue
            outputs = _run(built, data.eval_feed, fixed_batch)
            cand.checks = checks
            cand.gate = compare(reference, outputs, signature, **gate_kwargs)
        except ModelportError as exc:
            cand.error = str(exc)


def _time_and_choose(
    report: OptimizationReport,
    model: onnx.ModelProto,
    timed: list[Candidate],
    rows: Feed,
    batches: tuple[int, ...],
    budget_s: float,
    threads: int,
) -> None:
    speeds = measure(
        {"float": model, **{c.name: c.model for c in timed if c.model is not None}},
        rows,
        batches,
        budget_s=budget_s,
        threads=threads,
    )
    report.baseline = speeds["float"]
    for cand in timed:
        cand.speed = speeds[cand.name]
    passed = [c for c in report.candidates if c.passed]
    chosen = max(passed, key=lambda c: _mean_speedup(c, report.baseline))
    report.chosen = chosen.name
    if _mean_speedup(chosen, report.baseline) < SLOWER_THAN:
        report.notes.append(
            f"{chosen.name} passed the gate but runs slower than the float model here"
        )
    if chosen.quantize is None and chosen.speed is not None:
        report.notes.append(
            "ONNX Runtime applies the same graph optimizations when it loads the float model, "
            "so run time hardly changes; optimizing offline saves load time "
            f"({report.baseline.load_ms:.1f} ms -> {chosen.speed.load_ms:.1f} ms here) and "
            "stores the graph that actually runs"
        )


def _problems(cand: Candidate) -> list[str]:
    if cand.error:
        return [f"{cand.name}: {cand.error}"]
    return [f"{cand.name}: {f}" for f in (cand.gate.failures if cand.gate is not None else [])]


def _mean_speedup(cand: Candidate, baseline: SpeedResult | None) -> float:
    ratios = [cand.speedup(baseline, b) for b in (baseline.latency if baseline else {})]
    values = [r for r in ratios if r]
    return math.exp(sum(math.log(r) for r in values) / len(values)) if values else 0.0
