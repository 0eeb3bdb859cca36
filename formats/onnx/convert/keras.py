"""Keras 3 models (objects, ``.keras`` and ``.h5`` files) -> ONNX, through tf2onnx.

Keras' own ``model.export(format="onnx")`` refuses a model that has never been called (a freshly
loaded one) unless given a signature, and it patches tf2onnx through private Keras modules. Here
the input signature is built from the model's declared inputs (batch axis ``None``) and the model
is traced by the shared TensorFlow machinery (``_tf2onnx.py``), so loading and converting is
enough; no ``predict``.
"""

from __future__ import annotations

import contextlib
import zipfile
from collections.abc import Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

from formats._lazy import require
from formats.errors import ModelLoadError, UnsupportedModelError, UsageError

# Imported for its registration: the TensorFlow converter registers before this one, so that a
# SavedModel directory named like a Keras file still goes to it.
from formats.onnx.convert import tensorflow as _tensorflow  # noqa: F401
from formats.onnx.convert._tf2onnx import TFFunction, TFFunctionConverter
from formats.onnx.convert._tf_import import first_line, import_tf
from formats.onnx.convert._tf_inputs import InputDecl, named_inputs, np_dtype_name
from formats.onnx.convert.base import ConvertOptions
from formats.onnx.convert.registry import register

__all__ = ["KerasConverter"]


def _keras() -> ModuleType:
    import_tf("keras")  # sets TensorFlow's log level before Keras imports it
    keras = require("keras", "keras")
    if keras.backend.backend() != "tensorflow":
        raise UsageError(
            f"Keras runs on the {keras.backend.backend()} backend; modelport converts Keras "
            "models with the TensorFlow backend: set KERAS_BACKEND=tensorflow"
        )
    return keras


_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"


def _check_container(path: Path) -> None:
    """Catch a corrupt file before Keras does: its own messages mislead ("File not found")."""
    if path.is_dir():
        raise ModelLoadError(
            f"{str(path)!r} is a directory; for a TensorFlow SavedModel use --framework tensorflow"
        )
    suffix = path.suffix.lower()
    if suffix == ".keras" and not zipfile.is_zipfile(path):
        raise ModelLoadError(
            f"{str(path)!r} is not a valid .keras archive (not a zip file); it is corrupt or "
            "truncated: save the model again with model.save('model.keras')"
        )
    if suffix == ".h5":
        with open(path, "rb") as fh:
            if fh.read(len(_HDF5_MAGIC)) != _HDF5_MAGIC:
                raise ModelLoadError(
                    f"{str(path)!r} is not an HDF5 file; it is corrupt or truncated: save the "
                    "model again with model.save()"
                )


def _load(path: Path) -> Any:
    keras = _keras()
    try:
        return keras.models.load_model(str(path), compile=False)
    except Exception as exc:  # zip, h5py, JSON and deserialization errors alike
        hint = "check that it is a complete model saved with model.save()"
        if path.name.lower().endswith(".weights.h5"):
            hint = "a .weights.h5 file holds only weights; save the whole model with model.save()"
        elif "custom" in str(exc).lower() or "locate" in str(exc).lower():
            hint = "import the module that defines (and registers) its custom layers first"
        raise ModelLoadError(
            f"cannot load Keras model {str(path)!r}: {first_line(exc).rstrip('.')}; {hint}"
        ) from exc


def _structure_and_inputs(model: Any, sample: Any) -> tuple[Any, list[InputDecl]]:
    """The nest the model's ``call`` takes (leaves are placeholders) and its declared inputs."""
    tf = import_tf("keras")
    structure = None
    # Functional and built Sequential models: the constructor's nest. Subclassed and unbuilt
    # Sequential models raise instead.
    with contextlib.suppress(AttributeError, ValueError):
        structure = model.input
    if structure is None:  # a Sequential model knows its inputs only as a flat list
        with contextlib.suppress(AttributeError, ValueError):
            structure = model.inputs[0] if len(model.inputs) == 1 else list(model.inputs)
    if structure is not None:
        flat = tf.nest.flatten(structure)
        if isinstance(structure, Mapping):
            names = [str(k) for k in tf.nest.flatten({k: k for k in structure})]
        else:
            names = [_input_name(t, i) for i, t in enumerate(flat)]
        # The batch axis is free whatever keras.Input(batch_size=...) said: a Keras model is
        # batch-agnostic, and the ONNX model gets a dynamic batch unless dynamic_axes says not.
        decls = [
            InputDecl(n, np_dtype_name(tf, t.dtype), (None, *tuple(t.shape)[1:]))
            for n, t in zip(names, flat, strict=True)
        ]
        return structure, decls
    if sample is not None:
        return _from_sample(tf, sample)
    shapes = getattr(model, "_build_shapes_dict", None)  # recorded by build() and by loading
    if shapes and len(shapes) == 1:
        shape = next(iter(shapes.values()))
        if isinstance(shape, tuple | list) and all(d is None or isinstance(d, int) for d in shape):
            dtype = str(getattr(model, "input_dtype", None) or "float32")
            return "input_0", [InputDecl("input_0", dtype, (None, *tuple(shape)[1:]))]
    raise UsageError(
        f"cannot tell the inputs of Keras model {getattr(model, 'name', '?')!r}; pass a sample "
        "or build the model with keras.Input"
    )


def _input_name(tensor: Any, index: int) -> str:
    # The InputLayer's name ("input_layer", or the name given to keras.Input) is stable across
    # save and load; the KerasTensor's own name ("keras_tensor_3") is not.
    with contextlib.suppress(AttributeError, IndexError, TypeError):
        return str(tensor._keras_history[0].name)
    return str(getattr(tensor, "name", "") or f"input_{index}")


def _from_sample(tf: ModuleType, sample: Any) -> tuple[Any, list[InputDecl]]:
    import numpy as np

    if isinstance(sample, Mapping):
        structure: Any = {str(k): str(k) for k in sample}
        names = [str(k) for k in tf.nest.flatten(structure)]
        arrays = [np.asarray(sample[n]) for n in names]
    elif isinstance(sample, list | tuple) and all(np.ndim(a) > 0 for a in sample):
        names = [f"input_{i}" for i in range(len(sample))]
        structure, arrays = list(names), [np.asarray(a) for a in sample]
    else:
        names, structure, arrays = ["input_0"], "input_0", [np.asarray(sample)]
    decls = []
    for n, a in zip(names, arrays, strict=True):
        # Keras computes in float32 whatever float the data came in; strings stay strings.
        dtype = {"f": "float32", "U": "str", "S": "str", "O": "str"}.get(a.dtype.kind, a.dtype.name)
        decls.append(InputDecl(n, dtype, (None, *a.shape[1:])))
    return structure, decls


def _output_names(model: Any) -> list[str] | None:
    names = getattr(model, "output_names", None)  # Functional: the output layers' names
    if names:
        return [str(n) for n in names]
    try:
        return [str(t._keras_history[0].name) for t in model.outputs]  # Sequential
    except (AttributeError, ValueError, IndexError, TypeError):
        return None


def _function(model: Any, options: ConvertOptions) -> TFFunction:
    if isinstance(model, Path):
        _check_container(model)  # before the slow TensorFlow import
    tf = import_tf("keras")
    keras = _keras()
    if isinstance(model, Path):
        model = _load(model)
    elif not isinstance(model, keras.Model) and not _is_tf_keras(model):
        raise UnsupportedModelError(
            f"cannot convert a {type(model).__module__}.{type(model).__qualname__} as a Keras "
            "model; pass a keras.Model, a .keras or an .h5 file"
        )
    structure, decls = _structure_and_inputs(model, options.sample)

    def run(args: list[Any]) -> Any:
        inputs = tf.nest.pack_sequence_as(structure, args)
        return model(inputs, training=False)

    fn = TFFunction(
        named_inputs(decls, options.input_names),
        run,
        preferred_output_names=lambda: _output_names(model),
        extra="keras",
        name=str(getattr(model, "name", "keras_model")),
    )
    return fn


def _is_tf_keras(model: Any) -> bool:
    # Keras 2 (the tf_keras package) models call and trace the same way; Keras 3 cannot load
    # them, but an object already in memory converts.
    return any((k.__module__ or "").startswith("tf_keras.") for k in type(model).__mro__)


@register
class KerasConverter(TFFunctionConverter):
    name = "keras"
    extra = "keras"
    module_prefixes = ("keras", "tf_keras")
    suffixes = (".keras", ".h5")
    force_dynamic_batch = True

    def function(self, model: Any, options: ConvertOptions, notes: list[str]) -> TFFunction:
        return _function(model, options)

    def source(self) -> dict[str, Any]:
        keras = _keras()
        return {"keras": keras.__version__, "keras_backend": keras.backend.backend()}
