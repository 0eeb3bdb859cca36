"""Lightning ``LightningModule`` -> ONNX: an object, or a ``.ckpt`` file with its class.

A LightningModule is an ``nn.Module``, so the export is the torch converter's; what Lightning adds
is ``example_input_array`` as the default sample and checkpoints that rebuild the module through
``load_from_checkpoint``. Unlike Lightning's own ``to_onnx``, the batch axis stays dynamic.
"""

from __future__ import annotations

import importlib
import importlib.util
from pathlib import Path
from typing import Any

from formats.errors import MissingExtraError, ModelLoadError, UsageError
from formats.onnx.convert.base import (
    ConversionResult,
    Converter,
    ConvertOptions,
    Feed,
    NativeRunner,
)
from formats.onnx.convert.registry import register
from formats.onnx.convert.torch import (
    TorchSample,
    check_module,
    describe_error,
    export_module,
    import_class,
    load_torch_file,
    make_runner,
    prepare_sample,
)

__all__ = ["LightningConverter", "load_checkpoint"]

_PACKAGES = ("lightning", "pytorch_lightning")
_HINT = (
    "a sample input is required: pass sample=... or --sample FILE, or set "
    "example_input_array on the LightningModule"
)


@register
class LightningConverter(Converter):
    name = "lightning"
    extra = "lightning"
    module_prefixes = _PACKAGES
    suffixes = (".ckpt",)

    def convert(self, model: Any, options: ConvertOptions) -> ConversionResult:
        module, sample = _prepare(model, options)
        return export_module(module, sample, options, framework=self.name, source=_versions(module))

    def native_runner(self, model: Any, options: ConvertOptions) -> tuple[NativeRunner, Feed]:
        module, sample = _prepare(model, options)
        return make_runner(module, sample.names, options.output_names or []), sample.feed


def _prepare(model: Any, options: ConvertOptions) -> tuple[Any, TorchSample]:
    """The module (loaded when a file) and its sample (by default its example_input_array)."""
    module = _load(model, options)
    sample = options.sample
    if sample is None:
        sample = getattr(module, "example_input_array", None)
    return module, prepare_sample(module, sample, options.input_names, missing_hint=_HINT)


def _load(model: Any, options: ConvertOptions) -> Any:
    if not isinstance(model, Path):
        module = model
    elif model.suffix.lower() == ".ckpt":
        module = load_checkpoint(model, options.model_class)
    else:  # --framework lightning named for a torch file
        module = load_torch_file(model, options)
    check_module(module)
    return module


def load_checkpoint(path: Path, model_class: str | None) -> Any:
    """Rebuild a LightningModule from a checkpoint with the class's ``load_from_checkpoint``."""
    if not model_class:
        raise UsageError(
            f"a Lightning checkpoint needs its LightningModule class: pass "
            f"model_class='package.module:Class' (--class) to load {str(path)!r}"
        )
    _require_lightning()
    cls = import_class(model_class)
    loader = getattr(cls, "load_from_checkpoint", None)
    if loader is None:
        raise ModelLoadError(f"{model_class!r} is not a LightningModule (no load_from_checkpoint)")
    try:
        return loader(str(path), map_location="cpu")
    except Exception as exc:
        raise ModelLoadError(
            f"cannot load checkpoint {str(path)!r} into {model_class!r}: {describe_error(exc)}"
        ) from exc


def _require_lightning() -> None:
    """Either package will do: checkpoints load through the class itself, which imports it."""
    if not any(importlib.util.find_spec(package) for package in _PACKAGES):
        raise MissingExtraError("lightning", "lightning")


def _versions(module: Any) -> dict[str, Any]:
    """The version of whichever Lightning package the module's class comes from."""
    for klass in type(module).__mro__:
        root = (klass.__module__ or "").split(".")[0]
        if root in _PACKAGES:
            version = getattr(importlib.import_module(root), "__version__", None)
            return {root: version} if version else {}
    return {}
