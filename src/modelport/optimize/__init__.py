"""Optimize and quantize a stored version, behind an accuracy gate.

``optimize(repo, "digits:1", quantize="auto")`` builds candidates from the float model (offline
graph optimization at a level, dynamic int8, static int8 with calibration), runs each against
the float model on evaluation data, times the ones that pass, and registers the fastest as a
new version of the same model, tagged with what was done and how much faster it ran here. When
no candidate passes it raises :class:`~modelport.errors.VerificationFailedError` carrying the
report, and the repository is left as it was.

The modules, in the order the pipeline uses them: ``data`` (feeds from files or generated),
``graph`` (ONNX Runtime's offline optimization), ``quantize`` (dynamic and static int8),
``gate`` (the comparison and its budget), ``speed`` (latency), ``report`` and ``register``.
"""

from modelport.optimize.gate import DEFAULT_RTOL, GateResult
from modelport.optimize.graph import LEVELS
from modelport.optimize.pipeline import optimize
from modelport.optimize.quantize import MODES
from modelport.optimize.report import Candidate, OptimizationReport
from modelport.optimize.speed import SpeedResult

__all__ = [
    "DEFAULT_RTOL",
    "LEVELS",
    "MODES",
    "Candidate",
    "GateResult",
    "OptimizationReport",
    "SpeedResult",
    "optimize",
]
