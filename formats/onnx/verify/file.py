"""``verify()``: an existing ONNX model checked, and compared with its original when given.

The original (an object or a file) is loaded by the converter of its framework
(:func:`formats.onnx.convert.original_runner`), then checked as a fresh conversion is
(:func:`formats.onnx.verify.parity.verify_conversion`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from formats.errors import ModelLoadError, UsageError
from formats.onnx.conversion import ConversionResult
from formats.onnx.verify.parity import verify_conversion
from formats.onnx.verify.report import VerificationReport
from formats.signature import Signature

if TYPE_CHECKING:
    import onnx

__all__ = ["verify"]


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
