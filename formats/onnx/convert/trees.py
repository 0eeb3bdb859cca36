"""XGBoost, LightGBM and CatBoost -> ONNX, with plain tensor outputs only.

XGBoost and LightGBM (their scikit-learn classes and native boosters) go through onnxmltools
with ZipMap disabled; CatBoost exports itself (``save_model(format="onnx")``) and always wraps
class probabilities in a ZipMap, which :func:`~formats.onnx.convert._graph.strip_zipmap` replaces
by the probability tensor. Every model takes one float32 input ``[batch, n_features]`` (tree
ensembles in ONNX compute in float32, as XGBoost itself does); classifiers output ``label`` and
``probabilities``, regressors ``output``. The flow they share is ``_boosting.TreeConverter``.

Model files: XGBoost ``.ubj`` and ``.json`` (a JSON file is recognised by its ``"learner"`` key;
otherwise name ``--framework xgboost``), LightGBM text models (``.txt`` starting with ``tree``),
CatBoost ``.cbm``.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from formats._lazy import require
from formats._text import one_line
from formats.errors import ConversionError, ModelLoadError
from formats.onnx.convert._boosting import (
    ONNXMLTOOLS_MAX_OPSET,
    TreeConverter,
    classifier_predictors,
    float_input,
    load_error,
    onnxmltools_opset,
    sklearn_api_predictors,
    starts_with,
)
from formats.onnx.convert._skl2onnx import register_skl2onnx_converters
from formats.onnx.convert._tabular import InputLayout, Predictors, not_fitted
from formats.onnx.convert.base import ConvertOptions, Feed
from formats.onnx.convert.registry import register

__all__ = [
    "CatBoostConverter",
    "LightGBMConverter",
    "ONNXMLTOOLS_MAX_OPSET",
    "XGBoostConverter",
    "register_skl2onnx_converters",
]


def _wrong_type(framework: str, obj: Any) -> ConversionError:
    return ConversionError(f"expected a {framework} model, got {type(obj).__qualname__}")


# --- XGBoost -----------------------------------------------------------------------------------


@register
class XGBoostConverter(TreeConverter):
    name = "xgboost"
    extra = "xgboost"
    module_prefixes = ("xgboost",)
    suffixes = (".ubj",)
    packages = ("xgboost", "onnxmltools")

    def handles_path(self, path: Path) -> bool:
        if path.suffix.lower() == ".json":
            return starts_with(path, b'{"learner"')
        return super().handles_path(path)

    def load(self, path: Path) -> Any:
        xgboost = require("xgboost", self.extra)
        booster = xgboost.Booster()
        try:
            booster.load_model(str(path))
        # A binary file that is not UBJSON fails to decode as the JSON format.
        except (xgboost.core.XGBoostError, UnicodeDecodeError) as exc:
            save = "Booster.save_model('model.ubj' or 'model.json')"
            raise load_error("xgboost", path, exc, save) from exc
        return booster

    def _booster(self, obj: Any) -> Any:
        return obj.get_booster() if hasattr(obj, "get_booster") else obj

    def check(self, obj: Any) -> None:
        xgboost = require("xgboost", self.extra)
        if not isinstance(obj, xgboost.Booster | xgboost.XGBModel):
            raise _wrong_type("XGBoost", obj)
        if isinstance(obj, xgboost.XGBModel):
            try:
                obj.get_booster()
            except xgboost.core.XGBoostError as exc:
                raise not_fitted(obj) from exc

    def n_features(self, obj: Any) -> int | None:
        return int(self._booster(obj).num_features())

    def _objective(self, obj: Any) -> str:
        config = json.loads(self._booster(obj).save_config())
        return str(config["learner"]["objective"]["name"])

    def is_classifier(self, obj: Any) -> bool:
        xgboost = require("xgboost", self.extra)
        if isinstance(obj, xgboost.XGBModel):
            return isinstance(obj, xgboost.XGBClassifier)
        return self._objective(obj).startswith(("binary:", "multi:"))

    def export(
        self, obj: Any, layout: InputLayout, feed: Feed, options: ConvertOptions
    ) -> tuple[onnx.ModelProto, str, list[str]]:
        onnxmltools = require("onnxmltools", self.extra)
        require("xgboost", self.extra)
        opset, notes = onnxmltools_opset(options, self.name)
        target = obj
        if self._booster(obj).feature_names is not None:
            # onnxmltools reads split features as "f<index>"; a model fitted on a DataFrame names
            # them after its columns, so a copy without the names is converted.
            target = self._booster(obj).copy()
            target.feature_names = None
            target.feature_types = None
        try:
            proto = onnxmltools.convert_xgboost(
                target,
                initial_types=[("input", float_input(self.n_features(obj) or 0))],
                target_opset=opset,
            )
        except Exception as exc:  # onnxmltools raises RuntimeError, ValueError, KeyError, ...
            raise ConversionError(
                f"onnxmltools cannot convert this XGBoost model: {one_line(exc)}"
            ) from exc
        return proto, "input", notes

    def score_role(self, obj: Any) -> str:
        # multi:softmax predicts class ids; onnxmltools exports its margins, not probabilities.
        return "scores" if self._objective(obj) == "multi:softmax" else "probabilities"

    def predictors(self, obj: Any) -> Predictors:
        xgboost = require("xgboost", self.extra)
        if isinstance(obj, xgboost.XGBModel):
            return sklearn_api_predictors(obj) | {
                "scores": lambda x: np.asarray(obj.predict(x, output_margin=True)),
            }
        booster = obj

        def predict(x: Any, margin: bool = False) -> np.ndarray:
            data = np.asarray(x, dtype=np.float32)
            matrix = xgboost.DMatrix(data, feature_names=booster.feature_names)
            return np.asarray(booster.predict(matrix, output_margin=margin))

        objective = self._objective(booster)
        if objective == "multi:softmax":
            return {
                "label": lambda x: predict(x).astype(np.int64),
                "scores": lambda x: predict(x, margin=True),
            }
        if objective.startswith(("binary:", "multi:")):
            return classifier_predictors(predict)
        return {"output": predict}


# --- LightGBM ----------------------------------------------------------------------------------


@register
class LightGBMConverter(TreeConverter):
    name = "lightgbm"
    extra = "lightgbm"
    module_prefixes = ("lightgbm",)
    packages = ("lightgbm", "onnxmltools")

    def handles_path(self, path: Path) -> bool:
        # LightGBM's text format begins with the line "tree".
        return path.suffix.lower() == ".txt" and starts_with(path, b"tree\n")

    def load(self, path: Path) -> Any:
        lightgbm = require("lightgbm", self.extra)
        if not path.is_file() or not starts_with(path, b"tree"):
            # LightGBM's C++ side prints its own "[Fatal]" line for these: refuse them first.
            raise ModelLoadError(
                f"{str(path)!r} is not a LightGBM text model (it does not start with 'tree'); "
                "save models with Booster.save_model('model.txt')"
            )
        try:
            return lightgbm.Booster(model_file=str(path))
        except lightgbm.basic.LightGBMError as exc:
            raise load_error("lightgbm", path, exc, "Booster.save_model('model.txt')") from exc

    def check(self, obj: Any) -> None:
        lightgbm = require("lightgbm", self.extra)
        if isinstance(obj, lightgbm.LGBMModel):
            if not getattr(obj, "fitted_", False) and getattr(obj, "_Booster", None) is None:
                raise not_fitted(obj)
        elif not isinstance(obj, lightgbm.Booster):
            raise _wrong_type("LightGBM", obj)

    def _booster(self, obj: Any) -> Any:
        return obj.booster_ if hasattr(obj, "booster_") else obj

    def n_features(self, obj: Any) -> int | None:
        return int(self._booster(obj).num_feature())

    def is_classifier(self, obj: Any) -> bool:
        lightgbm = require("lightgbm", self.extra)
        if isinstance(obj, lightgbm.LGBMModel):
            return isinstance(obj, lightgbm.LGBMClassifier)
        objective = str(obj.dump_model(num_iteration=1)["objective"])
        return objective.startswith(("binary", "multiclass"))

    def export(
        self, obj: Any, layout: InputLayout, feed: Feed, options: ConvertOptions
    ) -> tuple[onnx.ModelProto, str, list[str]]:
        onnxmltools = require("onnxmltools", self.extra)
        opset, notes = onnxmltools_opset(options, self.name)
        try:
            proto = onnxmltools.convert_lightgbm(
                obj,
                initial_types=[("input", float_input(self.n_features(obj) or 0))],
                target_opset=opset,
                zipmap=False,  # label and probability tensors instead of a sequence of maps
            )
        except Exception as exc:  # onnxmltools raises RuntimeError, NotImplementedError, ...
            raise ConversionError(
                f"onnxmltools cannot convert this LightGBM model: {one_line(exc)}"
            ) from exc
        return proto, "input", notes

    def predictors(self, obj: Any) -> Predictors:
        lightgbm = require("lightgbm", self.extra)
        if isinstance(obj, lightgbm.LGBMModel):
            return sklearn_api_predictors(obj)
        booster = obj
        if self.is_classifier(booster):
            return classifier_predictors(lambda x: np.asarray(booster.predict(x)))
        return {"output": lambda x: np.asarray(booster.predict(x))}


# --- CatBoost ----------------------------------------------------------------------------------

_CATBOOST_CLASSIFIER_LOSSES = ("Logloss", "CrossEntropy", "MultiClass", "MultiClassOneVsAll")


@register
class CatBoostConverter(TreeConverter):
    name = "catboost"
    extra = "catboost"
    module_prefixes = ("catboost",)
    suffixes = (".cbm",)
    packages = ("catboost",)
    exporter = "catboost"

    def load(self, path: Path) -> Any:
        catboost = require("catboost", self.extra)
        try:
            return catboost.CatBoost().load_model(str(path))
        except catboost.CatBoostError as exc:
            raise load_error("catboost", path, exc, "model.save_model('model.cbm')") from exc

    def check(self, obj: Any) -> None:
        catboost = require("catboost", self.extra)
        if not isinstance(obj, catboost.CatBoost):
            raise _wrong_type("CatBoost", obj)
        if not obj.is_fitted():
            raise not_fitted(obj)

    def n_features(self, obj: Any) -> int | None:
        names = getattr(obj, "feature_names_", None)
        return len(names) if names is not None else None

    def is_classifier(self, obj: Any) -> bool:
        catboost = require("catboost", self.extra)
        if isinstance(obj, catboost.CatBoostClassifier):
            return True
        if isinstance(obj, catboost.CatBoostRegressor):
            return False
        loss = str(obj.get_all_params().get("loss_function", ""))
        return loss.split(":")[0] in _CATBOOST_CLASSIFIER_LOSSES

    def export(
        self, obj: Any, layout: InputLayout, feed: Feed, options: ConvertOptions
    ) -> tuple[onnx.ModelProto, str, list[str]]:
        catboost = require("catboost", self.extra)
        notes = []
        if options.opset is not None:
            notes.append("catboost's own exporter picks the opset: the requested opset is ignored")
        with tempfile.TemporaryDirectory(prefix="modelport-catboost-") as tmp:
            path = Path(tmp) / "model.onnx"
            try:
                obj.save_model(str(path), format="onnx")
            except catboost.CatBoostError as exc:
                raise ConversionError(
                    f"catboost cannot export this model to ONNX: {one_line(exc)} (its exporter "
                    "supports numeric features only)"
                ) from exc
            proto = onnx.load(str(path))
        return proto, proto.graph.input[0].name, notes

    def predictors(self, obj: Any) -> Predictors:
        catboost = require("catboost", self.extra)
        if isinstance(obj, catboost.CatBoostClassifier | catboost.CatBoostRegressor):
            return sklearn_api_predictors(obj)
        return {  # a plain CatBoost object, as loaded from a .cbm file
            "label": lambda x: np.asarray(obj.predict(x, prediction_type="Class")),
            "probabilities": lambda x: np.asarray(obj.predict(x, prediction_type="Probability")),
            "output": lambda x: np.asarray(obj.predict(x)),
        }
