"""The verification report: plain data that is truthy when it passed and prints as a table."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any

__all__ = ["CaseResult", "CheckResult", "OutputComparison", "VerificationReport"]


@dataclass
class CheckResult:
    """One structural check (checker, shape inference, provider load, opset, servability)."""

    name: str
    passed: bool
    detail: str = ""


@dataclass
class CaseResult:
    """One input variation that was run on both models (or that could not be)."""

    name: str  # "sample", "negated", "scaled", "batch=1", "batch=7", ...
    description: str
    batch: int | None = None  # rows fed, when the inputs have a batch axis
    # "passed", "failed" (outputs differ), "onnx-error" (ONNX Runtime raised: a failure),
    # "native-error" (the original raised: nothing to compare, recorded but not a failure)
    status: str = "passed"
    error: str | None = None

    @property
    def failed(self) -> bool:
        return self.status in ("failed", "onnx-error")


@dataclass
class OutputComparison:
    """One output of one case: the original's value against ONNX Runtime's."""

    output: str
    case: str
    passed: bool
    atol: float
    rtol: float
    native_shape: list[int] = field(default_factory=list)
    onnx_shape: list[int] = field(default_factory=list)
    native_dtype: str = ""
    onnx_dtype: str = ""
    shape_match: bool = True
    dtype_match: bool = True
    max_abs_error: float | None = None  # None for string outputs or when shapes cannot align
    max_rel_error: float | None = None
    mismatch_fraction: float | None = None
    # The smallest atol that would pass with this rtol (inf when NaN/inf patterns differ).
    min_passing_atol: float | None = None
    label_agreement: float | None = None  # classifiers: fraction of identical labels
    detail: str = ""


@dataclass
class VerificationReport:
    checks: list[CheckResult] = field(default_factory=list)
    outputs: list[OutputComparison] = field(default_factory=list)
    cases: list[CaseResult] = field(default_factory=list)
    atol: float | None = None
    rtol: float | None = None
    providers: list[str] = field(default_factory=list)
    framework: str | None = None
    compared: bool = False  # False when there was no original model to compare against
    notes: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return (
            all(c.passed for c in self.checks)
            and all(o.passed for o in self.outputs)
            and not any(c.failed for c in self.cases)
        )

    def __bool__(self) -> bool:
        return self.passed

    @property
    def failures(self) -> list[str]:
        """One line per thing that failed, for error messages and logs."""
        lines = [f"check {c.name}: {c.detail}" for c in self.checks if not c.passed]
        lines += [f"case {c.name}: {c.error}" for c in self.cases if c.status == "onnx-error"]
        lines += [
            f"output {o.output} ({o.case}): {o.detail or 'values differ'}"
            for o in self.outputs
            if not o.passed
        ]
        return lines

    def worst(self) -> dict[str, OutputComparison]:
        """Per output, the comparison with the largest error over all cases."""
        best: dict[str, OutputComparison] = {}
        for comp in self.outputs:
            current = best.get(comp.output)
            if current is None or _badness(comp) > _badness(current):
                best[comp.output] = comp
        return best

    def summary(self) -> str:
        if self.passed:
            what = f"{len(self.cases)} input case(s)" if self.compared else "checks only"
            return f"verification passed ({what})"
        failures = self.failures
        more = f" (and {len(failures) - 1} more)" if len(failures) > 1 else ""
        return f"verification failed: {failures[0] if failures else 'see above'}{more}"

    # -- serialization -------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["passed"] = self.passed
        return _json_safe(data)  # type: ignore[no-any-return]

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> VerificationReport:
        def build(klass: type[Any], item: Mapping[str, Any]) -> Any:
            names = {f.name for f in fields(klass)}
            return klass(**{k: _from_json(v) for k, v in item.items() if k in names})

        return cls(
            checks=[build(CheckResult, c) for c in data.get("checks", [])],
            outputs=[build(OutputComparison, o) for o in data.get("outputs", [])],
            cases=[build(CaseResult, c) for c in data.get("cases", [])],
            atol=data.get("atol"),
            rtol=data.get("rtol"),
            providers=list(data.get("providers", [])),
            framework=data.get("framework"),
            compared=bool(data.get("compared", False)),
            notes=list(data.get("notes", [])),
        )

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    # -- display -------------------------------------------------------------------------------

    def render(self) -> Any:
        """A rich renderable (Group of tables); the CLI prints it."""
        from rich.console import Group
        from rich.markup import escape
        from rich.table import Table
        from rich.text import Text

        parts: list[Any] = []
        checks = Table(title="checks", title_justify="left", show_edge=False)
        for column in ("check", "result", "detail"):
            checks.add_column(column)
        for check in self.checks:
            checks.add_row(escape(check.name), _mark(check.passed), escape(check.detail))
        parts.append(checks)
        if self.compared:
            parts.append(_outputs_table(self))
            skipped = [c for c in self.cases if c.status == "native-error"]
            for case in skipped:
                parts.append(
                    Text(f"case {case.name}: the original raised ({case.error})", "yellow")
                )
            for case in self.cases:
                if case.status == "onnx-error":
                    parts.append(
                        Text(f"case {case.name}: ONNX Runtime raised ({case.error})", "red")
                    )
        for note in self.notes:
            parts.append(Text(note, style="dim"))
        parts.append(Text(self.summary(), style="bold green" if self.passed else "bold red"))
        return Group(*parts)


def _outputs_table(report: VerificationReport) -> Any:
    from rich.markup import escape
    from rich.table import Table

    table = Table(
        title=f"parity (atol={report.atol:g}, rtol={report.rtol:g})"
        if report.atol is not None and report.rtol is not None
        else "parity",
        title_justify="left",
        show_edge=False,
    )
    for column in (
        "output",
        "case",
        "result",
        "max abs",
        "max rel",
        "mismatch",
        "min atol",
        "shape",
        "labels",
        "detail",
    ):
        table.add_column(column)
    for comp in report.outputs:
        shape = "ok" if comp.shape_match else escape(f"{comp.native_shape} vs {comp.onnx_shape}")
        table.add_row(
            escape(comp.output),
            escape(comp.case),
            _mark(comp.passed),
            _num(comp.max_abs_error),
            _num(comp.max_rel_error),
            "-" if comp.mismatch_fraction is None else f"{comp.mismatch_fraction:.2%}",
            _num(comp.min_passing_atol),
            shape,
            "-" if comp.label_agreement is None else f"{comp.label_agreement:.2%}",
            escape(comp.detail),
        )
    return table


def _mark(passed: bool) -> str:
    return "[green]pass[/green]" if passed else "[red]FAIL[/red]"


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.3g}"


def _badness(comp: OutputComparison) -> tuple[int, float]:
    return (0 if comp.passed else 1, comp.min_passing_atol or 0.0)


def _json_safe(value: Any) -> Any:
    # JSON has no inf/nan; write them as strings that from_dict turns back into floats.
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value


def _from_json(value: Any) -> Any:
    if value in ("inf", "-inf", "nan"):
        return float(value)
    return value
