"""TensorFlow SavedModel directories and ``tf.function`` objects -> ONNX, through tf2onnx.

A SavedModel's serving signature (or its only one), a ``tf.function`` with an input signature,
or a ``tf.Module`` whose ``__call__`` is one becomes a ``TFFunction``; the tracing, the tf2onnx
call and the verification runner are the ones the Keras converter uses too (``_tf2onnx.py``).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from formats.errors import ModelLoadError, UnsupportedModelError, UsageError
from formats.onnx.convert._graph import opset_of
from formats.onnx.convert._tf2onnx import (
    TFFunction,
    TFFunctionConverter,
    build_result,
    export_tf_function,
    runner_output_names,
)
from formats.onnx.convert._tf_import import first_line, import_tf
from formats.onnx.convert._tf_inputs import (
    InputDecl,
    feed_from_sample,
    named_inputs,
    np_dtype_name,
    resolve_shapes,
)
from formats.onnx.convert.base import ConvertOptions
from formats.onnx.convert.registry import register

# The shared machinery is re-exported: it lived here before moving to _tf2onnx.py and friends.
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
class TensorFlowConverter(TFFunctionConverter):
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

    def function(self, model: Any, options: ConvertOptions, notes: list[str]) -> TFFunction:
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
