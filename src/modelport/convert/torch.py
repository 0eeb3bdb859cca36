"""PyTorch ``nn.Module`` -> ONNX: objects, TorchScript files, state dicts and pickled modules.

The torch.export-based exporter (``dynamo=True``) goes first because it refuses what it cannot
capture faithfully, such as a branch on a tensor's value; the TorchScript exporter is the
fallback, and ``result.source`` says which one produced the model and why the first one failed.
A TorchScript trace freezes data-dependent branches silently, which is exactly what verification
runs several inputs to catch.

The Lightning converter reuses everything here through :func:`export_module`,
:func:`prepare_sample` and :func:`make_runner`.
"""

from __future__ import annotations

import contextlib
import importlib
import inspect
import io
import logging
import os
import re
import sys
import tempfile
import warnings
import zipfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
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
from modelport.errors import ConversionError, InputError, ModelLoadError, UsageError
from modelport.signature import Signature

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

EXPORTERS = ("dynamo", "torchscript")
# Lets a user pin the exporter without touching code (the option wins over the variable).
EXPORTER_ENV = "MODELPORT_TORCH_EXPORTER"
TOLERANCE = Tolerance(atol=1e-4, rtol=1e-3)
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


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
        module = load_torch_file(model, options) if isinstance(model, Path) else model
        check_module(module)
        sample = prepare_sample(module, options.sample, options.input_names, missing_hint=_HINT)
        return export_module(module, sample, options, framework=self.name)

    def native_runner(self, model: Any, options: ConvertOptions) -> tuple[NativeRunner, Feed]:
        module = load_torch_file(model, options) if isinstance(model, Path) else model
        check_module(module)
        sample = prepare_sample(module, options.sample, options.input_names, missing_hint=_HINT)
        return make_runner(module, sample.names, options.output_names or []), sample.feed


_HINT = "a sample input is required for torch models: pass sample=... or --sample FILE"


def _torch() -> Any:
    return require("torch", "torch")


def check_module(module: Any) -> None:
    torch = _torch()
    if not isinstance(module, torch.nn.Module):
        raise UsageError(
            f"expected a torch.nn.Module, got {type(module).__module__}.{type(module).__qualname__}"
        )


# --- loading -----------------------------------------------------------------------------------


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
    torch = _torch()
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
        state = loaded
        for key in ("state_dict", "model_state_dict", "model"):  # common checkpoint layouts
            if isinstance(loaded.get(key), Mapping):
                state = loaded[key]
                break
        try:
            module = cls()
        except Exception as exc:
            raise ModelLoadError(
                f"cannot instantiate {options.model_class!r} without arguments: {describe_error(exc)}"
            ) from exc
        try:
            module.load_state_dict(state)
        except Exception as exc:
            raise ModelLoadError(
                f"the state dict in {str(path)!r} does not fit {options.model_class!r}: "
                f"{describe_error(exc)}"
            ) from exc
        return module
    raise ModelLoadError(
        f"{str(path)!r} holds a {type(loaded).__name__}, not a state dict or an nn.Module"
    )


# --- samples -----------------------------------------------------------------------------------


@dataclass
class TorchSample:
    names: list[str]  # ONNX input names, in the order of forward's positional arguments
    arrays: list[np.ndarray]

    @property
    def feed(self) -> Feed:
        return dict(zip(self.names, self.arrays, strict=True))


def _to_numpy(value: Any, what: str) -> np.ndarray:
    torch = _torch()
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy()
    if hasattr(value, "to_numpy"):  # a DataFrame or Series read from a CSV or Parquet file
        value = value.to_numpy()
    try:
        array = np.asarray(value)
    except Exception as exc:
        raise InputError(f"{what} cannot be made into an array: {describe_error(exc)}") from exc
    if array.dtype.kind not in "biuf":
        raise InputError(f"{what} has dtype {array.dtype}; torch models take numeric tensors")
    return array


def _forward_parameters(module: Any) -> list[str]:
    try:
        params = inspect.signature(module.forward).parameters.values()
    except (TypeError, ValueError):  # TorchScript methods have no Python signature
        return []
    return [p.name for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]


def prepare_sample(
    module: Any, sample: Any, input_names: Sequence[str] | None, *, missing_hint: str
) -> TorchSample:
    """Turn an array, tensor, tuple or dict into positional arrays with their ONNX input names."""
    if sample is None:
        raise InputError(missing_hint)
    if isinstance(sample, Mapping):
        keys = [str(k) for k in sample]
        params = _forward_parameters(module)
        if params and set(keys) <= set(params):
            keys = [p for p in params if p in keys]  # forward's order, so positions line up
        if input_names and set(input_names) != set(keys):
            raise InputError(
                f"input names {list(input_names)} do not match the sample's keys {keys}"
            )
        arrays = [_to_numpy(sample[k], f"sample {k!r}") for k in keys]
        return _fit_dtypes(module, TorchSample(keys, arrays))
    if isinstance(sample, tuple | list) and not isinstance(sample, np.ndarray):
        arrays = [_to_numpy(v, f"sample #{i}") for i, v in enumerate(sample)]
    else:
        arrays = [_to_numpy(sample, "the sample")]
    if input_names:
        if len(input_names) != len(arrays):
            raise InputError(
                f"{len(input_names)} input name(s) {list(input_names)} given for "
                f"{len(arrays)} sample input(s)"
            )
        names = list(input_names)
    else:
        names = ["input"] if len(arrays) == 1 else [f"input_{i}" for i in range(len(arrays))]
    return _fit_dtypes(module, TorchSample(names, arrays))


def _fit_dtypes(module: Any, sample: TorchSample) -> TorchSample:
    """float64 samples (numpy's default) become the module's float dtype instead of failing."""
    torch = _torch()
    dtype = next((p.dtype for p in module.parameters() if p.is_floating_point()), torch.float32)
    if dtype == torch.float32:
        sample.arrays = [
            a.astype(np.float32) if a.dtype == np.float64 else a for a in sample.arrays
        ]
    return sample


# --- running the original ----------------------------------------------------------------------


@contextlib.contextmanager
def _eval_mode(module: Any) -> Iterator[None]:
    """Run in eval mode without leaving the user's module changed afterwards."""
    modes = [(m, m.training) for m in module.modules()]
    module.eval()
    try:
        yield
    finally:
        for m, training in modes:
            m.training = training


def _flatten(output: Any, key: str | None = None) -> list[tuple[str | None, Any]]:
    """Tensors of a (nested) output in the order the exporters emit them, with dict keys."""
    if isinstance(output, Mapping):
        return [item for k, v in output.items() for item in _flatten(v, str(k))]
    if isinstance(output, tuple | list):
        return [item for v in output for item in _flatten(v)]
    if output is None:
        return []
    return [(key, output)]


def _call(module: Any, arrays: Sequence[np.ndarray]) -> list[tuple[str | None, np.ndarray]]:
    torch = _torch()
    tensors = [torch.from_numpy(np.ascontiguousarray(a)) for a in arrays]
    with _eval_mode(module), torch.no_grad():
        output = module(*tensors)
    return [(k, _to_numpy(v, "an output")) for k, v in _flatten(output)]


def make_runner(
    module: Any, input_names: Sequence[str], output_names: Sequence[str]
) -> NativeRunner:
    """The original module as a function of a feed keyed by ONNX names, any batch size."""
    inputs, outputs = list(input_names), list(output_names)

    def run(feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        values = _call(module, [np.asarray(feed[name]) for name in inputs])
        return {name: array for name, (_, array) in zip(outputs, values, strict=False)}

    return run


# --- export ------------------------------------------------------------------------------------


def _output_names(
    flat: Sequence[tuple[str | None, np.ndarray]], requested: Sequence[str] | None
) -> list[str]:
    if requested:
        if len(requested) != len(flat):
            raise InputError(
                f"{len(requested)} output name(s) {list(requested)} given, but the model "
                f"returns {len(flat)} tensor(s)"
            )
        return list(requested)
    keys = [k for k, _ in flat]
    if all(keys) and len(set(keys)) == len(keys):
        return [str(k) for k in keys]
    return ["output"] if len(flat) == 1 else [f"output_{i}" for i in range(len(flat))]


def _dynamic_axes(
    options: ConvertOptions, sample: TorchSample, outputs: Mapping[str, np.ndarray]
) -> dict[str, dict[int, str]]:
    if options.dynamic_axes is not None:
        known = set(sample.names) | set(outputs)
        unknown = sorted(set(options.dynamic_axes) - known)
        if unknown:
            raise InputError(
                f"dynamic axes name unknown tensor(s) {unknown}; inputs and outputs are "
                f"{sorted(known)}"
            )
        return {k: dict(v) for k, v in options.dynamic_axes.items()}
    axes: dict[str, dict[int, str]] = {}
    for name, array in [*sample.feed.items(), *outputs.items()]:
        if array.ndim >= 1:
            axes[name] = {0: "batch"}
    return axes


def _requested_exporter(options: ConvertOptions) -> str | None:
    choice = getattr(options, "exporter", None) or os.environ.get(EXPORTER_ENV) or None
    if choice is not None and choice not in EXPORTERS:
        raise UsageError(f"unknown torch exporter {choice!r}; use one of {', '.join(EXPORTERS)}")
    return choice


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence the exporters' graph dumps, logs and warnings; our error says what matters.

    torch.export prints failed graphs to ``sys.stderr``, torch's loggers carry their own levels
    and handlers, and the TorchScript exporter's C++ side writes to file descriptor 2 (its
    ``verbose=False`` does not switch that off), so each channel is muted on its own.
    """
    loggers = [logging.getLogger("torch")] + [
        logging.getLogger(name)
        for name in list(logging.root.manager.loggerDict)
        if name.startswith("torch.")
    ]
    levels = [(logger, logger.level) for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.CRITICAL)
    try:
        with (
            warnings.catch_warnings(),
            contextlib.redirect_stderr(io.StringIO()),
            _silence_fd(2),
        ):
            warnings.simplefilter("ignore")
            yield
    finally:
        for logger, level in levels:
            logger.setLevel(level)


@contextlib.contextmanager
def _silence_fd(fd: int) -> Iterator[None]:
    try:
        saved = os.dup(fd)
    except OSError:  # no such descriptor (e.g. a daemon): nothing to silence
        yield
        return
    try:
        with open(os.devnull, "wb") as devnull:
            os.dup2(devnull.fileno(), fd)
        yield
    finally:
        os.dup2(saved, fd)
        os.close(saved)


def _export_dynamo(
    module: Any,
    tensors: tuple[Any, ...],
    names: list[str],
    outs: list[str],
    axes: dict[str, dict[int, str]],
    opset: int | None,
) -> onnx.ModelProto:
    torch = _torch()
    dynamic_shapes = tuple(axes.get(name) for name in names)
    program = torch.onnx.export(
        module,
        tensors,
        dynamo=True,
        verbose=False,
        input_names=names,
        output_names=outs,
        opset_version=opset,
        dynamic_shapes=dynamic_shapes if any(dynamic_shapes) else None,
        optimize=True,
    )
    model: onnx.ModelProto = program.model_proto
    return model


def _export_torchscript(
    module: Any,
    tensors: tuple[Any, ...],
    names: list[str],
    outs: list[str],
    axes: dict[str, dict[int, str]],
    opset: int | None,
) -> onnx.ModelProto:
    torch = _torch()
    # Its C++ log (a graph dump on failure, even with verbose=False) goes to stdout by default;
    # point it at stderr, which _quiet() mutes, and back to the default afterwards.
    set_log_stream = getattr(torch._C, "_jit_set_onnx_log_output_stream", lambda _: None)
    set_log_stream("stderr")
    try:
        with tempfile.TemporaryDirectory(prefix="modelport-torch-") as tmp:
            path = Path(tmp) / "model.onnx"
            torch.onnx.export(
                module,
                tensors,
                str(path),
                dynamo=False,
                input_names=names,
                output_names=outs,
                opset_version=opset,
                dynamic_axes=axes or None,
            )
            # onnx.load pulls any external weights back in, so the proto is self-contained.
            return onnx.load(str(path))
    finally:
        set_log_stream("stdout")


def _name_axes(model: onnx.ModelProto, axes: Mapping[str, Mapping[int, str]]) -> None:
    """Give requested dynamic axes their names; exporters invent names for derived axes."""
    for value in [*model.graph.input, *model.graph.output]:
        wanted = axes.get(value.name)
        if not wanted or not value.type.HasField("tensor_type"):
            continue
        dims = value.type.tensor_type.shape.dim
        for axis, symbol in wanted.items():
            if 0 <= axis < len(dims) and not dims[axis].HasField("dim_value"):
                dims[axis].dim_param = symbol


def _opset(model: onnx.ModelProto) -> int | None:
    for entry in model.opset_import:
        if entry.domain in ("", "ai.onnx"):
            return int(entry.version)
    return None


def export_module(
    module: Any,
    sample: TorchSample,
    options: ConvertOptions,
    *,
    framework: str,
    source: Mapping[str, Any] | None = None,
) -> ConversionResult:
    """Export ``module`` with ``sample``: dynamo first, TorchScript as the recorded fallback."""
    torch = _torch()
    try:
        flat = _call(module, sample.arrays)
    except Exception as exc:
        shapes = ", ".join(f"{n} {list(a.shape)} {a.dtype}" for n, a in sample.feed.items())
        raise InputError(
            f"the sample does not fit the model ({shapes}): {describe_error(exc)}; pass a sample "
            "shaped like the model's input"
        ) from exc
    if not flat:
        raise ConversionError("the model returned no tensors; forward must return tensors")
    outs = _output_names(flat, options.output_names)
    reference = {name: array for name, (_, array) in zip(outs, flat, strict=True)}
    axes = _dynamic_axes(options, sample, reference)
    tensors = tuple(torch.from_numpy(np.ascontiguousarray(a)) for a in sample.arrays)

    def export(exporter: str) -> onnx.ModelProto:
        run = _export_dynamo if exporter == "dynamo" else _export_torchscript
        return run(module, tensors, sample.names, outs, axes, options.opset)

    with _eval_mode(module), _quiet():
        model, info = _export_with_fallback(
            export, _requested_exporter(options), isinstance(module, torch.jit.ScriptModule)
        )
    _name_axes(model, axes)
    info = {"torch": torch.__version__.split("+")[0], **info, "opset": _opset(model)}
    info.update(source or {})
    notes = [f"exported by the {info['exporter']} exporter at opset {info['opset']}"]
    if "fallback_reason" in info:
        notes.append(f"used the TorchScript exporter because {info['fallback_reason']}")
    return ConversionResult(
        model=model,
        signature=Signature.from_onnx(model),
        framework=framework,
        sample=sample.feed,
        native=make_runner(module, sample.names, outs),
        tolerance=TOLERANCE,
        source=info,
        notes=notes,
    )


def _export_with_fallback(
    export: Callable[[str], onnx.ModelProto], requested: str | None, is_script: bool
) -> tuple[onnx.ModelProto, dict[str, Any]]:
    """Run the requested exporter, or dynamo then TorchScript; say which one and why."""
    if requested == "dynamo" or (requested is None and not is_script):
        try:
            return export("dynamo"), {"exporter": "dynamo"}
        except Exception as exc:
            reason = describe_error(exc)
            if requested == "dynamo":
                raise ConversionError(
                    f"the dynamo exporter cannot export the model ({reason}); {_hint(reason)}"
                ) from exc
    elif requested == "torchscript":
        reason = "the torchscript exporter was requested"
    else:
        reason = "a TorchScript module cannot be captured by torch.export"
    try:
        model = export("torchscript")
    except Exception as exc:
        cause = describe_error(exc)
        both = f"dynamo exporter: {reason}; " if requested is None and not is_script else ""
        raise ConversionError(
            f"cannot export the model to ONNX ({both}TorchScript exporter: {cause}); {_hint(cause)}"
        ) from exc
    return model, {"exporter": "torchscript", "fallback_reason": reason}


def _hint(reason: str) -> str:
    """What the user can do about an exporter's failure."""
    if "data-dependent" in reason or "DataDependent" in reason:
        return (
            "forward branches on a tensor's value: express it with torch.where or torch.cond, "
            "or use exporter='torchscript' and check the verification"
        )
    if "ScriptModule" in reason:
        return "export TorchScript modules with exporter='torchscript'"
    return (
        "replace the unsupported operation, try another opset (--opset), or pick the other "
        "exporter (exporter='dynamo'|'torchscript')"
    )


def describe_error(exc: BaseException) -> str:
    """The informative line of an exporter's multi-page error report."""
    text = _ANSI.sub("", str(exc)).strip()
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    # The torch.export-based exporter puts the real cause under "## Exception summary".
    for i, line in enumerate(lines):
        if line.startswith("## Exception summary") and i + 1 < len(lines):
            cause = lines[i + 1]
            match = re.match(r"<class '(?:[\w.]+\.)?(\w+)'>:\s*(.*)", cause)
            text = f"{match.group(1)}: {match.group(2)}" if match else cause
            break
    else:
        text = lines[0] if lines else type(exc).__name__
    text = " ".join(text.split())
    return text if len(text) <= 300 else text[:297] + "..."
