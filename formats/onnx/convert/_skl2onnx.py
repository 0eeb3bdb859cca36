"""The call into skl2onnx: ZipMap switched off where it can be, tree libraries taught to it.

skl2onnx converts a whole estimator tree (pipelines, column transformers, meta-estimators).
Classifiers are asked for plain probability tensors (``zipmap=False``) wherever their converter
takes that option; XGBoost and LightGBM estimators inside a pipeline convert through
onnxmltools' converters, registered with skl2onnx on first need.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Iterator
from typing import Any

import onnx

from formats._lazy import CORE, require
from formats._text import one_line
from formats.errors import ConversionError
from formats.onnx.convert._tabular import InputLayout
from formats.onnx.convert.base import Feed

__all__ = [
    "ML_OPSET",
    "TREE_MODULES",
    "is_classifier",
    "register_skl2onnx_converters",
    "skl2onnx_convert",
    "top_module",
    "walk",
]

ML_OPSET = 3  # ai.onnx.ml 3: the first with double-precision tree ensembles
# Their sklearn-API classes derive from sklearn's BaseEstimator, but their own converters
# (trees.py) take them; inside a Pipeline they go through skl2onnx with onnxmltools' converters.
TREE_MODULES = ("xgboost", "lightgbm", "catboost")


def top_module(obj: Any) -> str:
    return (type(obj).__module__ or "").split(".")[0]


def walk(obj: Any, seen: set[int] | None = None, depth: int = 0) -> Iterator[Any]:
    """Every estimator reachable from ``obj``: pipeline steps, fitted sub-estimators, ..."""
    seen = set() if seen is None else seen
    if depth > 12 or id(obj) in seen or isinstance(obj, type):
        return
    if isinstance(obj, list | tuple):
        for item in obj:
            yield from walk(item, seen, depth + 1)
    elif isinstance(obj, dict):
        for item in obj.values():
            yield from walk(item, seen, depth + 1)
    elif hasattr(obj, "get_params") and hasattr(obj, "fit"):
        seen.add(id(obj))
        yield obj
        for value in getattr(obj, "__dict__", {}).values():
            yield from walk(value, seen, depth + 1)


def is_classifier(estimator: Any) -> bool:
    sklearn_base = require("sklearn.base", CORE)
    try:
        return bool(sklearn_base.is_classifier(estimator))
    except Exception:  # third-party estimators with broken tags
        return getattr(estimator, "_estimator_type", None) == "classifier"


def skl2onnx_convert(
    estimator: Any, layout: InputLayout, feed: Feed, opset: int
) -> onnx.ModelProto:
    """The estimator as skl2onnx converts it, inputs typed by ``layout``, without ZipMaps."""
    skl2onnx = require("skl2onnx", CORE)
    types = require("skl2onnx.common.data_types", CORE)
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
    _int_missing_tracks()
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


def _int_missing_tracks() -> None:
    """skl2onnx 1.20's HistGradientBoosting converter passes ``False`` for a leaf's
    ``nodes_missing_value_tracks_true``, and onnx >= 1.23 refuses a boolean in an ints
    attribute ("Expected an int, got a boolean"). Give add_node an int; idempotent."""
    tree_ensemble = require("skl2onnx.common.tree_ensemble", CORE)
    add_node = getattr(tree_ensemble, "add_node")  # noqa: B009 - the module is untyped
    if getattr(add_node, "_modelport_int_tracks", False):
        return

    def patched(*args: Any, **kwargs: Any) -> Any:
        if "nodes_missing_value_tracks_true" in kwargs:
            kwargs["nodes_missing_value_tracks_true"] = int(
                kwargs["nodes_missing_value_tracks_true"]
            )
        return add_node(*args, **kwargs)

    patched._modelport_int_tracks = True  # type: ignore[attr-defined]
    setattr(tree_ensemble, "add_node", patched)  # noqa: B010


def _no_zipmap_options(estimator: Any) -> dict[int, dict[str, Any]]:
    """``{"zipmap": False}`` for every classifier whose skl2onnx converter takes that option."""
    from skl2onnx._supported_operators import get_model_alias
    from skl2onnx.common._registration import get_converter

    options: dict[int, dict[str, Any]] = {}
    for est in walk(estimator):
        if type(est).__name__ == "Pipeline" or not is_classifier(est):
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
    found = [est for est in walk(estimator) if top_module(est) in TREE_MODULES]
    if not found:
        return estimator
    register_skl2onnx_converters({top_module(est) for est in found})
    named = [
        est
        for est in found
        if top_module(est) == "xgboost" and est.get_booster().feature_names is not None
    ]
    if not named:
        return estimator
    estimator = copy.deepcopy(estimator)
    for est in walk(estimator):
        if top_module(est) == "xgboost":
            est.get_booster().feature_names = None
    return estimator


_REGISTERED: set[str] = set()


def register_skl2onnx_converters(modules: Iterable[str]) -> None:
    """Teach skl2onnx the XGBoost/LightGBM estimators, so that they convert inside a Pipeline.

    This is skl2onnx's documented pattern: onnxmltools' converters registered for the classes
    with ``update_registered_converter``. Done once per library, on first need.
    """
    skl2onnx = require("skl2onnx", CORE)
    shapes = require("skl2onnx.common.shape_calculator", CORE)
    classifier_options = {"nocl": [True, False], "zipmap": [True, False, "columns"]}
    for module in set(modules) - _REGISTERED:
        if module == "xgboost":
            xgboost = require("xgboost", "xgboost")
            ops = require("onnxmltools.convert.xgboost.operator_converters.XGBoost", "xgboost")
            pairs: list[tuple[Any, str, bool, Any]] = [
                (xgboost.XGBClassifier, "XGBoostXGBClassifier", True, ops.convert_xgboost),
                (xgboost.XGBRegressor, "XGBoostXGBRegressor", False, ops.convert_xgboost),
            ]
        elif module == "lightgbm":
            lightgbm = require("lightgbm", "lightgbm")
            ops = require("onnxmltools.convert.lightgbm.operator_converters.LightGbm", "lightgbm")
            pairs = [
                (lightgbm.LGBMClassifier, "LightGbmLGBMClassifier", True, ops.convert_lightgbm),
                (lightgbm.LGBMRegressor, "LightGbmLGBMRegressor", False, ops.convert_lightgbm),
            ]
        else:  # catboost has no skl2onnx converter: skl2onnx will name the class it cannot take
            continue
        for klass, alias, classifier, function in pairs:
            skl2onnx.update_registered_converter(
                klass,
                alias,
                shapes.calculate_linear_classifier_output_shapes
                if classifier
                else shapes.calculate_linear_regressor_output_shapes,
                function,
                options=classifier_options if classifier else None,
            )
        _REGISTERED.add(module)
