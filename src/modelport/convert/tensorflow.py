"""TensorFlow SavedModel directories and ``tf.function`` objects -> ONNX, through tf2onnx.

This module also holds the machinery the Keras converter shares: a model is reduced to a
``TFFunction`` (ordered, named input specs and a function from flat tensors to the model's
outputs), which is traced once into a ``tf.function`` with an explicit input signature and handed
to ``tf2onnx.convert.from_function``. Tracing with an explicit signature is what lets a freshly
loaded Keras model convert without a ``predict`` call first, and what keeps the batch axis
symbolic. The same ``run`` function, called eagerly, is the native runner for verification.

tf2onnx 1.17 works with numpy 2 and TensorFlow 2.21 on the path used here (``from_function``
without ``large_model``; only the large-model path still calls the removed ``np.product``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import onnx

from modelport._lazy import require
from modelport.convert.base import (
    ConversionResult,
    Converter,
    ConvertOptions,
    Feed,
    NativeRunner,
    Tolerance,
)
from modelport.convert.registry import register
from modelport.errors import (
    ConversionError,
    InputError,
    ModelLoadError,
    UnsupportedModelError,
    UsageError,
)
from modelport.signature import Signature

__all__ = [
    "InputDecl",
    "TFFunction",
    "TensorFlowConverter",
    "build_result",
    "export_tf_function",
    "feed_from_sample",
    "first_line",
    "import_tf",
    "named_inputs",
    "np_dtype_name",
    "opset_of",
    "resolve_shapes",
    "runner_output_names",
]

TOLERANCE = Tolerance(atol=1e-4, rtol=1e-3)
# Internal names used while tracing; the ONNX graph's inputs and outputs are renamed afterwards,
# so user names need not be valid TensorFlow op names. Zero padding keeps dict order == index.
_IN = "modelport_in_{:04d}"
_OUT = "modelport_out_{:04d}"
_SYNTH_BATCH = 2
_SYNTH_OTHER = 3  # size for an unknown non-batch axis of a synthesized sample


# Lines TensorFlow's C++ code writes to file descriptor 2 while it is imported, before any log
# level applies (absl is not initialized yet): facts about the machine, not about the model.
_IMPORT_NOISE = (
    "absl::InitializeLog",
    "cudart_stub.cc",
    "cpu_feature_guard.cc",
    "To enable the following instructions",
    "cuda_platform.cc",
    "Unable to register cu",
    "TF-TRT Warning",
)


def import_tf(extra: str) -> ModuleType:
    """Import TensorFlow quietly (its C++ INFO/WARNING/ERROR lines are noise for a converter)."""
    # 3, not 2: on CPU-only machines TF logs a harmless "failed call to cuInit" at ERROR level.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if "tensorflow" in sys.modules:
        return sys.modules["tensorflow"]
    with _filtered_stderr(_IMPORT_NOISE):
        return require("tensorflow", extra)


@contextlib.contextmanager
def _filtered_stderr(noise: Sequence[str]) -> Iterator[None]:
    """Capture file descriptor 2 (C++ writes there directly); pass on every line but ``noise``."""
    try:
        stderr_fd = sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):  # a replaced sys.stderr (notebooks): leave it
        yield
        return
    sys.stderr.flush()
    saved = os.dup(stderr_fd)
    with tempfile.TemporaryFile() as buffer:
        os.dup2(buffer.fileno(), stderr_fd)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, stderr_fd)
            os.close(saved)
            buffer.seek(0)
            kept = [
                line
                for line in buffer.read().decode(errors="replace").splitlines(keepends=True)
                if not any(pattern in line for pattern in noise)
            ]
            if kept:
                sys.stderr.write("".join(kept))
                sys.stderr.flush()


@dataclass(frozen=True)
class InputDecl:
    """One model input as the framework declares it (``None`` = unknown dimension)."""

    name: str
    dtype: str  # numpy dtype name, or "str" for tf.string
    shape: tuple[int | None, ...]


@dataclass
class TFFunction:
    """A model as a function of named tensors: the common ground of Keras and TensorFlow."""

    inputs: list[InputDecl]
    # Flat input tensors (in ``inputs`` order) -> the model's outputs (any nest).
    run: Callable[[list[Any]], Any]
    # Names for the flat outputs when the output nest is not a dict (e.g. Keras layer names).
    # Asked after tracing, since tracing is what builds a model that was not built yet.
    preferred_output_names: Callable[[], list[str] | None] = lambda: None
    extra: str = "tensorflow"
    name: str = "model"
    output_names: list[str] = field(default_factory=list)  # set by export_tf_function

    def native(self) -> NativeRunner:
        tf = import_tf(self.extra)

        def run(feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
            args = [tf.constant(np.asarray(feed[d.name])) for d in self.inputs]
            flat = tf.nest.flatten(self.run(args))
            return {n: _numpy(t) for n, t in zip(self.output_names, flat, strict=True)}

        return run


def _numpy(tensor: Any) -> np.ndarray:
    return np.asarray(tensor.numpy() if hasattr(tensor, "numpy") else tensor)


def feed_from_sample(sample: Any, inputs: Sequence[InputDecl], notes: list[str]) -> Feed:
    """Turn the user's sample (or nothing) into a feed that fits ``inputs``."""
    names = [d.name for d in inputs]
    if sample is None:
        return _synthesize(inputs, notes)
    if isinstance(sample, Mapping):
        missing = [n for n in names if n not in sample]
        extra = [str(k) for k in sample if k not in names]
        if missing or extra:
            raise InputError(
                f"sample keys {sorted(map(str, sample))} do not match the model's inputs {names}"
            )
        arrays = {n: np.asarray(sample[n]) for n in names}
    elif isinstance(sample, list | tuple) and len(names) > 1:
        if len(sample) != len(names):
            raise InputError(
                f"sample has {len(sample)} arrays but the model has {len(names)} inputs {names}"
            )
        arrays = {n: np.asarray(a) for n, a in zip(names, sample, strict=True)}
    else:
        if len(names) != 1:
            raise InputError(
                f"the model has {len(names)} inputs {names}; pass the sample as a dict keyed "
                "by input name"
            )
        arrays = {names[0]: np.asarray(sample)}
    return {d.name: _fit(arrays[d.name], d, notes) for d in inputs}


def _fit(array: np.ndarray, decl: InputDecl, notes: list[str]) -> np.ndarray:
    if decl.dtype == "str":
        if array.dtype.kind not in "USO":
            raise InputError(f"sample {decl.name!r} must hold strings, got {array.dtype}")
        array = array.astype(object)
    else:
        want = np.dtype(decl.dtype)
        # Lossless-enough casts a user expects (float64 data into a float32 model); anything
        # else (strings into a number input) is a mistake.
        allowed = {"f": "fiub", "i": "iub", "u": "iub", "b": "b"}.get(want.kind, want.kind)
        if array.dtype.kind not in allowed:
            raise InputError(f"sample {decl.name!r} has dtype {array.dtype}, expected {want}")
        if array.dtype != want:
            notes.append(f"sample {decl.name!r} cast from {array.dtype} to {want}")
            array = array.astype(want)
    shape = list(array.shape)
    expected = ["?" if d is None else d for d in decl.shape]
    if len(shape) != len(decl.shape) or any(
        d is not None and d != s for d, s in zip(decl.shape, shape, strict=False)
    ):
        raise InputError(f"sample {decl.name!r} has shape {shape}, the model expects {expected}")
    return array


def _synthesize(inputs: Sequence[InputDecl], notes: list[str]) -> Feed:
    rng = np.random.default_rng(0)
    feed: Feed = {}
    for d in inputs:
        shape = tuple(
            s if s is not None else (_SYNTH_BATCH if i == 0 else _SYNTH_OTHER)
            for i, s in enumerate(d.shape)
        )
        dtype = np.dtype(object if d.dtype == "str" else d.dtype)
        if dtype.kind == "f":
            array = rng.standard_normal(shape).astype(dtype)
        elif dtype.kind in "iu":
            array = rng.integers(0, 2, size=shape).astype(dtype)
        elif dtype.kind == "b":
            array = rng.integers(0, 2, size=shape).astype(bool)
        else:
            raise UsageError(
                f"cannot make up a sample for input {d.name!r} of dtype {d.dtype}; pass --sample"
            )
        feed[d.name] = array
        notes.append(
            f"no sample given: random {dtype} sample of shape {list(shape)} made for "
            f"{d.name!r} from the model's input spec (pass a sample to verify on real data)"
        )
    return feed


def resolve_shapes(
    inputs: Sequence[InputDecl],
    feed: Feed,
    dynamic_axes: Mapping[str, Mapping[int, str]] | None,
    *,
    force_dynamic_batch: bool,
) -> list[tuple[int | None, ...]]:
    """The shapes to trace with: which axes stay symbolic in the ONNX model."""
    shapes = []
    for d in inputs:
        if dynamic_axes is None:
            shape = tuple(d.shape)
            if force_dynamic_batch and shape:
                shape = (None, *shape[1:])
        else:
            axes = dynamic_axes.get(d.name, {})
            fixed = [i for i in axes if i < len(d.shape) and d.shape[i] is not None]
            if fixed and not force_dynamic_batch:
                raise UsageError(
                    f"axis {fixed[0]} of input {d.name!r} is fixed to {d.shape[fixed[0]]} by the "
                    "model's signature and cannot be made dynamic; re-save it with None there"
                )
            shape = tuple(
                None if i in axes else (s if s is not None else int(feed[d.name].shape[i]))
                for i, s in enumerate(d.shape)
            )
        shapes.append(shape)
    return shapes


def export_tf_function(
    fn: TFFunction, options: ConvertOptions, feed: Feed, *, force_dynamic_batch: bool
) -> onnx.ModelProto:
    """Trace ``fn`` with an explicit signature and convert it with tf2onnx."""
    tf = import_tf(fn.extra)
    tf2onnx = require("tf2onnx", fn.extra)
    max_opset = max(tf2onnx.constants.OPSET_TO_IR_VERSION)
    if options.opset is not None and not 7 <= options.opset <= max_opset:
        raise UsageError(f"tf2onnx exports opsets 7 to {max_opset}; got --opset {options.opset}")

    shapes = resolve_shapes(
        fn.inputs, feed, options.dynamic_axes, force_dynamic_batch=force_dynamic_batch
    )
    specs = [
        tf.TensorSpec(shape, tf.string if d.dtype == "str" else tf.as_dtype(d.dtype), _IN.format(i))
        for i, (d, shape) in enumerate(zip(fn.inputs, shapes, strict=True))
    ]
    seen: dict[str, Any] = {}

    @tf.function(input_signature=specs)
    def exported(*args: Any) -> dict[str, Any]:
        outputs = fn.run(list(args))
        seen["outputs"] = outputs  # symbolic; only its structure is used, to name the outputs
        return {_OUT.format(i): t for i, t in enumerate(tf.nest.flatten(outputs))}

    try:
        exported.get_concrete_function()
    except Exception as exc:  # the model's own call failed on these specs
        raise ConversionError(
            f"tracing the model with inputs {_describe(fn.inputs, shapes)} failed: {first_line(exc)}"
        ) from exc
    fn.output_names = _output_names(tf, seen["outputs"], fn.preferred_output_names(), options)

    try:
        with _quiet_tf2onnx():
            model, _ = tf2onnx.convert.from_function(
                exported, input_signature=specs, opset=options.opset
            )
    except Exception as exc:  # tf2onnx raises anything from ValueError to KeyError
        raise ConversionError(f"tf2onnx could not convert the model: {first_line(exc)}") from exc

    _check_ops(model)
    in_names = {_IN.format(i): d.name for i, d in enumerate(fn.inputs)}
    out_names = {_OUT.format(i): n for i, n in enumerate(fn.output_names)}
    _rename_io(model, {**in_names, **out_names})
    order = {n: i for i, n in enumerate(fn.output_names)}
    sorted_outputs = sorted(model.graph.output, key=lambda vi: order.get(vi.name, len(order)))
    del model.graph.output[:]
    model.graph.output.extend(sorted_outputs)
    _name_dims(model, options.dynamic_axes)
    model.graph.name = fn.name
    return model


@contextlib.contextmanager
def _quiet_tf2onnx() -> Iterator[None]:
    # tf2onnx logs every op it cannot map at ERROR level; _check_ops reports them in one line.
    logger = logging.getLogger("tf2onnx")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(level)


def _output_names(
    tf: ModuleType, outputs: Any, preferred: list[str] | None, options: ConvertOptions
) -> list[str]:
    flat = tf.nest.flatten(outputs)
    if isinstance(outputs, Mapping):
        names = [str(k) for k in tf.nest.flatten({k: k for k in outputs})]
    elif preferred is not None and len(preferred) == len(flat) and len(set(preferred)) == len(flat):
        names = list(preferred)
    else:
        names = [f"output_{i}" for i in range(len(flat))]
    if options.output_names is not None:
        if len(options.output_names) != len(flat):
            raise UsageError(
                f"{len(options.output_names)} output names given but the model has "
                f"{len(flat)} outputs {names}"
            )
        names = list(options.output_names)
    if len(set(names)) != len(names):
        raise UsageError(f"output names must be unique, got {names}")
    return names


def _graphs(graph: onnx.GraphProto) -> list[onnx.GraphProto]:
    """``graph`` and every subgraph (Loop and If bodies) below it."""
    found = [graph]
    for node in graph.node:
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.GRAPH:
                found.extend(_graphs(attr.g))
            elif attr.type == onnx.AttributeProto.GRAPHS:
                for sub in attr.graphs:
                    found.extend(_graphs(sub))
    return found


def _check_ops(model: onnx.ModelProto) -> None:
    # tf2onnx runs with continue_on_error: an op it cannot map stays in the graph under its
    # TensorFlow name, which only fails later at load time. Say so now, naming the ops.
    unknown: set[str] = set()
    for graph in _graphs(model.graph):
        for node in graph.node:
            domain = node.domain or ""
            if domain in ("", "ai.onnx", "ai.onnx.ml") and not onnx.defs.has(node.op_type, domain):
                unknown.add(node.op_type)
    if unknown:
        raise ConversionError(
            f"tf2onnx cannot convert the TensorFlow op(s) {', '.join(sorted(unknown))} to ONNX; "
            "try a newer --opset or replace those ops in the model"
        )


def _rename_io(model: onnx.ModelProto, mapping: Mapping[str, str]) -> None:
    graphs = _graphs(model.graph)
    taken = {o for g in graphs for n in g.node for o in n.output} | {
        i.name for g in graphs for i in g.initializer
    }
    clash = sorted((taken - set(mapping)) & set(mapping.values()))
    if clash:
        raise UsageError(
            f"name(s) {clash} are used inside the graph; choose other input/output names"
        )
    for graph in graphs:
        for vi in [*graph.input, *graph.output, *graph.value_info]:
            vi.name = mapping.get(vi.name, vi.name)
        for node in graph.node:
            node.input[:] = [mapping.get(n, n) for n in node.input]
            node.output[:] = [mapping.get(n, n) for n in node.output]


def _name_dims(
    model: onnx.ModelProto, dynamic_axes: Mapping[str, Mapping[int, str]] | None
) -> None:
    """Give tf2onnx's ``unk__12`` dimensions readable names; axis 0 is the batch."""
    axes = dynamic_axes or {}
    batch: str | None = None  # the first input's batch name, shared by the outputs
    for index, vi in enumerate(model.graph.input):
        dims = vi.type.tensor_type.shape.dim
        for axis, dim in enumerate(dims):
            if not dim.HasField("dim_value"):
                dim.dim_param = axes.get(vi.name, {}).get(
                    axis, "batch" if axis == 0 else f"{vi.name}_dim{axis}"
                )
        if index == 0 and dims and not dims[0].HasField("dim_value"):
            batch = dims[0].dim_param
    for vi in model.graph.output:
        for axis, dim in enumerate(vi.type.tensor_type.shape.dim):
            if not dim.HasField("dim_value"):
                dim.dim_param = axes.get(vi.name, {}).get(
                    axis, batch if axis == 0 and batch else f"{vi.name}_dim{axis}"
                )


def _describe(inputs: Sequence[InputDecl], shapes: Sequence[tuple[int | None, ...]]) -> str:
    return ", ".join(
        f"{d.name}: {d.dtype}[{', '.join('?' if s is None else str(s) for s in shape)}]"
        for d, shape in zip(inputs, shapes, strict=True)
    )


_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_RAISED = re.compile(r"^[A-Za-z_.]*(?:Error|Exception): (.*)$")


def first_line(exc: BaseException) -> str:
    """The informative line of a framework error, for a one-line message."""
    lines = [ln.strip() for ln in _ANSI.sub("", str(exc)).splitlines() if ln.strip()]
    if lines and lines[0] == "in user code:":
        # A tf.function wraps the real error in a traceback: start at its last "XError: " line.
        for i in range(len(lines) - 1, 0, -1):
            match = _RAISED.match(lines[i])
            if match:
                lines = [match.group(1), *lines[i + 1 :]]
                break
    # Keras puts a generic line first and the cause after it.
    lines = [ln for ln in lines if not ln.startswith("Exception encountered when calling")] or lines
    line = lines[0] if lines else type(exc).__name__
    return line if len(line) <= 300 else line[:297] + "..."


def opset_of(model: onnx.ModelProto) -> int | None:
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)


def build_result(
    fn: TFFunction,
    model: onnx.ModelProto,
    feed: Feed,
    framework: str,
    source: dict[str, Any],
    notes: list[str],
) -> ConversionResult:
    tf = import_tf(fn.extra)
    tf2onnx = require("tf2onnx", fn.extra)
    return ConversionResult(
        model=model,
        signature=Signature.from_onnx(model),
        framework=framework,
        sample=feed,
        native=fn.native(),
        tolerance=TOLERANCE,
        source={
            **source,
            "tensorflow": tf.__version__,
            "tf2onnx": tf2onnx.__version__,
            "exporter": "tf2onnx",
            "opset": opset_of(model),
        },
        notes=notes,
    )


def np_dtype_name(tf: ModuleType, dtype: Any) -> str:
    dtype = tf.as_dtype(dtype)
    if dtype == tf.string:
        return "str"
    return str(np.dtype(dtype.as_numpy_dtype).name)


def named_inputs(decls: list[InputDecl], names: list[str] | None) -> list[InputDecl]:
    if names is None:
        return decls
    if len(names) != len(decls):
        raise UsageError(
            f"{len(names)} input names given but the model has {len(decls)} inputs "
            f"{[d.name for d in decls]}"
        )
    if len(set(names)) != len(names):
        raise UsageError(f"input names must be unique, got {names}")
    return [InputDecl(n, d.dtype, d.shape) for n, d in zip(names, decls, strict=True)]


# --- TensorFlow proper ----------------------------------------------------------------------


def _saved_model_dir(path: Path) -> Path | None:
    if path.is_dir() and (path / "saved_model.pb").is_file():
        return path
    if path.name == "saved_model.pb" and path.is_file():
        return path.parent
    return None


def _load_saved_model(path: Path) -> tuple[Any, str]:
    tf = import_tf("tensorflow")
    directory = _saved_model_dir(path)
    if directory is None:
        raise ModelLoadError(f"{str(path)!r} is not a SavedModel directory (no saved_model.pb)")
    try:
        return tf.saved_model.load(str(directory)), str(directory)
    except Exception as exc:
        raise ModelLoadError(
            f"cannot load the SavedModel at {str(directory)!r}: {first_line(exc)}"
        ) from exc


def _from_signatures(loaded: Any, notes: list[str]) -> tuple[TFFunction, str]:
    """A loaded SavedModel's serving signature (or its only one) as a TFFunction."""
    tf = import_tf("tensorflow")
    signatures = dict(getattr(loaded, "signatures", {}) or {})
    if not signatures:
        raise UsageError(
            "the SavedModel has no signatures; save it with tf.saved_model.save(obj, path, "
            "signatures=obj.f.get_concrete_function(...)) or a tf.function with input_signature"
        )
    key = "serving_default" if "serving_default" in signatures else sorted(signatures)[0]
    if key != "serving_default" or len(signatures) > 1:
        notes.append(f"converted signature {key!r} of {sorted(signatures)}")
    sig = signatures[key]
    kwargs = sig.structured_input_signature[1]
    keys = sorted(kwargs)
    decls = [
        InputDecl(k, np_dtype_name(tf, kwargs[k].dtype), tuple(kwargs[k].shape.as_list()))
        for k in keys
    ]

    def run(args: list[Any]) -> Any:
        # ``loaded`` must stay referenced: its variables die with it.
        _ = loaded
        return sig(**dict(zip(keys, args, strict=True)))

    return TFFunction(decls, run, extra="tensorflow", name=key), key


def _from_tf_function(obj: Any, sample: Any) -> TFFunction:
    """A ``tf.function`` (or a tf.Module whose ``__call__`` is one) as a TFFunction."""
    tf = import_tf("tensorflow")
    fn = obj
    if isinstance(obj, tf.Module) and not isinstance(
        obj, tf.types.experimental.PolymorphicFunction
    ):
        fn = obj.__call__ if callable(obj) else None
    if isinstance(fn, tf.types.experimental.ConcreteFunction):
        signature = fn.structured_input_signature[0]
    elif isinstance(fn, tf.types.experimental.PolymorphicFunction):
        signature = fn.input_signature
        if signature is None:
            if sample is None:
                raise UsageError(
                    "the tf.function has no input_signature; give it one or pass a sample"
                )
            arrays = (
                list(sample.values())
                if isinstance(sample, Mapping)
                else (list(sample) if isinstance(sample, list | tuple) else [sample])
            )
            signature = [
                tf.TensorSpec((None, *np.shape(a)[1:]), tf.as_dtype(np.asarray(a).dtype))
                for a in arrays
            ]
    else:
        raise UnsupportedModelError(
            f"cannot convert a {type(obj).__qualname__}; pass a SavedModel directory, a "
            "tf.function with an input_signature, or a tf.Module whose __call__ is one"
        )
    flat = tf.nest.flatten(signature)
    decls = [
        InputDecl(
            spec.name or f"input_{i}", np_dtype_name(tf, spec.dtype), tuple(spec.shape.as_list())
        )
        for i, spec in enumerate(flat)
    ]

    def run(args: list[Any]) -> Any:
        return fn(*tf.nest.pack_sequence_as(signature, args))

    return TFFunction(decls, run, extra="tensorflow", name=getattr(fn, "__name__", "function"))


@register
class TensorFlowConverter(Converter):
    name = "tensorflow"
    extra = "tensorflow"
    module_prefixes = ("tensorflow",)  # Keras models are claimed first by the keras converter

    def handles_path(self, path: Path) -> bool:
        return _saved_model_dir(path) is not None

    def handles_object(self, obj: Any) -> bool:
        # A Keras model is a tf.Module too; it belongs to the keras converter whichever of the
        # two registered first (keras.py imports this module, so this one does).
        modules = {(klass.__module__ or "").split(".")[0] for klass in type(obj).__mro__}
        return not modules & {"keras", "tf_keras"} and super().handles_object(obj)

    def _function(self, model: Any, options: ConvertOptions, notes: list[str]) -> TFFunction:
        source_name = "saved_model"
        if isinstance(model, Path):
            loaded, _ = _load_saved_model(model)
            fn, _key = _from_signatures(loaded, notes)
            source_name = model.name
        elif getattr(model, "signatures", None):
            fn, _key = _from_signatures(model, notes)
        else:
            fn = _from_tf_function(model, options.sample)
            source_name = str(getattr(model, "name", None) or fn.name)
        fn.inputs = named_inputs(fn.inputs, options.input_names)
        fn.name = source_name
        return fn

    def convert(self, model: Any, options: ConvertOptions) -> ConversionResult:
        notes: list[str] = []
        fn = self._function(model, options, notes)
        feed = feed_from_sample(options.sample, fn.inputs, notes)
        onnx_model = export_tf_function(fn, options, feed, force_dynamic_batch=False)
        for d in fn.inputs:
            if d.shape and d.shape[0] is not None:
                notes.append(
                    f"the model's signature fixes the batch axis of {d.name!r} at {d.shape[0]}"
                )
        source = {"sample": "given" if options.sample is not None else "synthesized"}
        return build_result(fn, onnx_model, feed, self.name, source, notes)

    def native_runner(self, model: Any, options: ConvertOptions) -> tuple[NativeRunner, Feed]:
        notes: list[str] = []
        fn = self._function(model, options, notes)
        feed = feed_from_sample(options.sample, fn.inputs, notes)
        fn.output_names = runner_output_names(fn, options, feed)
        return fn.native(), feed


def runner_output_names(fn: TFFunction, options: ConvertOptions, feed: Feed) -> list[str]:
    """Output names for a runner made without exporting: run once to see the output nest."""
    tf = import_tf(fn.extra)
    outputs = fn.run([tf.constant(feed[d.name]) for d in fn.inputs])
    return _output_names(tf, outputs, fn.preferred_output_names(), options)
