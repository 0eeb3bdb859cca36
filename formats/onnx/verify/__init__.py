"""Verification: structural checks of an ONNX model and parity with the model it came from.

``verify_conversion`` checks a fresh ``ConversionResult``; ``verify`` checks an ONNX file or
proto, against its original when one is given. Both return a ``VerificationReport`` that is
truthy when everything passed; failures are collected in it, never raised.
"""

from formats.onnx.verify.cases import make_cases
from formats.onnx.verify.checks import max_supported_opsets, run_checks
from formats.onnx.verify.file import verify
from formats.onnx.verify.parity import compare, verify_conversion
from formats.onnx.verify.report import (
    CaseResult,
    CheckResult,
    OutputComparison,
    VerificationReport,
)

__all__ = [
    "CaseResult",
    "CheckResult",
    "OutputComparison",
    "VerificationReport",
    "compare",
    "make_cases",
    "max_supported_opsets",
    "run_checks",
    "verify",
    "verify_conversion",
]
