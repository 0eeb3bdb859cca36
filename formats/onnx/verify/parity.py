"""Parity: run the original and the ONNX model on the same inputs and compare every output.

The sample alone is not enough: tracing exporters freeze the branch the sample took, so a model
that does ``x * 2 if x.sum() > 0 else x - 1`` exports as ``x * 2`` and agrees on the sample. The
inputs are therefore varied (negated, rescaled with noise, other batch sizes) before comparing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from formats._text import one_line
from formats.errors import ModelLoadError, ModelportError, UsageError
from formats.onnx.convert.base import ConversionResult, Feed, Tolerance
from formats.onnx.verify.checks import requested_providers, run_checks
from formats.onnx.verify.report import (
    CaseResult,
    CheckResult,
    OutputComparison,
    VerificationReport,
)
from formats.signature import Signature

if TYPE_CHECKING:
    import onnx

    from formats.onnx.runtime import Session

__all__ = ["Case", "compare", "make_cases", "verify", "verify_conversion"]

LARGE_BATCH = 7  # odd and unlikely to be anyone's export batch size
_SEED = 0  # variations are random but reproducible: the same report every run


@dataclass
class Case:
    name: str
    description: str
    feed: Feed
    batch: int | None = None


def verify(
    model: str | Path | onnx.ModelProto,
    original: Any = None,
    sample: Any = None,
    *,
    framework: str | None = None,
    model_class: str | None = None,
    providers: Sequence[str] | None = None,
    atol: float | None = None,
    rtol: float | None = None,
) -> VerificationReport:
    """Verify an existing ONNX model, against its ``original`` (object or file) when given.

    Without an original only the structural checks run (and the sample, when given, must run).
    """
    from formats.datafiles import read_sample
    from formats.onnx.convert import original_runner
    from formats.onnx.convert.onnx import feed_from_sample, load_onnx

    if isinstance(model, str | Path):
        model = Path(model)
    try:
        proto = load_onnx(model)
    except ModelLoadError as exc:
        if isinstance(model, Path) and model.suffix.lower() != ".onnx" and not model.is_dir():
            raise UsageError(
                f"{str(model)!r} is not an ONNX model; verify takes the ONNX model first and "
                "the model it came from with --original"
            ) from exc
        raise
    signature = Signature.from_onnx(proto)
    if isinstance(sample, str | Path):
        sample = read_sample(sample)
    if original is None:
        if framework or model_class:
            raise UsageError("--framework and --class describe the original; add --original FILE")
        feed = feed_from_sample(sample, signature) if sample is not None else {}
        result = ConversionResult(
            model=proto,
            signature=signature,
            framework="onnx",
            sample=feed,
            source={"sample": "given" if sample is not None else "none"},
        )
    else:
        runner, feed, name = original_runner(
            original, signature, sample, framework=framework, model_class=model_class
        )
        result = ConversionResult(
            model=proto,
            signature=signature,
            framework=name,
            sample=feed,
            native=runner,
        )
    return verify_conversion(result, providers=providers, atol=atol, rtol=rtol)


def verify_conversion(
    result: ConversionResult,
    providers: Sequence[str] | None = None,
    atol: float | None = None,
    rtol: float | None = None,
) -> VerificationReport:
    """Checks plus parity for a fresh conversion; every failure lands in the report."""
    tolerance = Tolerance(
        result.tolerance.atol if atol is None else float(atol),
        result.tolerance.rtol if rtol is None else float(rtol),
    )
    # "not >= 0" also refuses NaN, which would make every comparison pass silently.
    if not (tolerance.atol >= 0 and tolerance.rtol >= 0):
        raise UsageError(
            f"--atol and --rtol must be numbers 0 or more, got {tolerance.atol} and {tolerance.rtol}"
        )
    names = requested_providers(providers)
    checks, session = run_checks(result.model, names)
    report = VerificationReport(
        checks=checks,
        atol=tolerance.atol,
        rtol=tolerance.rtol,
        providers=names,
        framework=result.framework,
    )
    if result.native is None:
        report.notes.append("no original model was given: only the checks ran, nothing compared")
        if session is not None and result.sample and result.source.get("sample") != "synthesized":
            report.checks.append(_runs_on_sample(session, result.sample))
        return report
    if session is None:
        report.notes.append("parity not run: ONNX Runtime could not load the model")
        return report
    label = result.label_output if result.task == "classifier" else None
    _parity(report, result, session, tolerance, label)
    return report


def _parity(
    report: VerificationReport,
    result: ConversionResult,
    session: Session,
    tolerance: Tolerance,
    label_output: str | None,
) -> None:
    assert result.native is not None
    report.compared = True
    tensor_outputs = [s.name for s in session.signature.outputs if not s.dtype.startswith("<")]
    missing: set[str] = set()
    compared_cases = 0
    for case in make_cases(result.sample, result.signature):
        outcome = CaseResult(case.name, case.description, case.batch)
        report.cases.append(outcome)
        try:
            expected = result.native({k: v.copy() for k, v in case.feed.items()})
        except Exception as exc:  # the original framework's own errors: anything can come out
            outcome.status, outcome.error = "native-error", _error_text(exc)
            if case.name == "sample":
                outcome.status = "failed"
                outcome.error = f"the original model failed on the sample: {outcome.error}"
            continue
        try:
            actual = session.run(case.feed, tensor_outputs)
        except ModelportError as exc:
            outcome.status, outcome.error = "onnx-error", str(exc)
            continue
        common = [name for name in tensor_outputs if name in expected]
        missing.update(name for name in tensor_outputs if name not in expected)
        if not common:
            outcome.status = "failed"
            outcome.error = (
                f"the original produced none of the ONNX outputs {tensor_outputs} "
                f"(it produced {sorted(expected)})"
            )
            continue
        compared_cases += 1
        for name in common:
            comparison = compare(
                name,
                case.name,
                expected[name],
                actual[name],
                tolerance,
                label=name == label_output,
            )
            report.outputs.append(comparison)
            if not comparison.passed:
                outcome.status = "failed"
    if missing:
        report.notes.append(
            f"output(s) {sorted(missing)} have no counterpart in the original: not compared"
        )
    report.checks.append(_parity_check(report, compared_cases))


def _parity_check(report: VerificationReport, compared_cases: int) -> CheckResult:
    if compared_cases == 0:
        return CheckResult("parity", False, "no input case could be compared")
    failed = [c.name for c in report.cases if c.failed]
    skipped = [c.name for c in report.cases if c.status == "native-error"]
    worst = max((o.min_passing_atol or 0.0 for o in report.outputs), default=0.0)
    detail = f"{compared_cases} case(s) compared; smallest passing atol {worst:.3g}"
    if skipped:
        detail += f"; the original raised on {', '.join(skipped)}"
    if failed:
        return CheckResult("parity", False, f"failed on {', '.join(failed)}; {detail}")
    return CheckResult("parity", True, detail)


def _runs_on_sample(session: Session, sample: Mapping[str, np.ndarray]) -> CheckResult:
    try:
        session.run_checked(sample)
    except ModelportError as exc:
        return CheckResult("runs on sample", False, str(exc))
    return CheckResult("runs on sample", True, "ONNX Runtime ran the given sample")


# -- input variations ---------------------------------------------------------------------------


def make_cases(sample: Mapping[str, np.ndarray], signature: Signature) -> list[Case]:
    """The sample, then variations of it that would expose a branch frozen at trace time."""
    rng = np.random.default_rng(_SEED)
    sample = {name: np.asarray(value) for name, value in sample.items()}
    cases = [Case("sample", "the input example", dict(sample), _batch_of(sample, signature))]
    floats = [n for n, v in sample.items() if v.dtype.kind == "f"]
    if floats:
        cases.append(
            Case(
                "negated",
                "float inputs negated",
                {n: -v if n in floats else v for n, v in sample.items()},
                cases[0].batch,
            )
        )
        cases.append(
            Case(
                "scaled",
                "float inputs times a random scale plus noise",
                {n: _rescale(v, rng) if n in floats else v for n, v in sample.items()},
                cases[0].batch,
            )
        )
    rows = _batch_of(sample, signature)
    if rows:
        sizes = [size for size in (1, LARGE_BATCH) if size != rows]
        if rows > 1:
            cases.append(
                Case(
                    "shuffled",
                    f"the sample's {rows} rows reordered",
                    _rows(sample, rng, rows),
                    rows,
                )
            )
        for size in sizes:
            cases.append(
                Case(
                    f"batch={size}",
                    f"{size} row(s) drawn from the sample",
                    _rows(sample, rng, size),
                    size,
                )
            )
    return cases


def _batch_of(sample: Mapping[str, np.ndarray], signature: Signature) -> int | None:
    """Rows in the sample when every input has a symbolic first axis of the same length."""
    lengths = set()
    for spec in signature.inputs:
        value = sample.get(spec.name)
        if value is None or not spec.has_dynamic_batch or value.ndim == 0:
            return None
        lengths.add(value.shape[0])
    if len(lengths) != 1:
        return None
    rows = lengths.pop()
    return rows if rows > 0 else None


def _rows(sample: Mapping[str, np.ndarray], rng: np.random.Generator, size: int) -> Feed:
    # The same row indices for every input, so that rows of multi-input models stay together;
    # tiling a permutation uses every row before repeating any.
    rows = next(iter(sample.values())).shape[0]
    index = np.resize(rng.permutation(rows), size)
    return {name: np.ascontiguousarray(value[index]) for name, value in sample.items()}


def _rescale(value: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    scale = rng.uniform(0.5, 2.0)
    spread = float(np.std(value)) if value.size else 0.0
    noise = rng.standard_normal(value.shape) * (0.1 * spread if spread > 0 else 0.1)
    return (value * scale + noise).astype(value.dtype)


# -- comparison ---------------------------------------------------------------------------------


def compare(
    output: str,
    case: str,
    expected: Any,
    actual: Any,
    tolerance: Tolerance,
    *,
    label: bool = False,
) -> OutputComparison:
    """One output: ``expected`` (the original's) against ``actual`` (ONNX Runtime's)."""
    exp, act = np.asarray(expected), np.asarray(actual)
    comp = OutputComparison(
        output=output,
        case=case,
        passed=False,
        atol=tolerance.atol,
        rtol=tolerance.rtol,
        native_shape=list(exp.shape),
        onnx_shape=list(act.shape),
        native_dtype=_dtype(exp),
        onnx_dtype=_dtype(act),
        shape_match=exp.shape == act.shape,
        dtype_match=_kind(exp) == _kind(act),
    )
    problems = []
    if not comp.shape_match:
        problems.append(f"shape {list(exp.shape)} vs {list(act.shape)}")
    if not comp.dtype_match:
        problems.append(f"dtype {comp.native_dtype} vs {comp.onnx_dtype}")
    if exp.size != act.size:
        comp.detail = "; ".join(problems)
        return comp
    act = act.reshape(exp.shape)  # same size: still compare values to say how far off it is
    numeric = _kind(exp) in ("float", "int", "bool") and _kind(act) in ("float", "int", "bool")
    if label or not numeric:
        equal = _equal(exp, act)
        agreement = float(equal.mean()) if equal.size else 1.0
        comp.mismatch_fraction = 1.0 - agreement
        if label:
            comp.label_agreement = agreement
        if agreement < 1.0:
            problems.append(f"{1.0 - agreement:.2%} of {'labels' if label else 'values'} differ")
    if numeric:
        _numeric_stats(comp, exp, act, tolerance, problems, set_mismatch=not label)
    comp.passed = not problems
    comp.detail = "; ".join(problems)
    return comp


def _numeric_stats(
    comp: OutputComparison,
    exp: np.ndarray,
    act: np.ndarray,
    tolerance: Tolerance,
    problems: list[str],
    *,
    set_mismatch: bool,
) -> None:
    e, a = exp.astype(np.float64), act.astype(np.float64)
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        _float_stats(comp, e, a, tolerance, problems, set_mismatch=set_mismatch)


def _float_stats(
    comp: OutputComparison,
    e: np.ndarray,
    a: np.ndarray,
    tolerance: Tolerance,
    problems: list[str],
    *,
    set_mismatch: bool,
) -> None:
    if e.size == 0:
        comp.max_abs_error = comp.max_rel_error = comp.min_passing_atol = 0.0
        if set_mismatch:
            comp.mismatch_fraction = 0.0
        return
    finite = np.isfinite(e) & np.isfinite(a)
    # NaN where both are NaN and equal infinities are agreement, not error.
    special_ok = (np.isnan(e) & np.isnan(a)) | (np.isinf(e) & (e == a))
    special_bad = ~finite & ~special_ok
    diff = np.where(finite, np.abs(a - e), 0.0)
    magnitude = np.where(finite, np.abs(e), 0.0)
    mismatch = (diff > tolerance.atol + tolerance.rtol * magnitude) | special_bad
    needed = float(np.max(diff - tolerance.rtol * magnitude))
    comp.max_abs_error = float("inf") if special_bad.any() else float(diff.max())
    comp.max_rel_error = (
        float("inf")
        if special_bad.any()
        else float(np.max(diff / np.maximum(magnitude, np.finfo(np.float64).tiny)))
    )
    comp.min_passing_atol = float("inf") if special_bad.any() else max(needed, 0.0)
    if set_mismatch:
        comp.mismatch_fraction = float(mismatch.mean())
        if mismatch.any():
            problems.append(f"{comp.mismatch_fraction:.2%} of values out of tolerance")


def _equal(exp: np.ndarray, act: np.ndarray) -> np.ndarray:
    if _kind(exp) == "str" or _kind(act) == "str":
        return np.asarray(
            [_text(x) == _text(y) for x, y in zip(exp.ravel(), act.ravel(), strict=True)],
            dtype=bool,
        )
    return np.asarray(exp == act).reshape(-1)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _kind(array: np.ndarray) -> str:
    kind = array.dtype.kind
    if kind == "f":
        return "float"
    if kind in "iu":
        return "int"
    if kind == "b":
        return "bool"
    if kind in "USO":
        return "str"
    return kind


def _dtype(array: np.ndarray) -> str:
    return "str" if array.dtype.kind in "USO" else array.dtype.name


def _error_text(exc: BaseException) -> str:
    """The error with its type, which a bare message from numpy or a framework often needs."""
    return f"{type(exc).__name__}: {one_line(exc)}" if str(exc).strip() else type(exc).__name__
