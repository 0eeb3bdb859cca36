"""The label as the class index the graph computed (formats.onnx.label_index), alone and as
the Spark job runs it. Labels are asserted against model.onnx as saved (ONNX Runtime's own
label output) and its probabilities bit for bit."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

import formats
from formats.errors import VerificationFailedError
from formats.onnx.label_index import LABEL_INDEX, label_as_index
from jobs.scoring.model import LoadedModel, load_model
from jobs.scoring.settings import load_settings
from jobs.scoring.transform import ScoreMetrics, score
from tests.conftest import FEATURES, penguins

CLASSES = ["Adelie", "Chinstrap", "Gentoo"]


def _run(data: bytes, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(None, feed), strict=True))


@pytest.fixture(scope="module")
def matmul_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The default random forest pipeline with its trees as matrix products, whose graph ends
    in the label lookup (formats.onnx.trees_matmul)."""
    import palmerpenguins

    from jobs.export import default_pipeline

    data = palmerpenguins.load_penguins()
    fitted = default_pipeline("rf").fit(data[FEATURES], data["species"])
    path = tmp_path_factory.mktemp("bundles") / "matmul"
    formats.save(fitted, path, sample=data[FEATURES], formats=["pickle", "onnx"], onnx_trees="matmul")
    return path


def test_the_index_names_the_label_model_onnx_returns(matmul_bundle: Path) -> None:
    original = (matmul_bundle / "model.onnx").read_bytes()
    rewritten = label_as_index(onnx.load_from_string(original), CLASSES)
    assert rewritten is not None
    assert [o.name for o in rewritten.graph.output] == [LABEL_INDEX, "probabilities"]
    kinds = {o.name: o.type.tensor_type.elem_type for o in rewritten.graph.output}
    assert kinds[LABEL_INDEX] == TensorProto.INT64  # no string made per row
    assert not any(n.output[0] == "label" for n in rewritten.graph.node)
    onnx.checker.check_model(rewritten)

    scorer: Any = formats.load(matmul_bundle, "onnx")
    x = penguins(3000, seed=11)[FEATURES]
    feed = scorer.feed({c: x[c].to_numpy() for c in FEATURES})
    want = _run(original, feed)
    got = _run(rewritten.SerializeToString(), feed)
    np.testing.assert_array_equal(got["probabilities"], want["probabilities"])
    labels = np.asarray(CLASSES, dtype=object)[got[LABEL_INDEX]]
    assert (labels == want["label"]).all()
    assert len(set(labels)) == 3  # every class is looked up somewhere in the sample


def _lookup(
    table: np.ndarray | list[str],
    *,
    argmax_of: str = "probabilities",
    last: int = 0,
    axis: int = 1,
    index_out: bool = False,
) -> onnx.ModelProto:
    """probabilities -> ArgMax -> Gather(table) -> label, as trees_matmul writes it."""
    if isinstance(table, list):
        const = helper.make_tensor("table", TensorProto.STRING, [len(table)], table)
    else:
        const = onnx.numpy_helper.from_array(np.asarray(table), "table")
    nodes = [
        helper.make_node("Identity", ["x"], ["probabilities"]),
        helper.make_node("Identity", ["x"], ["other"]),
        helper.make_node(
            "ArgMax", [argmax_of], ["best"], axis=axis, keepdims=0, select_last_index=last
        ),
        helper.make_node("Gather", ["table", "best"], ["label"], axis=0),
    ]
    label_type = TensorProto.STRING if isinstance(table, list) else TensorProto.INT64
    outputs = [
        helper.make_tensor_value_info("label", label_type, ["N"]),
        helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["N", 3]),
    ]
    if index_out:
        outputs.append(helper.make_tensor_value_info("best", TensorProto.INT64, ["N"]))
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3])],
        outputs, [const],
    )  # fmt: skip
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


def test_int_classes_and_the_table_read_as_the_label_is() -> None:
    x = np.array([[0.1, 0.7, 0.2], [0.5, 0.5, 0.0], [0.0, 0.1, 0.9]], np.float32)
    model = _lookup(np.array([3, 5, 9], np.int64))
    rewritten = label_as_index(model, [3, 5, 9])
    assert rewritten is not None
    got = _run(rewritten.SerializeToString(), {"x": x})
    want = _run(model.SerializeToString(), {"x": x})
    assert list(np.array([3, 5, 9])[got[LABEL_INDEX]]) == list(want["label"]) == [5, 3, 9]
    assert label_as_index(model, ["3", "5", "9"]) is None  # the label would be read as str


@pytest.mark.parametrize(
    ("model", "classes"),
    [
        (_lookup(["B", "A", "C"]), ["A", "B", "C"]),  # the table is not the classes, in order
        (_lookup(["A", "B"]), ["A", "B", "C"]),
        (_lookup(["A", "B", "C"], last=1), ["A", "B", "C"]),  # ties: the last index
        (_lookup(["A", "B", "C"], argmax_of="other"), ["A", "B", "C"]),  # not the probabilities
        (_lookup(["A", "B", "C"], axis=0), ["A", "B", "C"]),
        (_lookup(["A", "B", "C"], index_out=True), ["A", "B", "C"]),  # the index is used too
    ],
)
def test_a_label_that_is_not_that_lookup_is_left_as_it_is(
    model: onnx.ModelProto, classes: list[str]
) -> None:
    assert label_as_index(model, classes) is None


def test_a_linear_classifiers_label_is_left_as_it_is(tmp_path: Path) -> None:
    """LogisticRegression's label comes out of ai.onnx.ml's LinearClassifier, not a lookup."""
    import palmerpenguins

    from jobs.export import default_pipeline

    data = palmerpenguins.load_penguins()
    fitted = default_pipeline("logreg").fit(data[FEATURES], data["species"])
    bundle = formats.save(fitted, tmp_path / "lr", sample=data[FEATURES], formats=["onnx"])
    model = load_model(bundle.location)
    assert model.strings_model is model.onnx


@pytest.mark.parametrize("codes", ["true", "false"])
def test_the_job_labels_as_model_onnx(
    spark: Any, matmul_bundle: Path, penguins_parquet: Path, codes: str
) -> None:
    """Both models the job broadcasts (with category codes and without) return the index, and
    the job's labels, made with an Arrow take in the worker, are model.onnx's own."""
    model = load_model(matmul_bundle)
    broadcast = model.string_codes.model if codes == "true" else model.strings_model  # type: ignore[union-attr]
    assert LABEL_INDEX in [o.name for o in onnx.load_from_string(broadcast).graph.output]
    df = spark.read.parquet(str(penguins_parquet))
    metrics = ScoreMetrics()
    settings = load_settings(None, [f"execution.string_codes={codes}"])
    got = score(df, model, settings, metrics).toPandas().set_index("row_id").sort_index()
    assert metrics.result()["rows_scored"] == 6000
    rows = df.toPandas().set_index("row_id").sort_index()
    want = formats.load(matmul_bundle, "onnx").predict(rows[FEATURES])  # model.onnx as saved
    assert (got["label"].to_numpy() == want["label"].to_numpy()).all()
    for cls in CLASSES:
        np.testing.assert_array_equal(got[f"proba_{cls}"], want[f"proba_{cls}"])


def test_the_parity_gate_checks_the_label_index(
    spark: Any, matmul_bundle: Path, penguins_parquet: Path
) -> None:
    """A label index that names the wrong class (an ArgMin in place of the ArgMax) stops the
    job before it scores, when it feeds strings as when it feeds codes."""
    from jobs.scoring.gate import parity_gate

    model = load_model(matmul_bundle)
    wrong = onnx.load_from_string(model.strings_model)
    for node in wrong.graph.node:
        if LABEL_INDEX in node.output:
            node.op_type = "ArgMin"
    tampered = LoadedModel(model.bundle, model.spec, model.onnx)
    tampered.__dict__["strings_model"] = wrong.SerializeToString()
    df = spark.read.parquet(str(penguins_parquet))
    settings = load_settings(None, ["execution.string_codes=false"])
    with pytest.raises(VerificationFailedError, match="with its label as a class index: label"):
        parity_gate(df, tampered, settings)
    assert parity_gate(df, model, settings)
