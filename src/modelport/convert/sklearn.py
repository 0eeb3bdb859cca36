"""scikit-learn estimators and pipelines -> ONNX via skl2onnx, with plain tensor outputs only.

The whole estimator is converted, preprocessing included, so that the ONNX model takes the raw
features. The input types come from the sample: a plain array becomes one input ``input``
``[batch, n_features]``; a DataFrame feeding a ``ColumnTransformer`` (or holding strings)
becomes one named ``[batch, 1]`` input per column. Classifiers output ``label`` and
``probabilities`` tensors (never ZipMap sequences of maps, which no tensor protocol can serve);
regressors and transformers output ``output``.

The graph helpers at the bottom (tensor-only outputs, renaming, batch axes) and
:class:`RoleRunner` are shared with the gradient-boosted tree converters in ``trees.py``.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
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
from modelport.convert.registry import detect, register
from modelport.errors import ConversionError, InputError, ModelLoadError
from modelport.signature import Signature

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
ML_OPSET = 3  # ai.onnx.ml 3: the first with double-precision tree ensembles
# skl2onnx computes in float32: trees agree exactly, linear models to a few ulps.
FLOAT32_TOLERANCE = Tolerance(atol=1e-4, rtol=1e-3)
FLOAT64_TOLERANCE = Tolerance(atol=1e-6, rtol=1e-6)
# Their sklearn-API classes derive from sklearn's BaseEstimator, but their own converters
# (trees.py) take them; inside a Pipeline they go through skl2onnx with onnxmltools' converters.
TREE_MODULES = ("xgboost", "lightgbm", "catboost")
_HINT = (
    "a sample input is required for scikit-learn models (the ONNX input types come from it): "
    "pass sample=... or --sample FILE with a few rows of the training features"
)


@register
class SklearnConverter(Converter):
    name = "sklearn"
    extra = "sklearn"
    module_prefixes = ("sklearn",)
    suffixes = (".pkl", ".joblib")

    def handles_object(self, obj: Any) -> bool:
        if _top_module(obj) in TREE_MODULES:
            return False
        return super().handles_object(obj)

    def convert(self, model: Any, options: ConvertOptions) -> ConversionResult:
        estimator = load_pickled(model) if isinstance(model, Path) else model
        other = _other_converter(estimator, self)
        if other is not None:  # a pickled XGBClassifier, CatBoost model, ...
            return other.convert(estimator, options)
        _check_estimator(estimator)
        layout, feed, notes = layout_from_sample(
            options.sample,
            options.keep_float64,
            per_column=_wants_columns,
            estimator=estimator,
            hint=_HINT,
        )
        _check_features(estimator, layout, feed)
        proto = _skl2onnx(estimator, layout, feed, options.opset or DEFAULT_OPSET)
        roles = _roles(estimator, proto)
        current = [o.name for o in proto.graph.output]
        names = _output_names(roles, current, options.output_names)
        proto = finish_graph(proto, dict(zip(current, names, strict=True)), feed)
        if options.input_names:
            layout = _rename_inputs(proto, layout, feed, options.input_names)
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
        _check_estimator(estimator)
        layout, feed, _ = layout_from_sample(
            options.sample,
            options.keep_float64,
            per_column=_wants_columns,
            estimator=estimator,
            hint=_HINT,
            names=options.input_names,
        )
        _check_features(estimator, layout, feed)
        roles = _expected_roles(estimator)
        names = _output_names(roles, roles, options.output_names)
        return RoleRunner(
            layout, dict(zip(roles, names, strict=True)), _predictors(estimator)
        ), feed


# --- loading -----------------------------------------------------------------------------------


def load_pickled(path: Path) -> Any:
    """Unpickle a user's own ``.pkl``/``.joblib`` file.

    This is the only place modelport unpickles anything, and only a file the user named as their
    model: unpickling runs code from the file, exactly as ``joblib.load`` in their own script would.
    """
    joblib = require("joblib", "sklearn")
    try:
        return joblib.load(path)
    except Exception as exc:  # pickle raises anything: missing classes, truncated files, ...
        raise ModelLoadError(
            f"cannot unpickle {str(path)!r}: {one_line(exc)}; the classes it holds must be "
            "importable with the library versions that saved it"
        ) from exc


def _top_module(obj: Any) -> str:
    return (type(obj).__module__ or "").split(".")[0]


def _other_converter(obj: Any, me: Converter) -> Converter | None:
    """The converter that owns an unpickled object, when it is not scikit-learn's."""
    if _top_module(obj) == "sklearn" or me.handles_object(obj):
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
    sklearn = require("sklearn", "sklearn")
    try:
        sklearn.utils.validation.check_is_fitted(estimator)
    except sklearn.exceptions.NotFittedError as exc:
        raise ConversionError(
            f"{type(estimator).__name__} is not fitted; call fit() before converting"
        ) from exc
    except TypeError:  # not an estimator check_is_fitted understands: let skl2onnx decide
        pass


# --- inputs ------------------------------------------------------------------------------------


@dataclass
class InputLayout:
    """How ONNX inputs map back to what the original model takes.

    ``kind`` is "array" (one 2-D input) or "columns" (one ``[batch, 1]`` input per column).
    ``columns``/``dtypes`` are the sample DataFrame's, so that the original gets a DataFrame with
    the column names and dtypes it was fitted on; None for a plain array sample.
    """

    kind: str
    names: list[str]
    onnx_dtypes: list[str]
    columns: list[Any] | None = None
    dtypes: list[Any] | None = None

    def to_native(self, feed: Mapping[str, np.ndarray]) -> Any:
        if self.columns is None:
            return np.asarray(feed[self.names[0]])
        pd = require("pandas", "sklearn")
        if self.kind == "array":
            # One float input holds every column: the values stay as the ONNX model sees them
            # (an int column varied by verification is no longer integral).
            return pd.DataFrame(np.asarray(feed[self.names[0]]), columns=self.columns)
        frame = pd.DataFrame(
            {
                col: np.asarray(feed[name]).reshape(-1)
                for col, name in zip(self.columns, self.names, strict=True)
            }
        )
        for col, dtype in zip(self.columns, self.dtypes or [], strict=False):
            if frame[col].dtype == dtype:
                continue
            if isinstance(dtype, pd.CategoricalDtype):  # categories came through as strings
                by_text = {str(c): c for c in dtype.categories}
                frame[col] = frame[col].map(lambda v, m=by_text: m.get(v, v)).astype(dtype)
            else:
                frame[col] = frame[col].astype(dtype)
        return frame


def layout_from_sample(
    sample: Any,
    keep_float64: bool,
    *,
    per_column: Callable[[Any, Any], bool],
    estimator: Any,
    hint: str,
    names: Sequence[str] | None = None,
) -> tuple[InputLayout, Feed, list[str]]:
    """Turn the user's sample into an input layout, the ONNX feed, and notes worth reporting.

    ``per_column(estimator, frame)`` says whether a DataFrame becomes one input per column.
    """
    if sample is None:
        raise InputError(hint)
    notes: list[str] = []
    if isinstance(sample, Mapping):
        only = next(iter(sample.values())) if len(sample) == 1 else None
        # {"input": rows} (e.g. an .npz feed) is an array; anything else is one column per key
        sample = only if only is not None and np.ndim(only) == 2 else _frame_from_dict(sample)
    if _is_frame(sample):
        if sample.shape[0] == 0 or sample.shape[1] == 0:
            raise InputError("the sample DataFrame is empty; pass a few rows of the features")
        fitted = getattr(estimator, "feature_names_in_", None)
        if fitted is not None and set(map(str, fitted)) == set(map(str, sample.columns)):
            # The ONNX model takes columns in the order the estimator was fitted on.
            by_name = {str(c): c for c in sample.columns}
            sample = sample[[by_name[str(c)] for c in fitted]]
        if per_column(estimator, sample):
            layout, feed = _column_layout(sample, keep_float64, notes)
        else:
            layout, feed = _array_layout(sample.to_numpy(), keep_float64, notes, "input")
            if fitted is not None:  # fitted on a DataFrame: the original gets one back
                layout.columns, layout.dtypes = list(sample.columns), list(sample.dtypes)
    else:
        layout, feed = _array_layout(np.asarray(sample), keep_float64, notes, "input")
    if names:
        if len(names) != len(layout.names):
            raise InputError(
                f"{len(names)} input name(s) given but the model has {len(layout.names)} "
                f"input(s) {layout.names}"
            )
        feed = {new: feed[old] for old, new in zip(layout.names, names, strict=True)}
        layout.names = list(names)
    return layout, feed, notes


def _is_frame(obj: Any) -> bool:
    return type(obj).__name__ == "DataFrame" and hasattr(obj, "dtypes")


def _frame_from_dict(sample: Mapping[str, Any]) -> Any:
    pd = require("pandas", "sklearn")
    columns = {}
    for key, value in sample.items():
        array = np.asarray(value)
        if array.ndim == 2 and array.shape[1] == 1:
            array = array[:, 0]
        if array.ndim != 1:
            raise InputError(
                f"sample entry {key!r} has shape {list(array.shape)}; a dict sample holds one "
                "column per key (shape [rows] or [rows, 1]); pass a 2-D array or a DataFrame"
            )
        columns[key] = array
    try:
        return pd.DataFrame(columns)
    except ValueError as exc:
        raise InputError(f"the sample's columns do not fit together: {one_line(exc)}") from exc


def _float_type(dtype: np.dtype[Any], keep_float64: bool, notes: list[str]) -> str:
    if dtype == np.float64:
        if keep_float64:
            return "float64"
        note = "float64 inputs are cast to float32 (the ONNX model computes in float32)"
        if note not in notes:
            notes.append(note)
    return "float32"


def _array_layout(
    array: np.ndarray, keep_float64: bool, notes: list[str], name: str
) -> tuple[InputLayout, Feed]:
    if array.ndim != 2 or array.shape[0] == 0:
        raise InputError(
            f"the sample has shape {list(array.shape)}; pass a 2-D array [rows, features] with "
            "at least one row (reshape a single row with x.reshape(1, -1))"
        )
    kind = array.dtype.kind
    if kind in "USO":
        if kind == "O" and not all(isinstance(v, str) for v in array.ravel()):
            raise InputError(
                "the sample array mixes types; pass a DataFrame so each column keeps its dtype"
            )
        dtype = "str"
        values = array.astype(str).astype(object)
    elif kind in "fiub":
        dtype = _float_type(array.dtype, keep_float64, notes) if kind == "f" else "float32"
        if kind != "f":
            notes.append(f"{array.dtype.name} sample values are fed as float32")
        values = array.astype(dtype)
    else:
        raise InputError(f"sample dtype {array.dtype} is not supported; pass numbers or strings")
    return InputLayout("array", [name], [dtype]), {name: values}


def _column_layout(frame: Any, keep_float64: bool, notes: list[str]) -> tuple[InputLayout, Feed]:
    pd = require("pandas", "sklearn")
    api = pd.api.types
    names, dtypes, feed = [], [], {}
    for col in frame.columns:
        series = frame[col]
        name = str(col)
        if api.is_bool_dtype(series.dtype) or api.is_integer_dtype(series.dtype):
            dtype, values = "int64", series.to_numpy().astype(np.int64)
        elif api.is_float_dtype(series.dtype):
            raw = series.to_numpy()
            dtype = _float_type(raw.dtype, keep_float64, notes)
            values = raw.astype(dtype)
        elif isinstance(series.dtype, pd.CategoricalDtype) or api.is_string_dtype(series.dtype):
            if series.isna().any():
                raise InputError(
                    f"column {col!r} has missing values; string inputs cannot carry NaN: fill "
                    "them (e.g. with '') in the sample and at inference time"
                )
            dtype, values = "str", series.astype(str).to_numpy().astype(object)
        else:
            raise InputError(
                f"column {col!r} has dtype {series.dtype}, which ONNX inputs cannot carry; "
                "convert it to numbers or strings first"
            )
        names.append(name)
        dtypes.append(dtype)
        feed[name] = values.reshape(-1, 1)
    layout = InputLayout("columns", names, dtypes, list(frame.columns), list(frame.dtypes))
    return layout, feed


def _wants_columns(estimator: Any, frame: Any) -> bool:
    """One input per column when columns are selected by name or are not all numbers."""
    pd = require("pandas", "sklearn")
    first = estimator
    while hasattr(first, "steps") and first.steps:
        first = first.steps[0][1]
    if type(first).__name__ == "ColumnTransformer":
        return True
    return not all(pd.api.types.is_numeric_dtype(t) for t in frame.dtypes)


def _n_features(estimator: Any) -> int | None:
    n = getattr(estimator, "n_features_in_", None)
    return int(n) if isinstance(n, int | np.integer) else None


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
    n = _n_features(estimator)
    got = sum(v.shape[1] for v in feed.values())
    if n is not None and got != n:
        raise InputError(
            f"the sample has {got} column(s) but the model was fitted on {n} feature(s); pass a "
            f"sample with {n} columns"
        )


# --- conversion --------------------------------------------------------------------------------


def _walk(obj: Any, seen: set[int] | None = None, depth: int = 0) -> Iterator[Any]:
    """Every estimator reachable from ``obj``: pipeline steps, fitted sub-estimators, ..."""
    seen = set() if seen is None else seen
    if depth > 12 or id(obj) in seen or isinstance(obj, type):
        return
    if isinstance(obj, list | tuple):
        for item in obj:
            yield from _walk(item, seen, depth + 1)
    elif isinstance(obj, dict):
        for item in obj.values():
            yield from _walk(item, seen, depth + 1)
    elif hasattr(obj, "get_params") and hasattr(obj, "fit"):
        seen.add(id(obj))
        yield obj
        for value in getattr(obj, "__dict__", {}).values():
            yield from _walk(value, seen, depth + 1)


def _is_classifier(estimator: Any) -> bool:
    sklearn_base = require("sklearn.base", "sklearn")
    try:
        return bool(sklearn_base.is_classifier(estimator))
    except Exception:  # third-party estimators with broken tags
        return getattr(estimator, "_estimator_type", None) == "classifier"


def _no_zipmap_options(estimator: Any) -> dict[int, dict[str, Any]]:
    """``{"zipmap": False}`` for every classifier whose skl2onnx converter takes that option."""
    from skl2onnx._supported_operators import get_model_alias
    from skl2onnx.common._registration import get_converter

    options: dict[int, dict[str, Any]] = {}
    for est in _walk(estimator):
        if type(est).__name__ == "Pipeline" or not _is_classifier(est):
            continue
        try:
            allowed = get_converter(get_model_alias(type(est))).get_allowed_options()
        except Exception:  # not convertible: skl2onnx will say so with a better message
            continue
        if allowed and "zipmap" in allowed:
            options[id(est)] = {"zipmap": False}
    return options


def _prepare_trees(estimator: Any) -> Any:
    """Register xgboost/lightgbm converters when the estimator holds such models.

    onnxmltools reads XGBoost split features as ``f<index>``; a booster fitted on a DataFrame
    names them after its columns, so the conversion works on a copy with the names dropped.
    """
    found = [est for est in _walk(estimator) if _top_module(est) in TREE_MODULES]
    if not found:
        return estimator
    from modelport.convert.trees import register_skl2onnx_converters

    register_skl2onnx_converters({_top_module(est) for est in found})
    named = [
        est
        for est in found
        if _top_module(est) == "xgboost" and est.get_booster().feature_names is not None
    ]
    if not named:
        return estimator
    estimator = copy.deepcopy(estimator)
    for est in _walk(estimator):
        if _top_module(est) == "xgboost":
            est.get_booster().feature_names = None
    return estimator


def _skl2onnx(estimator: Any, layout: InputLayout, feed: Feed, opset: int) -> onnx.ModelProto:
    skl2onnx = require("skl2onnx", "sklearn")
    types = require("skl2onnx.common.data_types", "sklearn")
    tensor_types = {
        "float32": types.FloatTensorType,
        "float64": types.DoubleTensorType,
        "int64": types.Int64TensorType,
        "str": types.StringTensorType,
    }
    initial_types = [
        (name, tensor_types[dtype]([None, feed[name].shape[1]]))
        for name, dtype in zip(layout.names, layout.onnx_dtypes, strict=True)
    ]
    estimator = _prepare_trees(estimator)
    try:
        return skl2onnx.convert_sklearn(  # type: ignore[no-any-return]
            estimator,
            initial_types=initial_types,
            options=_no_zipmap_options(estimator) or None,
            target_opset={"": opset, "ai.onnx.ml": ML_OPSET},
        )
    except Exception as exc:  # skl2onnx raises RuntimeError, NameError, TypeError, ...
        hint = (
            "; float64 is not supported here: convert without keep_float64"
            if "float64" in layout.onnx_dtypes
            else ""
        )
        raise ConversionError(
            f"skl2onnx cannot convert {type(estimator).__name__}: {one_line(exc)}{hint}"
        ) from exc


# --- outputs -----------------------------------------------------------------------------------


def _roles(estimator: Any, proto: onnx.ModelProto) -> list[str]:
    """What each ONNX output holds: label, probabilities, scores or output (else its name)."""
    outputs = [o.name for o in proto.graph.output]
    if _is_classifier(estimator) and len(outputs) == 2:
        return ["label", "probabilities" if hasattr(estimator, "predict_proba") else "scores"]
    if len(outputs) == 1 and (hasattr(estimator, "predict") or hasattr(estimator, "transform")):
        return ["output"]
    # Clusterers, outlier detectors, ...: outputs keep skl2onnx's names and are not compared.
    return [f"other:{name}" for name in outputs]


def _expected_roles(estimator: Any) -> list[str]:
    if _is_classifier(estimator):
        return ["label", "probabilities" if hasattr(estimator, "predict_proba") else "scores"]
    return ["output"]


def _output_names(
    roles: Sequence[str], current: Sequence[str], wanted: Sequence[str] | None
) -> list[str]:
    names = [
        cur if role.startswith("other:") else role for role, cur in zip(roles, current, strict=True)
    ]
    if wanted:
        if len(wanted) != len(names):
            raise InputError(
                f"{len(wanted)} output name(s) given but the model has {len(names)} output(s) "
                f"{names}"
            )
        names = list(wanted)
    return names


def _task(estimator: Any, roles: Sequence[str]) -> str | None:
    if "label" in roles:
        return "classifier"
    sklearn_base = require("sklearn.base", "sklearn")
    return "regressor" if sklearn_base.is_regressor(estimator) else None


def _predictors(estimator: Any) -> dict[str, Callable[[Any], np.ndarray]]:
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
    sklearn_base = require("sklearn.base", "sklearn")
    regressor = bool(sklearn_base.is_regressor(estimator))
    return not regressor and hasattr(estimator, "transform")


class RoleRunner:
    """Runs the original model on an ONNX feed and names its results like the ONNX outputs.

    ``roles`` maps what an output holds (label, probabilities, scores, output) to its ONNX name;
    ``predictors`` computes each role from what the original takes. Results get the ONNX shapes:
    labels ``[batch]``, scores and probabilities ``[batch, classes]``, outputs ``[batch, k]``.
    ``widths`` (ONNX output name -> last dimension, when known) settles binary scores: a 1-D
    decision function matches a one-column output; skl2onnx's two-column binary scores follow
    no single sign convention across estimators, so those are left uncompared.
    """

    def __init__(
        self,
        layout: InputLayout,
        roles: Mapping[str, str],
        predictors: Mapping[str, Callable[[Any], np.ndarray]],
        widths: Mapping[str, int | None] | None = None,
    ) -> None:
        self.layout = layout
        self.roles = dict(roles)
        self.predictors = dict(predictors)
        self.widths = dict(widths or {})

    def __call__(self, feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        x = self.layout.to_native(feed)
        rows = len(x)
        result: dict[str, np.ndarray] = {}
        for role, name in self.roles.items():
            if role not in self.predictors:
                continue
            value = np.asarray(self.predictors[role](x))
            if role in ("label", "other:label"):
                value = value.reshape(-1)
                value = value.astype(object) if value.dtype.kind in "USO" else value
            elif role == "scores" and value.ndim == 1 and self.widths.get(name, 1) != 1:
                continue
            else:
                value = value.reshape(rows, -1)
            result[name] = value
        return result


def output_widths(signature: Signature) -> dict[str, int | None]:
    """The last dimension of every 2-D output, for :class:`RoleRunner`."""
    return {
        spec.name: spec.shape[-1] if isinstance(spec.shape[-1], int) else None
        for spec in signature.outputs
        if len(spec.shape) == 2
    }


def _versions(estimator: Any) -> dict[str, Any]:
    packages = ["scikit-learn", "skl2onnx"]
    trees = sorted({_top_module(e) for e in _walk(estimator)} & set(TREE_MODULES))
    packages += [*trees, "onnxmltools"] if trees else []
    return {"exporter": "skl2onnx"} | package_versions(packages)


def package_versions(packages: Iterable[str]) -> dict[str, str]:
    """Installed versions of the packages that made a model (for ``result.source``)."""
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for package in packages:
        with contextlib.suppress(PackageNotFoundError):
            found[package] = version(package)
    return found


def _rename_inputs(
    proto: onnx.ModelProto, layout: InputLayout, feed: Feed, names: Sequence[str]
) -> InputLayout:
    if len(names) != len(layout.names):
        raise InputError(
            f"{len(names)} input name(s) given but the model has {len(layout.names)} input(s) "
            f"{layout.names}"
        )
    for old, new in zip(layout.names, names, strict=True):
        rename_value(proto.graph, old, new)
    layout.names = list(names)
    return layout


# --- graph helpers shared with trees.py ----------------------------------------------------------


def one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return (text[:300] + "...") if len(text) > 300 else (text or type(exc).__name__)


def non_tensor_outputs(proto: onnx.ModelProto) -> list[str]:
    """Outputs that are not plain tensors (ZipMap's sequences of maps, ...): not servable."""
    return [o.name for o in proto.graph.output if o.type.WhichOneof("value") != "tensor_type"]


def _all_names(graph: onnx.GraphProto) -> set[str]:
    names = {n for node in graph.node for n in (*node.input, *node.output)}
    names.update(v.name for v in (*graph.input, *graph.output, *graph.value_info))
    names.update(i.name for i in graph.initializer)
    return names


def rename_value(graph: onnx.GraphProto, old: str, new: str) -> None:
    """Rename a value everywhere in the graph; a different value already named ``new`` moves."""
    if old == new:
        return
    names = _all_names(graph)
    if new in names:
        spare = new
        while spare in names:
            spare += "_"
        rename_value(graph, new, spare)
    for node in graph.node:
        for field in (node.input, node.output):
            for i, name in enumerate(field):
                if name == old:
                    field[i] = new
    for value in (*graph.input, *graph.output, *graph.value_info, *graph.initializer):
        if value.name == old:
            value.name = new


def strip_zipmap(proto: onnx.ModelProto) -> list[str]:
    """Replace ZipMap outputs (a sequence of {class: probability}) by their probability tensor.

    ZipMap only repackages the ``[batch, classes]`` float tensor it consumes, so the tensor is
    exposed under the output's name instead. Returns the outputs replaced.
    """
    graph = proto.graph
    producers = {out: node for node in graph.node for out in node.output}
    replaced = []
    for position, output in enumerate(list(graph.output)):
        if output.type.WhichOneof("value") == "tensor_type":
            continue
        node = producers.get(output.name)
        if node is None or node.op_type != "ZipMap":
            continue
        labels = [a for a in node.attribute if a.name.startswith("classlabels")]
        classes = len(labels[0].ints or labels[0].strings) if labels else None
        source = node.input[0]
        graph.node.remove(node)
        graph.output.remove(graph.output[position])
        rename_value(graph, source, output.name)
        graph.output.insert(
            position,
            onnx.helper.make_tensor_value_info(
                output.name, onnx.TensorProto.FLOAT, ["batch", classes]
            ),
        )
        replaced.append(output.name)
    return replaced


def _set_batch_axis(value: onnx.ValueInfoProto, rank: int | None = None) -> None:
    tensor = value.type.tensor_type
    if rank is not None and len(tensor.shape.dim) != rank:
        del tensor.shape.dim[:]
        for _ in range(rank):
            tensor.shape.dim.add()
    if tensor.shape.dim:
        dim = tensor.shape.dim[0]
        dim.ClearField("dim_value")
        dim.dim_param = "batch"


def finish_graph(
    proto: onnx.ModelProto, rename: Mapping[str, str], feed: Feed | None = None
) -> onnx.ModelProto:
    """Make a converted tree or sklearn model servable and honestly described.

    ZipMap outputs become tensors, outputs get their final names, every input and output gets a
    symbolic ``batch`` first axis (one row in, one row out for all these models), and declared
    output shapes are corrected from a run on the sample where the exporter got them wrong
    (LightGBM declares its label ``[1]``, CatBoost its regression output ``[N]`` for ``[N, 1]``).
    """
    _dedupe_opsets(proto)
    strip_zipmap(proto)
    bad = non_tensor_outputs(proto)
    if bad:
        raise ConversionError(
            f"the converted model has non-tensor output(s) {bad} that cannot be served; "
            "this model type is not supported yet"
        )
    for old, new in rename.items():
        rename_value(proto.graph, old, new)
    for value in proto.graph.input:
        if value.name not in {i.name for i in proto.graph.initializer}:
            _set_batch_axis(value)
    actual = _run_once(proto, feed) if feed else {}
    for value in proto.graph.output:
        shape = actual.get(value.name)
        dims = value.type.tensor_type.shape.dim
        if shape is not None and (
            len(dims) != len(shape)
            or any(
                d.HasField("dim_value") and d.dim_value != s
                for d, s in zip(dims[1:], shape[1:], strict=False)
            )
        ):
            _set_batch_axis(value, len(shape))
            for dim, size in zip(value.type.tensor_type.shape.dim[1:], shape[1:], strict=True):
                dim.dim_value = size
        else:
            _set_batch_axis(value)
    return proto


def _run_once(proto: onnx.ModelProto, feed: Feed) -> dict[str, tuple[int, ...]]:
    """Output shapes on the sample; empty when ONNX Runtime cannot run it (verify reports why)."""
    shapes, _ = run_on_sample(proto, feed)
    return shapes


def run_on_sample(
    proto: onnx.ModelProto, feed: Feed
) -> tuple[dict[str, tuple[int, ...]], str | None]:
    """Run the model once on CPU: its output shapes, or the first line of why it cannot run."""
    import onnxruntime as ort

    try:
        opts = ort.SessionOptions()
        opts.log_severity_level = 3  # the wrong declared shapes being fixed here warn otherwise
        session = ort.InferenceSession(
            proto.SerializeToString(), opts, providers=["CPUExecutionProvider"]
        )
        names = [o.name for o in session.get_outputs()]
        values = session.run(names, dict(feed))
    except Exception as exc:  # ORT raises its own unexported exception types
        return {}, one_line(exc).rsplit(" : ", 1)[-1]
    return {name: tuple(np.shape(v)) for name, v in zip(names, values, strict=True)}, None


def _dedupe_opsets(proto: onnx.ModelProto) -> None:
    """skl2onnx can import a domain twice; keep one entry per domain, at its highest version."""
    versions: dict[str, int] = {}
    for entry in proto.opset_import:
        versions[entry.domain] = max(versions.get(entry.domain, 0), entry.version)
    if len(versions) != len(proto.opset_import):
        del proto.opset_import[:]
        for domain, opset_version in versions.items():
            proto.opset_import.append(onnx.helper.make_opsetid(domain, opset_version))
