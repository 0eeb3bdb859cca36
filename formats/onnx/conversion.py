"""What a conversion returns: the ONNX model, its signature, the sample, and a runner of the
original. The converters (:mod:`formats.onnx.convert`) make it and verification
(:mod:`formats.onnx.verify`) reads it; this module imports neither.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from formats.diff import Tolerance
from formats.signature import Signature

if TYPE_CHECKING:
    import onnx

__all__ = ["ConversionResult", "Feed", "NativeRunner"]

Feed = dict[str, np.ndarray]
# Runs the original model on a feed keyed by ONNX input names and returns arrays keyed by ONNX
# output names (only the outputs it can produce; verification compares the common ones).
NativeRunner = Callable[[Mapping[str, np.ndarray]], dict[str, np.ndarray]]


@dataclass
class ConversionResult:
    model: onnx.ModelProto
    signature: Signature
    framework: str
    sample: Feed  # the input example, keyed by ONNX input names
    native: NativeRunner | None = None
    tolerance: Tolerance = field(default_factory=lambda: Tolerance(atol=1e-4, rtol=1e-3))
    # e.g. {"torch": "2.13.0", "exporter": "dynamo", "fallback_reason": ...}
    source: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # human-readable facts worth reporting
    task: str | None = None  # "classifier", "regressor" or None
    label_output: str | None = None  # name of the output holding class labels (classifiers)
    report: Any = None  # VerificationReport, filled in by formats.onnx.convert()

    def save(self, path: str | Path) -> Path:
        from formats._files import save_onnx

        return save_onnx(self.model, path)
