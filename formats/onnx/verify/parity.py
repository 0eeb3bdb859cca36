"""Parity of a fresh conversion: the original and the ONNX model run on the same inputs (the
sample and its variations, :mod:`formats.onnx.verify.cases`), every output compared by the one
rule of :mod:`formats.diff`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from formats._text import one_line
from formats.diff import Tolerance, labels_equal, number_diff
from formats.errors import ModelportError, UsageError
from formats.onnx.conversion import ConversionResult
from formats.onnx.verify.cases import make_cases
from formats.onnx.verify.checks import requested_providers, run_checks
from formats.onnx.verify.report import (
    CaseResult,
    CheckResult,
    OutputComparison,
    VerificationReport,
)

if TYPE_CHECKING:
    from formats.onnx.runtime import Session

__all__ = ["compare", "verify_conversion"]


def verify_conversion(
    result: ConversionResult,
    providers: Sequence[str] | None = None,
    atol: float | None = None,
    rtol: float | None = None,
) -> VerificationReport:
    """Checks plus parity for a fresh conversion; every failure lands in the report."""
    tolerance = dataclasses.replace(
        result.tolerance,
        atol=result.tolerance.atol if atol is None else float(atol),
        rtol=result.tolerance.rtol if rtol is None else float(rtol),
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
        equal = labels_equal(exp, act)
        agreement = float(equal.mean()) if equal.size else 1.0
        comp.mismatch_fraction = 1.0 - agreement
        if label:
            comp.label_agreement = agreement
        if agreement < tolerance.labels:
            problems.append(f"{1.0 - agreement:.2%} of {'labels' if label else 'values'} differ")
    if numeric:
        diff = number_diff(exp, act, tolerance)
        comp.max_abs_error, comp.max_rel_error = diff.max_abs, diff.max_rel
        comp.min_passing_atol = diff.min_passing_atol
        if not label:
            comp.mismatch_fraction = float(diff.over.mean()) if diff.over.size else 0.0
            if not diff.passed:
                problems.append(f"{comp.mismatch_fraction:.2%} of values out of tolerance")
    comp.passed = not problems
    comp.detail = "; ".join(problems)
    return comp


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
