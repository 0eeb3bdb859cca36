"""String inputs as int32 codes (formats.onnx.string_codes), alone and inside the Spark job.

Scores are asserted against the fitted scikit-learn pipeline (its own predict_proba), on rows
that hold every kind of category a job meets: seen, unseen, null, empty, another column's
category, and categories with a quote or a backslash (they cross as SQL text to the JVM).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pandas as pd
import pytest
from onnx import TensorProto, helper

import formats
from formats.onnx.string_codes import StringCodes, encode
from jobs.scoring.model import LoadedModel, load_model
from jobs.scoring.settings import load_settings
from jobs.scoring.transform import ScoreMetrics, plan
from tests.conftest import FEATURES, penguins

ODD = "Dre'am \\ \"quoted\""  # a category that needs escaping in SQL


def _pipeline(model: str) -> Any:
    from jobs.export import default_pipeline

    data = penguins(400, seed=7)
    data["island"] = data["island"].replace({"Dream": ODD})
    y = np.where(data["bill_length_mm"].fillna(44) > 44, "long", "short")
    y = np.where(data["flipper_length_mm"].fillna(200) > 210, "wide", y)
    return default_pipeline(model).fit(data[FEATURES], y), data[FEATURES]


def _rows() -> pd.DataFrame:
    data = penguins(600, seed=8)
    data["island"] = data["island"].replace({"Dream": ODD})
    data.loc[0::7, "island"] = None
    data.loc[1::11, "island"] = "Atlantis"  # never seen
    data.loc[2::13, "island"] = ""
    data.loc[3::17, "sex"] = "Biscoe"  # the other column's category
    data.loc[4::19, "sex"] = "missing"  # the imputer's fill value, given as a value
    data.loc[5::23, "island"] = "Dream"  # the category the training data no longer had
    return data


def _ort(data: bytes, feed: dict[str, np.ndarray]) -> list[np.ndarray]:
    s = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    return [np.asarray(v) for v in s.run(None, feed)]


def _feeds(model: onnx.ModelProto, codes: StringCodes, x: pd.DataFrame) -> tuple[dict[str, Any], ...]:
    strings, coded = {}, {}
    for i in model.graph.input:
        col = x[i.name]
        if i.type.tensor_type.elem_type == TensorProto.STRING:
            values = [v if isinstance(v, str) else None for v in col]
            strings[i.name] = np.array([v or "" for v in values], dtype=object).reshape(-1, 1)
            coded[i.name] = codes.codes(i.name, values).reshape(-1, 1)
        else:
            dtype = {TensorProto.INT64: np.int64, TensorProto.DOUBLE: np.float64}.get(
                i.type.tensor_type.elem_type, np.float32)  # hgb's exact form takes doubles
            strings[i.name] = coded[i.name] = col.to_numpy(dtype=dtype).reshape(-1, 1)
    return strings, coded


@pytest.mark.parametrize("kind", ["rf", "logreg", "hgb"])
def test_the_coded_model_scores_as_the_pipeline(kind: str, tmp_path: Path) -> None:
    fitted, x_train = _pipeline(kind)
    bundle = formats.save(fitted, tmp_path / kind, sample=x_train, formats=["onnx"])
    original = onnx.load(str(Path(bundle.location) / "model.onnx"))
    codes = encode(original)
    assert isinstance(codes, StringCodes), codes
    rewritten = onnx.load_from_string(codes.model)
    types = {i.name: i.type.tensor_type.elem_type for i in rewritten.graph.input}
    assert types["island"] == types["sex"] == TensorProto.INT32
    # no string op is left: the graph takes and makes no string tensor at all
    assert not {"OneHotEncoder", "ArrayFeatureExtractor"} & {n.op_type for n in rewritten.graph.node}
    # each column's codes tell apart only what the model compares it with: its own categories,
    # the imputer's fill value, "" (a missing value); not the other column's, not the classes
    assert codes.vocabularies["island"] == ("", "Biscoe", ODD, "Torgersen", "missing")
    assert codes.vocabularies["sex"] == ("", "female", "male", "missing")

    x = _rows()
    strings, coded = _feeds(original, codes, x)
    labels, proba = _ort(codes.model, coded)
    want = fitted.predict_proba(x[FEATURES].fillna({"island": np.nan}))
    np.testing.assert_allclose(proba, want, atol=1e-5, rtol=0)
    assert (labels == fitted.classes_[want.argmax(axis=1)]).mean() > 0.99  # ties may differ
    # and the very same numbers as the original graph: its string part was tabulated by ORT
    for a, b in zip(_ort(original.SerializeToString(), strings), (labels, proba), strict=True):
        assert np.array_equal(a, b)


def _graph(nodes: list[Any], inputs: list[str], output: Any) -> onnx.ModelProto:
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info(n, TensorProto.STRING, [None, 1]) for n in inputs],
        [output],
    )
    opsets = [helper.make_opsetid("", 17), helper.make_opsetid("ai.onnx.ml", 2)]
    return helper.make_model(graph, opset_imports=opsets)


def _label(name: str, source: str, keys: list[str]) -> Any:
    return helper.make_node(
        "LabelEncoder", [source], [name], domain="ai.onnx.ml", keys_strings=keys,
        values_floats=[float(i) for i in range(len(keys))], default_float=-1.0,
    )  # fmt: skip


def _out(name: str, width: int = 1) -> Any:
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, [None, width])


def test_a_graph_that_reads_more_than_equality_keeps_its_strings() -> None:
    """A cast from string parses it: "1.0" and "1" are different strings and the same number."""
    parse = helper.make_node("Cast", ["s"], ["y"], to=TensorProto.FLOAT, name="parse")
    model = _graph([parse], ["s"], _out("y"))
    assert encode(model) == "Cast node 'parse' reads strings beyond comparing them"


def test_a_graph_that_mixes_rows_keeps_its_strings() -> None:
    """A reversal along the rows keeps the shape, so only the row-wise check sees it."""
    consts = [
        helper.make_tensor(n, TensorProto.INT64, [1], [v])
        for n, v in [("start", -1), ("end", -(2**62)), ("axes", 0), ("steps", -1)]
    ]
    flip = helper.make_node("Slice", ["s", "start", "end", "axes", "steps"], ["flipped"])
    model = _graph([flip, _label("y", "flipped", ["a", "b"])], ["s"], _out("y"))
    model.graph.initializer.extend(consts)
    assert encode(model) == "the string part is not row-wise"


def test_two_columns_read_together_are_tabulated_up_to_the_limit() -> None:
    both = helper.make_node("Concat", ["s", "t"], ["st"], axis=1)
    model = _graph([both, _label("y", "st", ["a", "b", "c"])], ["s", "t"], _out("y", 2))
    refused = encode(model, max_rows=20)
    assert refused == (
        "'y' depends on 2 string column(s) together: 25 combinations of codes, over 20"
    )
    codes = encode(model)
    assert isinstance(codes, StringCodes)
    s = np.array([["a"], ["zz"], [""], ["c"]], dtype=object)
    t = np.array([["b"], ["a"], ["c"], ["zz"]], dtype=object)
    feed = {"s": codes.codes("s", s.ravel()).reshape(-1, 1), "t": codes.codes("t", t.ravel()).reshape(-1, 1)}
    got = _ort(codes.model, feed)[0]
    np.testing.assert_array_equal(got, [[0, 1], [-1, 0], [-1, 2], [2, -1]])


@pytest.fixture(scope="module")
def odd_bundle(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, LoadedModel]:
    fitted, x_train = _pipeline("rf")
    path = tmp_path_factory.mktemp("codes") / "odd"
    formats.save(fitted, path, sample=x_train, formats=["pickle", "onnx"])
    return fitted, load_model(path)


@pytest.mark.parametrize("on_invalid", ["fail", "null"])
def test_the_job_sends_codes_and_scores_as_the_pipeline(
    spark: Any, odd_bundle: tuple[Any, LoadedModel], on_invalid: str
) -> None:
    """fail: no null island or measurement (training had none: such a row is invalid); null:
    they are invalid rows, with null scores, in both forms."""
    fitted, model = odd_bundle
    data = _rows()
    if on_invalid == "fail":
        data = data.dropna(subset=[c for c in FEATURES if c != "sex"])
    df = spark.createDataFrame(data)
    got = {}
    for codes in ("true", "false"):
        metrics = ScoreMetrics()
        conf = load_settings(
            None, [f"execution.string_codes={codes}", f"validation.on_invalid={on_invalid}"]
        )
        planned = plan(df, model, conf, metrics)
        got[codes] = planned.frame().toPandas().set_index("row_id").sort_index()
        assert metrics.result()["rows_in"] == len(data)
        assert planned.strings == (
            "int32 codes (island, sex)" if codes == "true"
            else "strings (execution.string_codes = false)"
        )  # fmt: skip
    valid = got["true"]["error"].isna().to_numpy() if on_invalid == "null" else np.ones(len(data), bool)
    assert 400 < valid.sum() <= len(data)
    want = fitted.predict_proba(data[FEATURES][valid])
    proba = got["true"][[f"proba_{c}" for c in fitted.classes_]].to_numpy()
    np.testing.assert_allclose(proba[valid], want, atol=1e-5, rtol=0)
    assert np.isnan(proba[~valid]).all()
    pd.testing.assert_frame_equal(got["true"], got["false"])


def test_a_collated_column_is_sent_as_strings(
    spark: Any, odd_bundle: tuple[Any, LoadedModel]
) -> None:
    """Spark would match 'biscoe' to 'Biscoe' under UTF8_LCASE; the model does not."""
    fitted, model = odd_bundle
    data = penguins(50, seed=9)
    data.loc[::3, "island"] = "biscoe"
    df = spark.createDataFrame(data).selectExpr(
        "*", "island COLLATE UTF8_LCASE AS island_lc"
    ).drop("island").withColumnRenamed("island_lc", "island")
    planned = plan(df, model, load_settings(None, []))
    scored = planned.frame().toPandas().sort_values("row_id")
    assert planned.strings == (
        "strings (column 'island' is string collate UTF8_LCASE, not a plain string)"
    )
    want = fitted.predict_proba(data[FEATURES])
    np.testing.assert_allclose(
        scored[[f"proba_{c}" for c in fitted.classes_]].to_numpy(), want, atol=1e-5, rtol=0
    )


def test_the_parity_gate_checks_the_coded_model(
    spark: Any, odd_bundle: tuple[Any, LoadedModel]
) -> None:
    """The gate compares the model the job broadcasts with model.onnx as saved: a wrong table
    (here: two categories' codes swapped) stops the job before it scores."""
    import dataclasses

    from formats.errors import VerificationFailedError
    from jobs.scoring.gate import parity_gate

    _, model = odd_bundle
    data = _rows().dropna(subset=[c for c in FEATURES if c != "sex"])
    codes = model.string_codes
    assert isinstance(codes, StringCodes)
    assert model.broadcast_disagrees(codes, data[FEATURES]) == ""
    vocab = list(codes.vocabularies["island"])
    a, b = vocab.index("Biscoe"), vocab.index("Torgersen")
    vocab[a], vocab[b] = vocab[b], vocab[a]
    wrong = dataclasses.replace(codes, vocabularies={**codes.vocabularies, "island": tuple(vocab)})
    assert " differs on " in model.broadcast_disagrees(wrong, data[FEATURES])
    tampered = LoadedModel(model.bundle, model.spec, model.onnx)
    tampered.__dict__["string_codes"] = wrong  # what the cached property would hold
    df = spark.createDataFrame(data)
    with pytest.raises(VerificationFailedError, match=r"as the job runs it \(with category codes: "):
        parity_gate(df, tampered, load_settings(None, []))
    assert parity_gate(df, tampered, load_settings(None, ["execution.string_codes=false"]))
