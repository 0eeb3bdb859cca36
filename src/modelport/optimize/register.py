"""Storing the chosen candidate as a new version of the model it came from."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from modelport.optimize.report import Candidate, OptimizationReport

if TYPE_CHECKING:
    from modelport.repository import ModelVersion, Repository

__all__ = ["register_candidate"]

# Keys this module writes into the source facts; an older optimization's are replaced.
_OWN_KEYS = ("derived_from", "optimization", "gate", "speed")


def register_candidate(
    repo: Repository, version: ModelVersion, report: OptimizationReport, chosen: Candidate
) -> str:
    """Register ``chosen`` as the next version of ``version``'s model; returns its reference.

    Tags say what was done and the measured speed-ups; the source facts keep the original's
    (library versions, exporter) plus the optimization, the gate's verdict and the timings.
    """
    assert chosen.model is not None and chosen.gate is not None
    tags = {"optimized": chosen.description, "derived_from": version.ref}
    for batch in sorted(report.baseline.latency if report.baseline else {}):
        ratio = chosen.speedup(report.baseline, batch)
        if ratio:
            tags[f"speedup_b{batch}"] = f"{ratio:.2f}"
    summary = report.to_dict()
    source_info = {
        key: value for key, value in version.manifest.source.items() if key not in _OWN_KEYS
    }
    source_info.update(
        derived_from=version.ref,
        optimization={
            "candidate": chosen.name,
            "level": chosen.level,
            "quantize": chosen.quantize,
            "per_channel": chosen.per_channel,
            "settings": chosen.settings,
            "calibration": report.calibration_source,
            "cpu": report.cpu,
            "tried": [c.name for c in report.candidates],
        },
        gate=chosen.gate.to_dict() | {"eval": summary["eval"], "budget": summary["budget"]},
        speed={
            "float": report.baseline.to_dict() if report.baseline else None,
            "optimized": chosen.speed.to_dict() if chosen.speed else None,
        },
    )
    example = version.input_example()
    new = repo.register(
        chosen.model,
        version.name,
        sample=example if example else None,
        framework=version.manifest.framework,
        tags=tags,
        verification=_verification(chosen, report),
        source_info=source_info,
    )
    return str(new.ref)


def _verification(chosen: Candidate, report: OptimizationReport) -> Any:
    """A VerificationReport, as every version stores: the structural checks of the candidate
    and the gate's comparison with the float model per output."""
    from modelport.verify import CaseResult, CheckResult, OutputComparison, VerificationReport

    gate = chosen.gate
    assert gate is not None
    checks = list(chosen.checks)
    checks.append(CheckResult("accuracy gate", gate.passed, gate.headline))
    outputs = [
        OutputComparison(
            output=stat.name,
            case="evaluation",
            passed=stat.passed,
            atol=report.atol if report.atol is not None else 0.0,
            rtol=stat.limit if stat.gated_by == "rtol" and stat.limit is not None else 0.0,
            max_abs_error=stat.max_abs_err,
            mismatch_fraction=stat.mismatch,
            min_passing_atol=stat.max_abs_err,
            label_agreement=gate.metrics.get("agreement") if stat.name == gate.prediction else None,
            detail=(
                f"mean abs error {stat.mean_abs_err:.3g} ({stat.rel_err:.3g} of the mean abs "
                f"value); " + (f"gated by {stat.gated_by}" if stat.gated_by else "not gated")
            ),
        )
        for stat in gate.outputs
    ]
    return VerificationReport(
        checks=checks,
        outputs=outputs,
        cases=[CaseResult("evaluation", report.eval_source, batch=report.eval_rows)],
        atol=report.atol,
        rtol=report.rtol,
        providers=["CPUExecutionProvider"],
        framework="onnx",
        compared=True,
        notes=[
            f"compared with the float model {report.source} on {report.eval_rows} rows of "
            f"{report.eval_source}; {gate.criterion} gate, max drop {gate.max_accuracy_drop:g}",
            *gate.failures,
        ],
    )
