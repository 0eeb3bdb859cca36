"""The flow every gradient-boosted tree converter follows; ``trees.py`` fills in each library.

Load, lay out the sample as one float32 input ``[batch, n_features]``, export, make the outputs
plain tensors with their final names (``label`` and ``probabilities`` for classifiers,
``output`` for regressors), and build the native runner from the library's own predictions.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from formats._lazy import require
from formats._text import clip
from formats.errors import ConversionError, InputError, ModelLoadError
from formats.onnx.convert._graph import finish_graph, rename_value
from formats.onnx.convert._tabular import (
    InputLayout,
    Predictors,
    RoleRunner,
    check_names,
    layout_from_sample,
    package_versions,
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
    "ONNXMLTOOLS_MAX_OPSET",
    "TreeConverter",
    "classifier_predictors",
    "float_input",
    "load_error",
    "onnxmltools_opset",
    "sklearn_api_predictors",
    "starts_with",
]

ONNXMLTOOLS_MAX_OPSET = 15  # onnxmltools refuses higher targets for these converters
# Probabilities of float32 tree sums: a few ulps of the summed leaf values.
TOLERANCE = Tolerance(atol=1e-4, rtol=1e-3)


class TreeConverter(Converter):
    """Shared flow: load, lay out the sample, export, make outputs tensors, build the runner."""

    packages: tuple[str, ...] = ()
    exporter = "onnxmltools"

    def convert(self, model: Any, options: ConvertOptions) -> ConversionResult:
        obj = self.load(model) if isinstance(model, Path) else model
        layout, feed, notes = self._layout(obj, options, None)
        if options.keep_float64:
            notes.append(f"{self.name} models compute in float32: keep_float64 does not apply")
        proto, exported_input, more_notes = self.export(obj, layout, feed, options)
        notes.extend(more_notes)
        rename_value(proto.graph, exported_input, layout.names[0])
        if options.input_names:
            check_names("input", options.input_names, layout.names)
            rename_value(proto.graph, layout.names[0], options.input_names[0])
            feed = {options.input_names[0]: feed[layout.names[0]]}
            layout.names = [options.input_names[0]]
        current = [o.name for o in proto.graph.output]
        roles = ["label", self.score_role(obj)] if len(current) == 2 else ["output"]
        names = list(options.output_names) if options.output_names else roles
        check_names("output", names, current)
        proto = finish_graph(proto, dict(zip(current, names, strict=True)), feed)
        return ConversionResult(
            model=proto,
            signature=Signature.from_onnx(proto),
            framework=self.name,
            sample=feed,
            native=RoleRunner(layout, dict(zip(roles, names, strict=True)), self.predictors(obj)),
            tolerance=TOLERANCE,
            source=self._versions() | {"float64": "cast", "inputs": layout.kind},
            notes=notes,
            task="classifier" if "label" in roles else "regressor",
            label_output=names[0] if "label" in roles else None,
        )

    def native_runner(self, model: Any, options: ConvertOptions) -> tuple[NativeRunner, Feed]:
        obj = self.load(model) if isinstance(model, Path) else model
        layout, feed, _ = self._layout(obj, options, options.input_names)
        roles = ["label", self.score_role(obj)] if self.is_classifier(obj) else ["output"]
        names = list(options.output_names) if options.output_names else roles
        check_names("output", names, roles)
        return RoleRunner(layout, dict(zip(roles, names, strict=True)), self.predictors(obj)), feed

    def _layout(
        self, obj: Any, options: ConvertOptions, names: list[str] | None
    ) -> tuple[InputLayout, Feed, list[str]]:
        self.check(obj)
        import pandas as pd

        kinds = getattr(options.sample, "dtypes", None)
        other = [str(c) for c, t in (kinds.items() if kinds is not None else [])
                 if not (pd.api.types.is_numeric_dtype(t) or pd.api.types.is_bool_dtype(t))]  # fmt: skip
        if other:  # the converters take one numeric tensor: a category column has no place
            raise ConversionError(
                f"onnxmltools takes numbers only, and this {self.name} model reads the "
                f"category or string column(s) {other}; encode them as numbers (an encoder "
                "in a pipeline in front of the model exports)"
            )
        layout, feed, notes = layout_from_sample(
            options.sample,
            False,
            per_column=lambda _est, _frame: False,
            estimator=obj,
            hint=(
                f"a sample input is required for {self.name} models (it sets the input width "
                "and is what verification runs): pass sample=... or --sample FILE"
            ),
            names=names,
        )
        if layout.onnx_dtypes != ["float32"]:
            raise InputError(
                f"{self.name} models take numeric features only; the sample holds strings"
            )
        expected = self.n_features(obj)
        got = next(iter(feed.values())).shape[1]
        if expected is not None and got != expected:
            raise InputError(
                f"the sample has {got} column(s) but the {self.name} model was trained on "
                f"{expected} feature(s); pass a sample with {expected} columns"
            )
        return layout, feed, notes

    def _versions(self) -> dict[str, Any]:
        return {"exporter": self.exporter} | package_versions(self.packages)

    # -- per framework --------------------------------------------------------------------------

    def load(self, path: Path) -> Any:
        raise NotImplementedError

    def check(self, obj: Any) -> None:
        """Raise ConversionError when ``obj`` is not a model of this framework we can export."""

    def n_features(self, obj: Any) -> int | None:
        raise NotImplementedError

    def is_classifier(self, obj: Any) -> bool:
        raise NotImplementedError

    def score_role(self, obj: Any) -> str:
        """What a classifier's second output holds: "probabilities", or "scores" (margins)."""
        return "probabilities"

    def export(
        self, obj: Any, layout: InputLayout, feed: Feed, options: ConvertOptions
    ) -> tuple[onnx.ModelProto, str, list[str]]:
        """The ONNX model, the name it gave its input, and notes."""
        raise NotImplementedError

    def predictors(self, obj: Any) -> Predictors:
        raise NotImplementedError


def load_error(library: str, path: Path, exc: BaseException, save_hint: str) -> ModelLoadError:
    """A model file its library cannot load: say so, and how the library saves models."""
    # XGBoost appends its C++ backtrace ("Stack trace: [bt] (0) /path/libxgboost.so ...").
    reason = clip(" ".join(str(exc).split("Stack trace:")[0].split())) or type(exc).__name__
    return ModelLoadError(
        f"{library} cannot load {str(path)!r}: {reason}; save models with {save_hint}"
    )


def onnxmltools_opset(options: ConvertOptions, name: str) -> tuple[int, list[str]]:
    if options.opset is None or options.opset <= ONNXMLTOOLS_MAX_OPSET:
        return options.opset or ONNXMLTOOLS_MAX_OPSET, []
    # The tree operators are the same in every later opset, so nothing is lost.
    return ONNXMLTOOLS_MAX_OPSET, [
        f"onnxmltools converts {name} models up to opset {ONNXMLTOOLS_MAX_OPSET}; "
        f"used {ONNXMLTOOLS_MAX_OPSET} instead of {options.opset}"
    ]


def float_input(width: int) -> Any:
    # onnxmltools checks for its own FloatTensorType class, not skl2onnx's.
    types = require("onnxmltools.convert.common.data_types", "xgboost")
    return types.FloatTensorType([None, width])


def sklearn_api_predictors(model: Any) -> Predictors:
    """A model with the scikit-learn API: ``predict`` for labels and values, ``predict_proba``."""
    return {
        "label": lambda x: np.asarray(model.predict(x)),
        "probabilities": lambda x: np.asarray(model.predict_proba(x)),
        "output": lambda x: np.asarray(model.predict(x)),
    }


def _binary_or_multi(probabilities: np.ndarray) -> np.ndarray:
    p = np.asarray(probabilities, dtype=np.float64)
    return np.stack([1.0 - p, p], axis=1) if p.ndim == 1 else p


def classifier_predictors(probabilities: Callable[[Any], np.ndarray]) -> Predictors:
    """Boosters return probabilities only; ONNX labels are the index of the largest one."""
    return {
        "probabilities": lambda x: _binary_or_multi(probabilities(x)),
        "label": lambda x: np.argmax(_binary_or_multi(probabilities(x)), axis=1).astype(np.int64),
    }


def starts_with(path: Path, prefix: bytes) -> bool:
    """Whether the file begins with ``prefix`` (whitespace ignored): sniffs text model formats."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(256).lstrip()
    except OSError:
        return False
    return head.replace(b" ", b"").startswith(prefix)
