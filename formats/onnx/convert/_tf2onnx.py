"""The tf2onnx path shared by the TensorFlow and Keras converters.

A model is reduced to a :class:`TFFunction` (ordered, named input declarations and a function
from flat tensors to the model's outputs), which is traced once into a ``tf.function`` with an
explicit input signature and handed to ``tf2onnx.convert.from_function``. Tracing with an
explicit signature is what lets a freshly loaded Keras model convert without a ``predict`` call
first, and what keeps the batch axis symbolic. The same ``run`` function, called eagerly, is the
native runner for verification. :class:`TFFunctionConverter` is the convert/verify flow on top.

tf2onnx 1.17 works with numpy 2 and TensorFlow 2.21 on the path used here (``from_function``
without ``large_model``; only the large-model path still calls the removed ``np.product``).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any, ClassVar

import numpy as np
import onnx

from formats._lazy import require
from formats.errors import ConversionError, UsageError
from formats.onnx.convert._graph import opset_of
from formats.onnx.convert._tf_import import first_line, import_tf
from formats.onnx.convert._tf_inputs import (
    InputDecl,
    describe_inputs,
    feed_from_sample,
    resolve_shapes,
)
from formats.onnx.convert.base import (
    ConversionResult,
    Converter,
    ConvertOptions,
    Feed,
    NativeRunner,
    Tolerance,
)
from formats.signature import Signature

__all__ = [
    "TFFunction",
    "TFFunctionConverter",
    "build_result",
    "export_tf_function",
    "runner_output_names",
]

TOLERANCE = Tolerance(atol=1e-4, rtol=1e-3)
# Internal names used while tracing; the ONNX graph's inputs and outputs are renamed afterwards,
# so user names need not be valid TensorFlow op names. Zero padding keeps dict order == index.
_IN = "modelport_in_{:04d}"
_OUT = "modelport_out_{:04d}"


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


class TFFunctionConverter(Converter):
    """Convert and verify any model that :meth:`function` reduces to a :class:`TFFunction`."""

    # Keras models are batch-agnostic whatever their declared batch size; a SavedModel's
    # signature is taken at its word.
    force_dynamic_batch: ClassVar[bool] = False

    def function(self, model: Any, options: ConvertOptions, notes: list[str]) -> TFFunction:
        raise NotImplementedError

    def source(self) -> dict[str, Any]:
        """Facts about the framework for ``result.source``, beyond TensorFlow's and tf2onnx's."""
        return {}

    def convert(self, model: Any, options: ConvertOptions) -> ConversionResult:
        notes: list[str] = []
        fn = self.function(model, options, notes)
        feed = feed_from_sample(options.sample, fn.inputs, notes)
        onnx_model = export_tf_function(
            fn, options, feed, force_dynamic_batch=self.force_dynamic_batch
        )
        if not self.force_dynamic_batch:
            for d in fn.inputs:
                if d.shape and d.shape[0] is not None:
                    notes.append(
                        f"the model's signature fixes the batch axis of {d.name!r} at {d.shape[0]}"
                    )
        source = {
            **self.source(),
            "sample": "given" if options.sample is not None else "synthesized",
        }
        return build_result(fn, onnx_model, feed, self.name, source, notes)

    def native_runner(self, model: Any, options: ConvertOptions) -> tuple[NativeRunner, Feed]:
        notes: list[str] = []
        fn = self.function(model, options, notes)
        feed = feed_from_sample(options.sample, fn.inputs, notes)
        fn.output_names = runner_output_names(fn, options, feed)
        return fn.native(), feed


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

    @tf.function(input_signature=specs)  # type: ignore[untyped-decorator]
    def exported(*args: Any) -> dict[str, Any]:
        outputs = fn.run(list(args))
        seen["outputs"] = outputs  # symbolic; only its structure is used, to name the outputs
        return {_OUT.format(i): t for i, t in enumerate(tf.nest.flatten(outputs))}

    try:
        exported.get_concrete_function()
    except Exception as exc:  # the model's own call failed on these specs
        raise ConversionError(
            f"tracing the model with inputs {describe_inputs(fn.inputs, shapes)} failed: "
            f"{first_line(exc)}"
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
    converted: onnx.ModelProto = model
    return converted


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


def runner_output_names(fn: TFFunction, options: ConvertOptions, feed: Feed) -> list[str]:
    """Output names for a runner made without exporting: run once to see the output nest."""
    tf = import_tf(fn.extra)
    outputs = fn.run([tf.constant(feed[d.name]) for d in fn.inputs])
    return _output_names(tf, outputs, fn.preferred_output_names(), options)


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
