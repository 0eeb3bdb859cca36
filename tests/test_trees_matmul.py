"""Tree ensembles as matrix products (formats.onnx.trees_matmul): the same model, or no rewrite.

Parity is asserted against scikit-learn's own predictions on held-out rows, and against ONNX
Runtime's tree kernels (an independent implementation) where scikit-learn compares in float64:
on rows placed exactly on the float32 thresholds and on NaN.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pandas as pd
import pytest
from onnx import helper
from skl2onnx import to_onnx
from sklearn.datasets import load_diabetes, load_iris, load_wine
from sklearn.ensemble import (
    ExtraTreesClassifier,
    GradientBoostingClassifier,
    GradientBoostingRegressor,
    RandomForestClassifier,
    RandomForestRegressor,
)
from sklearn.tree import DecisionTreeRegressor

from formats.bundle import Bundle
from formats.onnx.trees_matmul import MAX_MEAN_SPLITS, plan, rewrite
from formats.save import save

OPSET = {"": 17, "ai.onnx.ml": 3}


def _run(model: onnx.ModelProto, x: np.ndarray) -> list[np.ndarray]:
    s = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return list(s.run(None, {s.get_inputs()[0].name: x}))


def _ops(model: onnx.ModelProto) -> set[str]:
    return {n.op_type for n in model.graph.node}


def _convert(est: Any, x: np.ndarray) -> onnx.ModelProto:
    opts = {"zipmap": False} if hasattr(est, "predict_proba") else None
    return to_onnx(est, x[:5], options=opts, target_opset=OPSET)


def _on_thresholds(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    """Rows of ``x`` with one feature set exactly to a split's float32 threshold each."""
    node = next(n for n in model.graph.node if n.op_type.startswith("TreeEnsemble"))
    att = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    rows = []
    for i, (f, v, m) in enumerate(
        zip(att["nodes_featureids"], att["nodes_values"], att["nodes_modes"], strict=True)
    ):
        if m != b"LEAF":
            row = x[i % len(x)].copy()
            row[f] = v
            rows.append(row)
    return np.array(rows, np.float32)


@pytest.mark.parametrize(
    "make, load",
    [
        (lambda: RandomForestClassifier(30, max_depth=4, random_state=0), load_iris),
        (lambda: ExtraTreesClassifier(20, max_leaf_nodes=12, random_state=0), load_wine),
        (lambda: RandomForestRegressor(20, max_leaf_nodes=10, random_state=0), load_diabetes),
        (lambda: GradientBoostingRegressor(n_estimators=30, max_depth=3), load_diabetes),
    ],
    ids=["rf-iris", "extratrees-wine", "rf-regressor", "gbm-regressor"],
)
def test_the_matmul_form_scores_like_scikit_learn(make: Any, load: Any) -> None:
    x, y = load(return_X_y=True)
    x = x.astype(np.float32)
    train, held = slice(0, None, 2), slice(1, None, 2)
    est = make().fit(x[train], y[train])
    model = _convert(est, x)
    out, done = rewrite(model, "matmul")
    assert done and not _ops(out) & {"TreeEnsembleClassifier", "TreeEnsembleRegressor"}
    assert all(o.domain != "ai.onnx.ml" for o in out.opset_import)  # core ops only
    got = _run(out, x[held])
    if hasattr(est, "predict_proba"):
        assert (got[0] == est.predict(x[held])).all()
        np.testing.assert_allclose(got[1], est.predict_proba(x[held]), atol=1e-6)
    else:
        np.testing.assert_allclose(got[0].ravel(), est.predict(x[held]), rtol=1e-5, atol=1e-4)


def test_ties_and_nan_go_the_way_onnx_runtimes_tree_kernel_sends_them() -> None:
    x, y = load_iris(return_X_y=True)
    x = x.astype(np.float32)
    model = _convert(RandomForestClassifier(25, max_depth=5, random_state=1).fit(x, y), x)
    edge = _on_thresholds(model, x)
    edge = np.concatenate([edge, np.where(np.eye(4, dtype=bool)[[0, 1, 2, 3] * 3], np.nan, x[:12])])
    edge = edge.astype(np.float32)
    want, got = _run(model, edge), _run(rewrite(model, "matmul")[0], edge)
    assert (got[0] == want[0]).all()
    np.testing.assert_allclose(got[1], want[1], atol=1e-6)


def test_strict_less_than_splits_keep_their_meaning() -> None:
    """skl2onnx writes BRANCH_LEQ; XGBoost-style BRANCH_LT splits flip their ties."""
    x, y = load_diabetes(return_X_y=True)
    x = x.astype(np.float32)
    model = _convert(RandomForestRegressor(10, max_leaf_nodes=8, random_state=0).fit(x, y), x)
    node = next(n for n in model.graph.node if n.op_type == "TreeEnsembleRegressor")
    modes = next(a for a in node.attribute if a.name == "nodes_modes")
    modes.strings[:] = [b"BRANCH_LT" if m == b"BRANCH_LEQ" else m for m in modes.strings]
    edge = _on_thresholds(model, x)
    want, got = _run(model, edge)[0], _run(rewrite(model, "matmul")[0], edge)[0]
    np.testing.assert_allclose(got, want, rtol=1e-6)
    leq = _run(rewrite(_convert(RandomForestRegressor(10, max_leaf_nodes=8, random_state=0)
                                .fit(x, y), x), "matmul")[0], edge)[0]  # fmt: skip
    assert not np.allclose(leq, got)  # the ties did go the other way


def test_a_tree_that_is_one_leaf_adds_its_value() -> None:
    x = np.arange(20, dtype=np.float32).reshape(10, 2)
    model = _convert(DecisionTreeRegressor().fit(x, np.full(10, 3.5)), x)
    out, done = rewrite(model, "matmul")
    assert done
    np.testing.assert_array_equal(_run(out, x)[0].ravel(), np.full(10, 3.5, np.float32))


def test_what_cannot_be_rewritten_is_left_alone_with_a_reason() -> None:
    x, y = load_iris(return_X_y=True)
    gbm = _convert(GradientBoostingClassifier(n_estimators=5).fit(x, y), x.astype(np.float32))
    (p,) = plan(gbm)
    assert "post_transform" in p.reason
    assert rewrite(gbm, "matmul") == (gbm, [])
    wide = to_onnx(
        RandomForestClassifier(5, random_state=0).fit(x, y), x[:5],
        options={"zipmap": False}, target_opset=OPSET,
    )  # fmt: skip  # a float64 input: the double ensemble
    assert "float32" in plan(wide)[0].reason
    with pytest.raises(ValueError, match="unknown tree form"):
        rewrite(gbm, "gemm")


def test_auto_rewrites_small_trees_only() -> None:
    x, y = load_wine(return_X_y=True)
    x = x.astype(np.float32)
    small = _convert(RandomForestClassifier(10, max_leaf_nodes=8, random_state=0).fit(x, y), x)
    big = _convert(RandomForestClassifier(10, random_state=0).fit(np.tile(x, (20, 1)) +
                   np.random.default_rng(0).normal(0, 5, (len(x) * 20, x.shape[1])).astype(
                   np.float32), np.tile(y, 20)), x)  # fmt: skip
    assert plan(small)[0].mean_splits <= MAX_MEAN_SPLITS < plan(big)[0].mean_splits
    assert rewrite(small, "auto")[1] and not rewrite(big, "auto")[1]
    assert rewrite(big, "matmul")[1] and not rewrite(small, "ensemble")[1]


def test_a_saved_forest_bundle_records_its_tree_form(tmp_path: Path) -> None:
    from jobs.export import split, train

    fitted, sample = train("rf")
    held = split()[1]  # the penguins the forest was not fitted on
    auto = save(fitted, tmp_path / "auto", sample=sample, formats=["onnx", "pickle"])
    kept = save(fitted, tmp_path / "ens", sample=sample, formats=["onnx"], onnx_trees="ensemble")
    trees = auto.manifest.formats["onnx"].details["trees"]
    assert trees["form"] == "matmul" and trees["rewritten"] == trees["trees"] == 50
    assert kept.manifest.formats["onnx"].details["trees"]["form"] == "ensemble"
    assert "TreeEnsembleClassifier" in _ops(onnx.load_from_string(kept.read("model.onnx")))
    assert "TreeEnsembleClassifier" not in _ops(onnx.load_from_string(auto.read("model.onnx")))
    import formats

    report = formats.parity(Bundle.open(auto.location), held, formats=["onnx"])
    assert report.passed, report  # against the pickle
    frame = formats.load(auto.location, "onnx").predict(held)
    want = fitted.predict_proba(held.replace({None: np.nan}))
    got = frame[[c for c in frame.columns if c.startswith("proba_")]].to_numpy()
    np.testing.assert_allclose(got, want, atol=1e-6)
    assert isinstance(frame, pd.DataFrame)


def test_attributes_that_are_not_binary_trees_are_left_to_onnx_runtime() -> None:
    x, y = load_iris(return_X_y=True)
    x = x.astype(np.float32)
    model = _convert(RandomForestClassifier(3, max_depth=3, random_state=0).fit(x, y), x)
    node = next(n for n in model.graph.node if n.op_type == "TreeEnsembleClassifier")
    att = {a.name: a for a in node.attribute}
    # tree 0's root sends both branches to one child: that child is reached twice
    root = next(i for i, (t, n) in enumerate(zip(att["nodes_treeids"].ints,
                att["nodes_nodeids"].ints, strict=True)) if t == 0 and n == 0)  # fmt: skip
    att["nodes_falsenodeids"].ints[root] = att["nodes_truenodeids"].ints[root]
    assert rewrite(model, "matmul") == (model, [])
    att["nodes_falsenodeids"].ints[root] = 0  # and back to the root: a cycle
    assert rewrite(model, "matmul") == (model, [])
