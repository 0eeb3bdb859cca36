"""scikit-learn estimators and pipelines -> ONNX via skl2onnx, with plain tensor outputs only.

The whole estimator is converted, preprocessing included, so that the ONNX model takes the raw
features. The input types come from the sample: a plain array becomes one input ``input``
``[batch, n_features]``; a DataFrame feeding a ``ColumnTransformer`` (or holding strings)
becomes one named ``[batch, 1]`` input per column. Classifiers output ``label`` and
``probabilities`` tensors (never ZipMap sequences of maps, which no tensor protocol can serve);
regressors and transformers output ``output``.

The sample handling and the native runner live in ``_tabular.py``, the graph finishing in
``_graph.py`` and the skl2onnx call in ``_skl2onnx.py``; the tree converters share the first two.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from formats._lazy import CORE, extra_for_module, missing_package, require
from formats._text import one_line
from formats.errors import ConversionError, InputError, ModelLoadError
from formats.onnx.convert._double_trees import exact_trees
from formats.onnx.convert._graph import (
    finish_graph,
    non_tensor_outputs,
    rename_value,
    run_on_sample,
    strip_zipmap,
)
from formats.onnx.convert._skl2onnx import (
    TREE_MODULES,
    is_classifier,
    skl2onnx_convert,
    top_module,
    walk,
)
from formats.onnx.convert._tabular import (
    InputLayout,
    Predictors,
    RoleRunner,
    check_names,
    layout_from_sample,
    not_fitted,
    output_widths,
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
from formats.onnx.convert.registry import detect, register
from formats.signature import Signature

# The helpers re-exported here were defined in this module before the split; the tree
# converters and older callers import them from it.
__all__ = [
    "DEFAULT_OPSET",
    "InputLayout",
    "RoleRunner",
    "SklearnConverter",
    "TREE_MODULES",
    "finish_graph",
    "layout_from_sample",
    "load_pickled",
    "non_tensor_outputs",
    "one_line",
    "output_widths",
    "package_versions",
    "rename_value",
    "run_on_sample",
    "strip_zipmap",
]

DEFAULT_OPSET = 17  # old enough for every ONNX Runtime still in use, new enough for skl2onnx
# skl2onnx computes in float32: trees agree exactly, linear models to a few ulps.
FLOAT32_TOLERANCE = Tolerance(atol=1e-4, rtol=1e-3)
FLOAT64_TOLERANCE = Tolerance(atol=1e-6, rtol=1e-6)
_HINT = (
    "a sample input is required for scikit-learn models (the ONNX input types come from it): "
    "pass sample=... or --sample FILE with a few rows of the training features"
)


@register
class SklearnConverter(Converter):
    name = "sklearn"
    extra = CORE
    module_prefixes = ("sklearn",)
    suffixes = (".pkl", ".joblib")

    def handles_object(self, obj: Any) -> bool:
        if top_module(obj) in TREE_MODULES:
            return False
        return super().handles_object(obj)

    def convert(self, model: Any, options: ConvertOptions) -> ConversionResult:
        estimator = load_pickled(model) if isinstance(model, Path) else model
        other = _other_converter(estimator, self)
        if other is not None:  # a pickled XGBClassifier, CatBoost model, ...
            return other.convert(estimator, options)
        layout, feed, notes = _layout(estimator, options, None)
        proto = skl2onnx_convert(estimator, layout, feed, options.opset or DEFAULT_OPSET)
        if options.keep_float64 and "float64" in layout.onnx_dtypes:
            # double trees ONNX Runtime runs, with the exact thresholds
            proto = exact_trees(proto, estimator) or proto
        roles = _roles(estimator, proto)
        current = [o.name for o in proto.graph.output]
        names = _output_names(roles, current, options.output_names)
        proto = finish_graph(proto, dict(zip(current, names, strict=True)), feed)
        if options.input_names:
            layout = _rename_inputs(proto, layout, options.input_names)
            feed = {new: feed[old] for old, new in zip(list(feed), layout.names, strict=True)}
        kept = options.keep_float64 and any(t == "float64" for t in layout.onnx_dtypes)
        if kept:
            _, error = run_on_sample(proto, feed)
            if error is not None:  # e.g. skl2onnx's double tree regressors, which ORT rejects
                raise ConversionError(
                    f"skl2onnx's float64 model of {type(estimator).__name__} does not run in "
                    f"ONNX Runtime ({error}); convert without keep_float64"
                )
        signature = Signature.from_onnx(proto)
        runner = RoleRunner(
            layout,
            dict(zip(roles, names, strict=True)),
            _predictors(estimator),
            output_widths(signature),
        )
        return ConversionResult(
            model=proto,
            signature=signature,
            framework=self.name,
            sample=feed,
            native=runner,
            tolerance=FLOAT64_TOLERANCE if kept else FLOAT32_TOLERANCE,
            source=_versions(estimator)
            | {"float64": "kept" if options.keep_float64 else "cast", "inputs": layout.kind},
            notes=notes,
            task=_task(estimator, roles),
            label_output=names[roles.index("label")] if "label" in roles else None,
        )

    def native_runner(self, model: Any, options: ConvertOptions) -> tuple[NativeRunner, Feed]:
        estimator = load_pickled(model) if isinstance(model, Path) else model
        other = _other_converter(estimator, self)
        if other is not None:
            return other.native_runner(estimator, options)
        layout, feed, _ = _layout(estimator, options, options.input_names)
        roles = _expected_roles(estimator)
        names = _output_names(roles, roles, options.output_names)
        return RoleRunner(
            layout, dict(zip(roles, names, strict=True)), _predictors(estimator)
        ), feed


# --- loading and checking ----------------------------------------------------------------------


def load_pickled(path: Path) -> Any:
    """Unpickle a user's own ``.pkl``/``.joblib`` file.

    This is the only place modelport unpickles anything, and only a file the user named as their
    model: unpickling runs code from the file, exactly as ``joblib.load`` in their own script would.
    """
    joblib = require("joblib", CORE)
    try:
        return joblib.load(path)
    except ModuleNotFoundError as exc:
        extra = extra_for_module(exc.name)
        if extra is None:
            raise ModelLoadError(f"cannot unpickle {str(path)!r}: {one_line(exc)}") from exc
        raise missing_package(str(exc.name).split(".")[0], extra) from exc
    except Exception as exc:  # pickle raises anything: missing classes, truncated files, ...
        raise ModelLoadError(
            f"cannot unpickle {str(path)!r}: {one_line(exc)}; the classes it holds must be "
            "importable with the library versions that saved it"
        ) from exc


def _other_converter(obj: Any, me: Converter) -> Converter | None:
    """The converter that owns an unpickled object, when it is not scikit-learn's."""
    if top_module(obj) == "sklearn" or me.handles_object(obj):
        return None
    try:
        other = detect(obj)
    except Exception:
        return None
    return None if other is me else other


def _check_estimator(estimator: Any) -> None:
    if not hasattr(estimator, "get_params"):
        kind = f"{type(estimator).__module__}.{type(estimator).__qualname__}"
        raise ConversionError(f"expected a fitted scikit-learn estimator, got {kind}")
    sklearn = require("sklearn", CORE)
    try:
        sklearn.utils.validation.check_is_fitted(estimator)
    except sklearn.exceptions.NotFittedError as exc:
        raise not_fitted(estimator) from exc
    except TypeError:  # not an estimator check_is_fitted understands: let skl2onnx decide
        pass


def _layout(
    estimator: Any, options: ConvertOptions, names: Sequence[str] | None
) -> tuple[InputLayout, Feed, list[str]]:
    """Check the estimator and lay out the sample as its ONNX inputs (``names`` renames them)."""
    _check_estimator(estimator)
    layout, feed, notes = layout_from_sample(
        options.sample,
        options.keep_float64,
        per_column=_wants_columns,
        estimator=estimator,
        hint=_HINT,
        names=names,
    )
    _check_features(estimator, layout, feed)
    return layout, feed, notes


def _wants_columns(estimator: Any, frame: Any) -> bool:
    """One input per column when columns are selected by name or are not all numbers."""
    pd = require("pandas", CORE)
    first = estimator
    while hasattr(first, "steps") and first.steps:
        first = first.steps[0][1]
    if type(first).__name__ == "ColumnTransformer":
        return True
    return not all(pd.api.types.is_numeric_dtype(t) for t in frame.dtypes)


def _check_features(estimator: Any, layout: InputLayout, feed: Feed) -> None:
    fitted = getattr(estimator, "feature_names_in_", None)
    if layout.columns is not None and fitted is not None:
        fitted = [str(c) for c in fitted]
        have = [str(c) for c in layout.columns]
        missing = [c for c in fitted if c not in have]
        extra = [c for c in have if c not in fitted]
        if missing or extra:
            parts = ([f"lacks column(s) {missing}"] if missing else []) + (
                [f"has unknown column(s) {extra}"] if extra else []
            )
            raise InputError(f"the sample {' and '.join(parts)}; the model was fitted on {fitted}")
        return
    n = getattr(estimator, "n_features_in_", None)
    n = int(n) if isinstance(n, int | np.integer) else None
    got = sum(v.shape[1] for v in feed.values())
    if n is not None and got != n:
        raise InputError(
            f"the sample has {got} column(s) but the model was fitted on {n} feature(s); pass a "
            f"sample with {n} columns"
        )


def _rename_inputs(
    proto: onnx.ModelProto, layout: InputLayout, names: Sequence[str]
) -> InputLayout:
    check_names("input", names, layout.names)
    for old, new in zip(layout.names, names, strict=True):
        rename_value(proto.graph, old, new)
    layout.names = list(names)
    return layout


# --- outputs -----------------------------------------------------------------------------------


def _roles(estimator: Any, proto: onnx.ModelProto) -> list[str]:
    """What each ONNX output holds: label, probabilities, scores or output (else its name)."""
    outputs = [o.name for o in proto.graph.output]
    if is_classifier(estimator) and len(outputs) == 2:
        return _expected_roles(estimator)
    if len(outputs) == 1 and (hasattr(estimator, "predict") or hasattr(estimator, "transform")):
        return ["output"]
    # Clusterers, outlier detectors, ...: outputs keep skl2onnx's names and are not compared.
    return [f"other:{name}" for name in outputs]


def _expected_roles(estimator: Any) -> list[str]:
    if is_classifier(estimator):
        return ["label", "probabilities" if hasattr(estimator, "predict_proba") else "scores"]
    return ["output"]


def _output_names(
    roles: Sequence[str], current: Sequence[str], wanted: Sequence[str] | None
) -> list[str]:
    names = [
        cur if role.startswith("other:") else role for role, cur in zip(roles, current, strict=True)
    ]
    if wanted:
        check_names("output", wanted, names)
        names = list(wanted)
    return names


def _task(estimator: Any, roles: Sequence[str]) -> str | None:
    if "label" in roles:
        return "classifier"
    sklearn_base = require("sklearn.base", CORE)
    return "regressor" if sklearn_base.is_regressor(estimator) else None


def _predictors(estimator: Any) -> Predictors:
    def output(x: Any) -> np.ndarray:
        if hasattr(estimator, "predict") and not _is_transformer_only(estimator):
            return np.asarray(estimator.predict(x))
        value = estimator.transform(x)
        return np.asarray(value.toarray() if hasattr(value, "toarray") else value)

    predictors: dict[str, Callable[[Any], np.ndarray]] = {
        "label": lambda x: np.asarray(estimator.predict(x)),
        "probabilities": lambda x: np.asarray(estimator.predict_proba(x)),
        "scores": lambda x: np.asarray(estimator.decision_function(x)),
        "output": output,
    }
    if getattr(estimator, "_estimator_type", None) == "clusterer" or type(estimator).__name__ in (
        "KMeans",
        "MiniBatchKMeans",
    ):
        # skl2onnx names a clusterer's outputs "label" (cluster) and "scores" (distances);
        # KMeans refuses float32 rows once fitted on float64, so they go in as float64.
        def wide(x: Any) -> Any:
            return x.astype(np.float64) if isinstance(x, np.ndarray) else x

        predictors["other:label"] = lambda x: np.asarray(estimator.predict(wide(x)))
        predictors["other:scores"] = lambda x: np.asarray(estimator.transform(wide(x)))
    return predictors


def _is_transformer_only(estimator: Any) -> bool:
    sklearn_base = require("sklearn.base", CORE)
    regressor = bool(sklearn_base.is_regressor(estimator))
    return not regressor and hasattr(estimator, "transform")


def _versions(estimator: Any) -> dict[str, Any]:
    packages = ["scikit-learn", "skl2onnx"]
    trees = sorted({top_module(e) for e in walk(estimator)} & set(TREE_MODULES))
    packages += [*trees, "onnxmltools"] if trees else []
    return {"exporter": "skl2onnx"} | package_versions(packages)
