"""``convert()``: any supported model in, a verified ONNX model out."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from formats.errors import NotFoundError, UsageError
from formats.onnx.convert.base import (
    ConversionResult,
    Converter,
    ConvertOptions,
    Feed,
    NativeRunner,
    Tolerance,
)
from formats.onnx.convert.registry import detect, get, known, register
from formats.signature import Signature

__all__ = [
    "ConversionResult",
    "ConvertOptions",
    "Converter",
    "Tolerance",
    "convert",
    "detect",
    "get",
    "known",
    "original_runner",
    "register",
    "resolve_model",
]


def resolve_model(model: Any) -> Any:
    """A string or path names a file or directory that must exist; anything else is an object."""
    if isinstance(model, str | Path):
        path = Path(model)
        if not path.exists():
            raise NotFoundError(f"model file {str(path)!r} does not exist")
        return path
    return model


def original_runner(
    original: Any,
    signature: Signature,
    sample: Any,
    *,
    framework: str | None = None,
    model_class: str | None = None,
) -> tuple[NativeRunner, Feed, str]:
    """The model an ONNX model came from, as a runner keyed by the ONNX ``signature``'s names.

    Returns the runner, the sample as a feed, and the name of the framework that loaded it.
    """
    source = resolve_model(original)
    converter = get(framework) if framework else detect(source)
    options = ConvertOptions(
        sample=sample,
        input_names=signature.input_names,
        output_names=signature.output_names,
        model_class=model_class,
    )
    runner, feed = converter.native_runner(source, options)
    return runner, feed, converter.name


def convert(
    model: Any,
    sample: Any = None,
    *,
    framework: str | None = None,
    opset: int | None = None,
    input_names: Sequence[str] | None = None,
    output_names: Sequence[str] | None = None,
    dynamic_axes: Mapping[str, Mapping[int, str]] | None = None,
    model_class: str | None = None,
    keep_float64: bool = False,
    exporter: str | None = None,
    verify: bool = True,
    providers: Sequence[str] | None = None,
    atol: float | None = None,
    rtol: float | None = None,
    output: str | Path | None = None,
) -> ConversionResult:
    """Convert ``model`` (a framework object or a file) to ONNX and verify it.

    ``sample`` is an array, a dict of arrays, a DataFrame or a file (.npy .npz .csv .parquet
    .json). The verification report is ``result.report`` (truthy when it passed); a failed
    verification does not raise. With ``output`` the model is written atomically, but only when
    verification passed (or was skipped). ``exporter`` pins the torch/Lightning exporter
    ("dynamo" or "torchscript"); by default dynamo is tried first.
    """
    from formats.datafiles import read_sample

    _check_options(opset, input_names, output_names)
    model = resolve_model(model)
    if isinstance(sample, str | Path):
        sample = read_sample(sample)
    converter = get(framework) if framework else detect(model)
    options = ConvertOptions(
        sample=sample,
        opset=opset,
        input_names=list(input_names) if input_names else None,
        output_names=list(output_names) if output_names else None,
        dynamic_axes=(
            None if dynamic_axes is None else {k: dict(v) for k, v in dynamic_axes.items()}
        ),
        model_class=model_class,
        keep_float64=keep_float64,
        exporter=exporter,
    )
    result = converter.convert(model, options)
    if verify:
        # the module, not the package: verification of a result needs no converter, so the
        # converters and verification import each other nowhere
        from formats.onnx.verify.parity import verify_conversion

        result.report = verify_conversion(result, providers=providers, atol=atol, rtol=rtol)
    if output is not None and (result.report is None or result.report):
        result.save(output)
    return result


# ONNX Runtime runs opset 7 and later; nothing can export past what the installed onnx knows.
MIN_OPSET = 7


def _check_options(
    opset: int | None, input_names: Sequence[str] | None, output_names: Sequence[str] | None
) -> None:
    """Options every converter takes, checked once here rather than ignored by some of them."""
    if opset is not None:
        import onnx

        newest = onnx.defs.onnx_opset_version()
        if not MIN_OPSET <= opset <= newest:
            raise UsageError(
                f"--opset {opset} is out of range; use {MIN_OPSET} to {newest} (the newest "
                "opset the installed onnx knows), or leave it out for the converter's default"
            )
    for flag, names in (("--input-name", input_names), ("--output-name", output_names)):
        names = list(names or ())
        if any(not isinstance(n, str) or not n.strip() for n in names):
            raise UsageError(f"{flag} must be a non-empty name, got {names}")
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise UsageError(f"{flag} {repeated} given more than once; every name must be unique")
    both = sorted(set(input_names or ()) & set(output_names or ()))
    if both:
        raise UsageError(f"{both} named both an input and an output; ONNX names must be unique")
