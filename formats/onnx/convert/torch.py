"""PyTorch ``nn.Module`` -> ONNX: objects, TorchScript files, state dicts and pickled modules.

This module finds the module (loading a file when given one); ``_torch_run.py`` turns the sample
into named inputs and runs the original, ``_torch_export.py`` exports it (the dynamo exporter
first, TorchScript as the recorded fallback). The Lightning converter reuses all of it through
:func:`export_module`, :func:`prepare_sample` and :func:`make_runner`, re-exported here.
"""

from __future__ import annotations

import importlib
import os
import sys
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from formats.errors import ModelLoadError, UsageError
from formats.onnx.convert._torch_export import EXPORTERS, export_module
from formats.onnx.convert._torch_run import (
    TorchSample,
    describe_error,
    make_runner,
    prepare_sample,
    torch_module,
)
from formats.onnx.convert.base import (
    ConversionResult,
    Converter,
    ConvertOptions,
    Feed,
    NativeRunner,
)
from formats.onnx.convert.registry import register

__all__ = [
    "EXPORTERS",
    "TorchConverter",
    "TorchSample",
    "check_module",
    "describe_error",
    "export_module",
    "import_class",
    "load_torch_file",
    "make_runner",
    "prepare_sample",
]

_HINT = "a sample input is required for torch models: pass sample=... or --sample FILE"


@register
class TorchConverter(Converter):
    name = "torch"
    extra = "torch"
    module_prefixes = ("torch",)
    suffixes = (".pt", ".pth")

    def handles_object(self, obj: Any) -> bool:
        # A LightningModule is also an nn.Module; it is the lightning converter's whichever
        # registered first (lightning.py imports this module, so torch registers before it).
        modules = [klass.__module__ or "" for klass in type(obj).__mro__]
        if any(m.split(".")[0] in ("lightning", "pytorch_lightning") for m in modules):
            return False
        return super().handles_object(obj)

    def convert(self, model: Any, options: ConvertOptions) -> ConversionResult:
        module, sample = self._prepare(model, options)
        return export_module(module, sample, options, framework=self.name)

    def native_runner(self, model: Any, options: ConvertOptions) -> tuple[NativeRunner, Feed]:
        module, sample = self._prepare(model, options)
        return make_runner(module, sample.names, options.output_names or []), sample.feed

    def _prepare(self, model: Any, options: ConvertOptions) -> tuple[Any, TorchSample]:
        module = load_torch_file(model, options) if isinstance(model, Path) else model
        check_module(module)
        return module, prepare_sample(
            module, options.sample, options.input_names, missing_hint=_HINT
        )


def check_module(module: Any) -> None:
    torch = torch_module()
    if not isinstance(module, torch.nn.Module):
        raise UsageError(
            f"expected a torch.nn.Module, got {type(module).__module__}.{type(module).__qualname__}"
        )


def import_class(spec: str) -> type:
    """Import ``package.module:Class`` (or ``package.module.Class``); ModelLoadError if it fails."""
    module_name, sep, attr = spec.partition(":")
    if not sep:
        module_name, _, attr = spec.rpartition(".")
    if not module_name or not attr:
        raise UsageError(f"model class {spec!r} must look like 'package.module:Class'")
    # Like ``python -m`` and uvicorn: a class defined where the user runs the command is
    # importable, ahead of installed packages of the same name.
    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
    try:
        obj: Any = importlib.import_module(module_name)
        for part in attr.split("."):
            obj = getattr(obj, part)
    except Exception as exc:  # ImportError, AttributeError, or the module's own failure
        raise ModelLoadError(
            f"cannot import class {spec!r}: {describe_error(exc)}; make the module importable "
            "(install it or run from its directory)"
        ) from exc
    if not isinstance(obj, type):
        raise ModelLoadError(f"cannot import class {spec!r}: it is a {type(obj).__name__}")
    return obj


def _is_torchscript_archive(path: Path) -> bool:
    # torch.jit.save writes a zip with a code/ folder; torch.save's zip has data.pkl only.
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any(
            "/code/" in name or name.endswith("constants.pkl") for name in archive.namelist()
        )


def load_torch_file(path: Path, options: ConvertOptions) -> Any:
    """A TorchScript archive, or a state dict / pickled module together with ``model_class``."""
    torch = torch_module()
    if _is_torchscript_archive(path):
        try:
            return torch.jit.load(str(path), map_location="cpu")
        except Exception as exc:
            raise ModelLoadError(
                f"cannot load TorchScript file {str(path)!r}: {describe_error(exc)}"
            ) from exc
    if not options.model_class:
        raise UsageError(
            f"{str(path)!r} is a state dict or pickled module, which needs its class: "
            "pass model_class='package.module:Class' (--class)"
        )
    cls = import_class(options.model_class)
    try:
        loaded = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception:
        # A pickled module is arbitrary pickle; the user vouched for it by naming its class.
        try:
            loaded = torch.load(str(path), map_location="cpu", weights_only=False)
        except Exception as exc:
            raise ModelLoadError(f"cannot load {str(path)!r}: {describe_error(exc)}") from exc
    if isinstance(loaded, torch.nn.Module):
        return loaded
    if isinstance(loaded, Mapping):
        return _from_state_dict(cls, loaded, path, options.model_class)
    raise ModelLoadError(
        f"{str(path)!r} holds a {type(loaded).__name__}, not a state dict or an nn.Module"
    )


def _from_state_dict(cls: type, loaded: Mapping[str, Any], path: Path, spec: str) -> Any:
    """A fresh ``cls()`` with the state dict (or a checkpoint's state dict) loaded into it."""
    state = loaded
    for key in ("state_dict", "model_state_dict", "model"):  # common checkpoint layouts
        if isinstance(loaded.get(key), Mapping):
            state = loaded[key]
            break
    try:
        module = cls()
    except Exception as exc:
        raise ModelLoadError(
            f"cannot instantiate {spec!r} without arguments: {describe_error(exc)}"
        ) from exc
    try:
        module.load_state_dict(state)
    except Exception as exc:
        raise ModelLoadError(
            f"the state dict in {str(path)!r} does not fit {spec!r}: {describe_error(exc)}"
        ) from exc
    return module
