"""XGBoost, LightGBM and CatBoost -> ONNX, with plain tensor outputs only.

XGBoost and LightGBM (their scikit-learn classes and native boosters) go through onnxmltools
with ZipMap disabled; CatBoost exports itself (``save_model(format="onnx")``) and always wraps
class probabilities in a ZipMap, which :func:`~modelport.convert.sklearn.strip_zipmap` replaces
by the probability tensor. Every model takes one float32 input ``[batch, n_features]`` (tree
ensembles in ONNX compute in float32, as XGBoost itself does); classifiers output ``label`` and
``probabilities``, regressors ``output``.

Model files: XGBoost ``.ubj`` and ``.json`` (a JSON file is recognised by its ``"learner"`` key;
otherwise name ``--framework xgboost``), LightGBM text models (``.txt`` starting with ``tree``),
CatBoost ``.cbm``.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable, Iterable
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
from modelport.convert.sklearn import (
    InputLayout,
    RoleRunner,
    finish_graph,
    layout_from_sample,
    one_line,
    package_versions,
    rename_value,
)
from modelport.errors import ConversionError, InputError, ModelLoadError
from modelport.signature import Signature

__all__ = [
    "CatBoostConverter",
    "LightGBMConverter",
    "ONNXMLTOOLS_MAX_OPSET",
    "XGBoostConverter",
    "register_skl2onnx_converters",
]

ONNXMLTOOLS_MAX_OPSET = 15  # onnxmltools refuses higher targets for these converters
# Probabilities of float32 tree sums: a few ulps of the summed leaf values.
TOLERANCE = Tolerance(atol=1e-4, rtol=1e-3)
Predictors = dict[str, Callable[[Any], np.ndarray]]


class _TreeConverter(Converter):
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
            _check_count("input", options.input_names, layout.names)
            rename_value(proto.graph, layout.names[0], options.input_names[0])
            feed = {options.input_names[0]: feed[layout.names[0]]}
            layout.names = [options.input_names[0]]
        current = [o.name for o in proto.graph.output]
        roles = ["label", self.score_role(obj)] if len(current) == 2 else ["output"]
        names = list(options.output_names) if options.output_names else roles
        _check_count("output", names, current)
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
        _check_count("output", names, roles)
        return RoleRunner(layout, dict(zip(roles, names, strict=True)), self.predictors(obj)), feed

    def _layout(
        self, obj: Any, options: ConvertOptions, names: list[str] | None
    ) -> tuple[InputLayout, Feed, list[str]]:
        self.check(obj)
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


def _check_count(what: str, given: list[str], current: list[str]) -> None:
    if len(given) != len(current):
        raise InputError(
            f"{len(given)} {what} name(s) given but the model has {len(current)} {what}(s)"
        )


def _onnxmltools_opset(options: ConvertOptions, name: str) -> tuple[int, list[str]]:
    if options.opset is None or options.opset <= ONNXMLTOOLS_MAX_OPSET:
        return options.opset or ONNXMLTOOLS_MAX_OPSET, []
    # The tree operators are the same in every later opset, so nothing is lost.
    return ONNXMLTOOLS_MAX_OPSET, [
        f"onnxmltools converts {name} models up to opset {ONNXMLTOOLS_MAX_OPSET}; "
        f"used {ONNXMLTOOLS_MAX_OPSET} instead of {options.opset}"
    ]


def _float_input(width: int) -> Any:
    # onnxmltools checks for its own FloatTensorType class, not skl2onnx's.
    types = require("onnxmltools.convert.common.data_types", "xgboost")
    return types.FloatTensorType([None, width])


def _binary_or_multi(probabilities: np.ndarray) -> np.ndarray:
    p = np.asarray(probabilities, dtype=np.float64)
    return np.stack([1.0 - p, p], axis=1) if p.ndim == 1 else p


def _classifier_predictors(probabilities: Callable[[Any], np.ndarray]) -> Predictors:
    """Boosters return probabilities only; ONNX labels are the index of the largest one."""
    return {
        "probabilities": lambda x: _binary_or_multi(probabilities(x)),
        "label": lambda x: np.argmax(_binary_or_multi(probabilities(x)), axis=1).astype(np.int64),
    }


# --- XGBoost -----------------------------------------------------------------------------------


@register
class XGBoostConverter(_TreeConverter):
    name = "xgboost"
    extra = "xgboost"
    module_prefixes = ("xgboost",)
    suffixes = (".ubj",)
    packages = ("xgboost", "onnxmltools")

    def handles_path(self, path: Path) -> bool:
        if path.suffix.lower() == ".json":
            return _starts_with(path, b'{"learner"')
        return super().handles_path(path)

    def load(self, path: Path) -> Any:
        xgboost = require("xgboost", self.extra)
        booster = xgboost.Booster()
        try:
            booster.load_model(str(path))
        except xgboost.core.XGBoostError as exc:
            raise ModelLoadError(
                f"xgboost cannot load {str(path)!r}: {one_line(exc)}; save models with "
                "Booster.save_model('model.ubj' or 'model.json')"
            ) from exc
        return booster

    def _booster(self, obj: Any) -> Any:
        return obj.get_booster() if hasattr(obj, "get_booster") else obj

    def check(self, obj: Any) -> None:
        xgboost = require("xgboost", self.extra)
        if not isinstance(obj, xgboost.Booster | xgboost.XGBModel):
            raise ConversionError(f"expected an XGBoost model, got {type(obj).__qualname__}")
        if isinstance(obj, xgboost.XGBModel):
            try:
                obj.get_booster()
            except xgboost.core.XGBoostError as exc:
                raise ConversionError(
                    f"{type(obj).__name__} is not fitted; call fit() before converting"
                ) from exc

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
        opset, notes = _onnxmltools_opset(options, self.name)
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
                initial_types=[("input", _float_input(self.n_features(obj) or 0))],
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
            return {
                "label": lambda x: np.asarray(obj.predict(x)),
                "probabilities": lambda x: np.asarray(obj.predict_proba(x)),
                "scores": lambda x: np.asarray(obj.predict(x, output_margin=True)),
                "output": lambda x: np.asarray(obj.predict(x)),
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
            return _classifier_predictors(predict)
        return {"output": predict}


def _starts_with(path: Path, prefix: bytes) -> bool:
    try:
        with open(path, "rb") as fh:
            head = fh.read(256).lstrip()
    except OSError:
        return False
    return head.replace(b" ", b"").startswith(prefix)


# --- LightGBM ----------------------------------------------------------------------------------


@register
class LightGBMConverter(_TreeConverter):
    name = "lightgbm"
    extra = "lightgbm"
    module_prefixes = ("lightgbm",)
    packages = ("lightgbm", "onnxmltools")

    def handles_path(self, path: Path) -> bool:
        # LightGBM's text format begins with the line "tree".
        return path.suffix.lower() == ".txt" and _starts_with(path, b"tree\n")

    def load(self, path: Path) -> Any:
        lightgbm = require("lightgbm", self.extra)
        try:
            return lightgbm.Booster(model_file=str(path))
        except lightgbm.basic.LightGBMError as exc:
            raise ModelLoadError(
                f"lightgbm cannot load {str(path)!r}: {one_line(exc)}; save models with "
                "Booster.save_model('model.txt')"
            ) from exc

    def check(self, obj: Any) -> None:
        lightgbm = require("lightgbm", self.extra)
        if isinstance(obj, lightgbm.LGBMModel):
            if not getattr(obj, "fitted_", False) and getattr(obj, "_Booster", None) is None:
                raise ConversionError(
                    f"{type(obj).__name__} is not fitted; call fit() before converting"
                )
        elif not isinstance(obj, lightgbm.Booster):
            raise ConversionError(f"expected a LightGBM model, got {type(obj).__qualname__}")

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
        opset, notes = _onnxmltools_opset(options, self.name)
        try:
            proto = onnxmltools.convert_lightgbm(
                obj,
                initial_types=[("input", _float_input(self.n_features(obj) or 0))],
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
            return {
                "label": lambda x: np.asarray(obj.predict(x)),
                "probabilities": lambda x: np.asarray(obj.predict_proba(x)),
                "output": lambda x: np.asarray(obj.predict(x)),
            }
        booster = obj
        if self.is_classifier(booster):
            return _classifier_predictors(lambda x: np.asarray(booster.predict(x)))
        return {"output": lambda x: np.asarray(booster.predict(x))}


# --- CatBoost ----------------------------------------------------------------------------------

_CATBOOST_CLASSIFIER_LOSSES = ("Logloss", "CrossEntropy", "MultiClass", "MultiClassOneVsAll")


@register
class CatBoostConverter(_TreeConverter):
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
            raise ModelLoadError(
                f"catboost cannot load {str(path)!r}: {one_line(exc)}; save models with "
                "model.save_model('model.cbm')"
            ) from exc

    def check(self, obj: Any) -> None:
        catboost = require("catboost", self.extra)
        if not isinstance(obj, catboost.CatBoost):
            raise ConversionError(f"expected a CatBoost model, got {type(obj).__qualname__}")
        if not obj.is_fitted():
            raise ConversionError(
                f"{type(obj).__name__} is not fitted; call fit() before converting"
            )

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
            return {
                "label": lambda x: np.asarray(obj.predict(x)),
                "probabilities": lambda x: np.asarray(obj.predict_proba(x)),
                "output": lambda x: np.asarray(obj.predict(x)),
            }
        return {  # a plain CatBoost object, as loaded from a .cbm file
            "label": lambda x: np.asarray(obj.predict(x, prediction_type="Class")),
            "probabilities": lambda x: np.asarray(obj.predict(x, prediction_type="Probability")),
            "output": lambda x: np.asarray(obj.predict(x)),
        }


# --- skl2onnx registration ---------------------------------------------------------------------

_REGISTERED: set[str] = set()


def register_skl2onnx_converters(modules: Iterable[str]) -> None:
    """Teach skl2onnx the XGBoost/LightGBM estimators, so that they convert inside a Pipeline.

    This is skl2onnx's documented pattern: onnxmltools' converters registered for the classes
    with ``update_registered_converter``. Done once per library, on first need.
    """
    skl2onnx = require("skl2onnx", "sklearn")
    shapes = require("skl2onnx.common.shape_calculator", "sklearn")
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
