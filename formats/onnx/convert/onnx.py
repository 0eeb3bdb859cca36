"""The pass-through converter: an ONNX model in, the same model out, checked and described.

It also owns the helpers every ONNX consumer needs: loading a file with our errors
(``load_onnx``), fitting a user's sample to a signature (``feed_from_sample``) and making up a
feed when there is no sample (``synthesize_feed``).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from formats._text import one_line
from formats.errors import InputError, ModelLoadError, NotFoundError, UsageError
from formats.onnx.convert.base import (
    ConversionResult,
    Converter,
    ConvertOptions,
    Feed,
    NativeRunner,
)
from formats.onnx.convert.registry import register
from formats.signature import Signature, TensorSpec, numpy_dtype

__all__ = ["OnnxConverter", "feed_from_sample", "load_onnx", "synthesize_feed"]

# Symbolic dimensions of a made-up feed get this size: 2 (not 1) so that a batch axis frozen to
# 1 during an earlier export still shows up as a mismatch when the model is run.
SYNTHETIC_DIM = 2


def load_onnx(
    model: str | Path | onnx.ModelProto, *, load_external_data: bool = True
) -> onnx.ModelProto:
    """A ModelProto from a path (or the proto itself); missing or corrupt files are user errors."""
    if isinstance(model, onnx.ModelProto):
        return model
    path = Path(model)
    if not path.exists():
        raise NotFoundError(f"model file {str(path)!r} does not exist")
    if path.is_dir():
        raise ModelLoadError(f"{str(path)!r} is a directory, not an ONNX model file")
    try:
        # The format is fixed: onnx would otherwise guess text formats from the file suffix.
        proto = onnx.load_model(str(path), format="protobuf", load_external_data=load_external_data)
    except Exception as exc:  # protobuf DecodeError, OSError for missing external data, ...
        raise ModelLoadError(
            f"{str(path)!r} is not a valid ONNX model: {one_line(exc)}; re-export it"
        ) from exc
    # Protobuf parses an empty (or lucky garbage) file into an empty message without complaint.
    if proto.ir_version <= 0 or not proto.HasField("graph"):
        raise ModelLoadError(
            f"{str(path)!r} is not a valid ONNX model: no IR version or graph; re-export it"
        )
    return proto


def feed_from_sample(sample: Any, signature: Signature) -> Feed:
    """Fit a user's sample (array, dict of arrays, DataFrame) to ``signature``'s inputs.

    Values are cast to the input's dtype when the cast keeps their meaning (numbers to float,
    integers to integers that hold them); anything else is an InputError.
    """
    names = signature.input_names
    if not names:
        return {}
    if isinstance(sample, Mapping):
        raw = {str(k): v for k, v in sample.items()}
        if len(raw) == 1 and len(names) == 1 and names[0] not in raw:
            # np.savez(path, x) names its one array "arr_0": unambiguous, so accept it.
            raw = {names[0]: next(iter(raw.values()))}
    elif _is_dataframe(sample):
        raw = _feed_from_dataframe(sample, signature)
    else:
        if len(names) != 1:
            raise InputError(
                f"the model has {len(names)} inputs {names}; give the sample as a dict or an "
                ".npz/.json file keyed by input name"
            )
        raw = {names[0]: sample}
    feed = {spec.name: _cast(spec, raw[spec.name]) for spec in signature.inputs if spec.name in raw}
    signature.check_feed({**feed, **{k: np.asarray(v) for k, v in raw.items() if k not in feed}})
    return feed


def synthesize_feed(
    signature: Signature,
    seed: int = 0,
    *,
    batch: int = SYNTHETIC_DIM,
    other: int = SYNTHETIC_DIM,
    text: str = "",
) -> Feed:
    """A plausible feed from the signature alone: normal floats, zero integers, ``text`` strings.

    Symbolic dimensions get ``batch`` rows on the first axis and ``other`` elsewhere. Integers
    are zero because they are often indices (embeddings, Gather), where 0 is the one value that
    is always in range.
    """
    rng = np.random.default_rng(seed)
    feed: Feed = {}
    for spec in signature.inputs:
        if spec.dtype.startswith("<"):
            raise InputError(
                f"input {spec.name!r} is a {spec.dtype[1:-1]}; only tensors can be fed"
            )
        shape = tuple(
            d if isinstance(d, int) else (batch if axis == 0 else other)
            for axis, d in enumerate(spec.shape)
        )
        dtype = numpy_dtype(spec.dtype)
        if dtype.kind == "f":
            feed[spec.name] = rng.standard_normal(shape).astype(dtype)
        elif spec.dtype == "str":
            feed[spec.name] = np.full(shape, text, dtype=object)
        else:
            feed[spec.name] = np.zeros(shape, dtype=dtype)
    return feed


@register
class OnnxConverter(Converter):
    name = "onnx"
    extra = ""
    module_prefixes = ("onnx",)
    suffixes = (".onnx",)

    def handles_object(self, obj: Any) -> bool:
        return isinstance(obj, onnx.ModelProto)

    def convert(self, model: Any, options: ConvertOptions) -> ConversionResult:
        if not isinstance(model, onnx.ModelProto | Path):
            raise UsageError(
                f"the onnx converter takes a .onnx file or an onnx.ModelProto, not "
                f"{type(model).__name__}"
            )
        proto = load_onnx(model)
        try:
            # A cheap structural check here; verification runs the full one and reports it.
            # (Protos over protobuf's 2 GiB limit can only be checked from a file: skip them.)
            if proto.ByteSize() < 2**31 - 1:
                onnx.checker.check_model(proto)
        except Exception as exc:
            raise ModelLoadError(
                f"{_display(model)} is not a valid ONNX model: {one_line(exc)}; re-export it"
            ) from exc
        _refuse_options(options)
        signature = Signature.from_onnx(proto)
        source: dict[str, Any] = {
            "onnx": onnx.__version__,
            "producer": f"{proto.producer_name} {proto.producer_version}".strip() or None,
        }
        if options.sample is not None:
            sample = feed_from_sample(options.sample, signature)
            source["sample"] = "given"
        else:
            sample = synthesize_feed(signature)
            source["sample"] = "synthesized"
        return ConversionResult(
            model=proto,
            signature=signature,
            framework=self.name,
            sample=sample,
            native=None,  # the ONNX model is the original: there is nothing to compare against
            source=source,
            notes=["the input is already ONNX: it was checked, not converted"],
        )

    def native_runner(self, model: Any, options: ConvertOptions) -> tuple[NativeRunner, Feed]:
        """Run another ONNX model (say, the one before optimization) as the reference."""
        from formats.onnx.runtime import Session

        proto = load_onnx(model)
        session = Session(proto)
        if options.sample is not None:
            sample = feed_from_sample(options.sample, session.signature)
        else:
            sample = synthesize_feed(session.signature)
        wanted = options.output_names or session.signature.output_names
        outputs = [name for name in wanted if name in session.signature.output_names]
        if not outputs:
            raise UsageError(
                f"the original ONNX model has none of the outputs {wanted}; its outputs are "
                f"{session.signature.output_names}"
            )

        def run(feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
            return session.run(feed, outputs)

        return run, sample


def _refuse_options(options: ConvertOptions) -> None:
    """Export options cannot apply to a finished graph; say so rather than ignore them."""
    ignored = [
        flag
        for flag, value in (
            ("--opset", options.opset),
            ("--input-name", options.input_names),
            ("--output-name", options.output_names),
            ("--dynamic-axis", options.dynamic_axes),
            ("--class", options.model_class),
            ("--keep-float64", options.keep_float64 or None),
            ("--exporter", options.exporter),
        )
        # Not truthiness: --opset 0 or an empty --class is still an option given.
        if value not in (None, [], {})
    ]
    if ignored:
        raise UsageError(
            f"{', '.join(ignored)} cannot change an existing ONNX model; re-export it from its "
            "framework with those options instead"
        )


def _cast(spec: TensorSpec, value: Any) -> np.ndarray:
    array = np.asarray(value)
    if spec.dtype.startswith("<"):
        raise InputError(f"input {spec.name!r} is a {spec.dtype[1:-1]}; only tensors can be fed")
    want = numpy_dtype(spec.dtype)
    got = array.dtype
    if spec.dtype == "str":
        return array.astype(object) if got.kind in "USO" else _bad_dtype(spec, got)
    if got == want:
        return array
    if want.kind == "f" and got.kind in "fiub":
        return array.astype(want)
    if want.kind in "iu" and got.kind in "iu":
        cast = array.astype(want)
        if not np.array_equal(cast, array):
            raise InputError(f"input {spec.name!r} has values that do not fit {spec.dtype}")
        return cast
    if want.kind == "b" and got.kind == "b":
        return array
    return _bad_dtype(spec, got)


def _bad_dtype(spec: TensorSpec, got: np.dtype[Any]) -> np.ndarray:
    raise InputError(f"input {spec.name!r} has dtype {got.name}, expected {spec.dtype}")


def _is_dataframe(value: Any) -> bool:
    return type(value).__module__.startswith("pandas") and hasattr(value, "columns")


def _feed_from_dataframe(frame: Any, signature: Signature) -> dict[str, Any]:
    columns = [str(c) for c in frame.columns]
    names = signature.input_names
    if len(names) > 1 or names[0] in columns and len(columns) == 1:
        # One input per column, each shaped (rows, 1) as skl2onnx-style tabular models expect.
        missing = [n for n in names if n not in columns]
        if missing:
            raise InputError(f"the sample has no column(s) {missing}; its columns are {columns}")
        return {n: frame[n].to_numpy().reshape(-1, 1) for n in names}
    return {names[0]: frame.to_numpy()}


def _display(model: Any) -> str:
    return repr(str(model)) if isinstance(model, Path) else "the ModelProto"
