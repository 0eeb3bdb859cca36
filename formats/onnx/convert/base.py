"""What every converter takes (:class:`ConvertOptions`) and is (:class:`Converter`).

A converter turns one framework's model into an ONNX ``ModelProto`` and also hands back a way to
run the *original* model (``native``), so that verification can compare the two on any input.
What it returns (:class:`ConversionResult`) is defined in :mod:`formats.onnx.conversion`, which
verification reads without importing the converters; it is re-exported here.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from formats.diff import Tolerance
from formats.onnx.conversion import ConversionResult, Feed, NativeRunner

__all__ = [
    "ConversionResult",
    "ConvertOptions",
    "Converter",
    "Feed",
    "NativeRunner",
    "Tolerance",
]


@dataclass
class ConvertOptions:
    """Everything the user may say about a conversion; converters ignore what does not apply."""

    sample: Any = None  # array, dict of arrays, DataFrame, or an already loaded file's content
    opset: int | None = None
    input_names: list[str] | None = None
    output_names: list[str] | None = None
    # {input or output name: {axis index: symbolic name}}; None means "dynamic batch axis only"
    dynamic_axes: dict[str, dict[int, str]] | None = None
    model_class: str | None = None  # "package.module:Class" for state dicts and checkpoints
    keep_float64: bool = False  # sklearn: keep double precision instead of casting to float32
    # torch/lightning: "dynamo" or "torchscript" pins one exporter; None tries dynamo, then falls
    # back to TorchScript (the choice and the reason land in ConversionResult.source)
    exporter: str | None = None


class Converter(ABC):
    """One framework. Subclasses set ``name`` and ``extra`` and implement the two hooks."""

    name: ClassVar[str]
    extra: ClassVar[str]
    # Prefixes of the module of an object's class (or any base class) this converter handles.
    module_prefixes: ClassVar[tuple[str, ...]] = ()
    # File suffixes (lower case, with the dot) this converter reads; ".dir" never matches.
    suffixes: ClassVar[tuple[str, ...]] = ()

    def handles_object(self, obj: Any) -> bool:
        for klass in type(obj).__mro__:
            module = klass.__module__ or ""
            if any(module == p or module.startswith(p + ".") for p in self.module_prefixes):
                return True
        return False

    def handles_path(self, path: Path) -> bool:
        return path.suffix.lower() in self.suffixes

    @abstractmethod
    def convert(self, model: Any, options: ConvertOptions) -> ConversionResult:
        """``model`` is either an in-memory object or a ``Path``."""

    def native_runner(self, model: Any, options: ConvertOptions) -> tuple[NativeRunner, Feed]:
        """Load the original (object or ``Path``) for standalone verification of an ONNX file.

        Returns a runner and the sample feed, both keyed by ``options.input_names`` and
        ``options.output_names`` (set from the ONNX file's signature by the caller).
        """
        return native_unsupported(self.name)  # type: ignore[no-any-return]


def native_unsupported(name: str) -> Any:
    from formats.errors import UsageError

    raise UsageError(
        f"verifying an existing ONNX file against a {name} original is not supported; "
        "convert the original with 'python -m formats convert', which verifies as it goes"
    )
