"""Optimize and quantize behind the accuracy gate: real ONNX Runtime, real repository on disk.

Two models: an MLP classifier trained with scikit-learn on the digits data set (weights copied
into an ONNX graph with a ``label`` output) and a small CNN over 1x8x8 images with fixed random
weights. Timings run with a tiny budget: the tests check the bookkeeping, not the speed.
"""

from __future__ import annotations

import json
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import TensorProto, helper, numpy_helper

from modelport.cli import cli
from modelport.errors import InputError, NotFoundError, UsageError, VerificationFailedError
from modelport.optimize import Candidate, OptimizationReport, optimize
from modelport.optimize.data import generate_around, load_feed, to_feed
from modelport.optimize.gate import compare, predictions
from modelport.optimize.graph import optimize_graph
from modelport.optimize.quantize import preprocess
from modelport.optimize.speed import batch_sizes, measure
from modelport.repository import Repository
from modelport.runtime import Session
from modelport.signature import Signature

FAST = 0.05  # seconds of timing per model: enough runs for a median, not for a benchmark


# -- models ----------------------------------------------------------------------------------


def _model(nodes: list, inputs: list, outputs: list, inits: list, name: str) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, name, inputs, outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


@pytest.fixture(scope="module")
def digits() -> dict[str, np.ndarray]:
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    x = (x / 16.0).astype(np.float32)
    return {"x_train": x[:1200], "y_train": y[:1200], "x_test": x[1200:], "y_test": y[1200:]}


@pytest.fixture(scope="module")
def mlp(digits: dict[str, np.ndarray]) -> onnx.ModelProto:
    """A trained digits classifier: probabilities [N, 10] and label [N] (int64)."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf = MLPClassifier((32,), max_iter=150, random_state=0)
        clf.fit(digits["x_train"], digits["y_train"])
    (w1, w2), (b1, b2) = clf.coefs_, clf.intercepts_
    inits = [
        numpy_helper.from_array(a.astype(np.float32), n)
        for a, n in [(w1, "w1"), (b1, "b1"), (w2, "w2"), (b2, "b2")]
    ]
    nodes = [
        helper.make_node("Gemm", ["X", "w1", "b1"], ["h"]),
        helper.make_node("Relu", ["h"], ["r"]),
        helper.make_node("Gemm", ["r", "w2", "b2"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1),
        helper.make_node("ArgMax", ["logits"], ["label"], axis=1, keepdims=0),
    ]
    return _model(
        nodes,
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, ["N", 64])],
        [
            helper.make_tensor_value_info("label", TensorProto.INT64, ["N"]),
            helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["N", 10]),
        ],
        inits,
        "mlp",
    )


def cnn(channels: int = 8) -> onnx.ModelProto:
    """conv -> relu -> conv -> relu -> maxpool -> gemm over [N, 1, 8, 8]; logits only."""
    rng = np.random.default_rng(0)
    arrays = {
        "w1": rng.normal(0, 0.3, (channels, 1, 3, 3)),
        "b1": rng.normal(0, 0.1, channels),
        "w2": rng.normal(0, 0.1, (channels * 2, channels, 3, 3)),
        "b2": rng.normal(0, 0.1, channels * 2),
        "wf": rng.normal(0, 0.1, (channels * 2 * 16, 10)),
        "bf": rng.normal(0, 0.1, 10),
    }
    inits = [numpy_helper.from_array(a.astype(np.float32), n) for n, a in arrays.items()]
    nodes = [
        helper.make_node("Conv", ["image", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("Conv", ["r1", "w2", "b2"], ["c2"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c2"], ["r2"]),
        helper.make_node("MaxPool", ["r2"], ["p"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Flatten", ["p"], ["f"]),
        helper.make_node("Gemm", ["f", "wf", "bf"], ["logits"]),
    ]
    return _model(
        nodes,
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 1, 8, 8])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 10])],
        inits,
        "cnn",
    )


@pytest.fixture
def repo(tmp_path: Path) -> Repository:
    with Repository(tmp_path / "repo") as repository:
        yield repository  # type: ignore[misc]


@pytest.fixture
def eval_file(tmp_path: Path, digits: dict[str, np.ndarray]) -> Path:
    path = tmp_path / "eval.npz"
    np.savez(path, X=digits["x_test"], y=digits["y_test"])
    return path


def _images(digits: dict[str, np.ndarray], part: str) -> np.ndarray:
    return digits[part].reshape(-1, 1, 8, 8)


def _outputs(path: Path, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return Session(path).run(feed)


# -- quantization through the repository -------------------------------------------------------


@pytest.mark.parametrize("mode", ["dynamic", "static"])
def test_mlp_quantized_passes_a_loose_gate_and_registers(
    repo: Repository, mlp: onnx.ModelProto, digits: dict, eval_file: Path, mode: str
) -> None:
    repo.register(mlp, "digits", sample={"X": digits["x_test"][:4]})
    report = optimize(
        repo,
        "digits",
        quantize=mode,
        eval_data=eval_file,
        labels="y",
        calibration=eval_file if mode == "static" else None,
        max_accuracy_drop=0.02,
        speed_budget_s=FAST,
    )

    assert report and report.registered == "digits:2"
    cand = report.candidate(mode)
    assert cand.gate is not None and cand.gate.criterion == "accuracy"
    assert cand.gate.metrics["accuracy_float"] > 0.85  # a trained model, so accuracy means it
    assert cand.gate.metrics["accuracy_drop"] <= 0.02
    assert cand.gate.prediction == "label"

    new = repo.load("digits:2")
    assert new.tags["optimized"] == f"level=none;quantize={mode};per_channel=false"
    assert new.tags["derived_from"] == "digits:1"
    assert float(new.tags["speedup_b1"]) > 0 and float(new.tags["speedup_b32"]) > 0
    assert new.manifest.source["derived_from"] == "digits:1"
    assert new.manifest.source["gate"]["passed"] is True
    assert set(new.manifest.source["speed"]["float"]["latency"]) == {"batch_1", "batch_32"}
    assert new.manifest.verification is not None and new.manifest.verification["passed"]
    assert new.input_example() is not None

    quantized = onnx.load(str(new.model_path))
    ops = {node.op_type for node in quantized.graph.node}
    assert ops & {"DynamicQuantizeLinear", "MatMulInteger", "QuantizeLinear"}, ops
    int8 = [t for t in quantized.graph.initializer if t.data_type == TensorProto.INT8]
    assert int8, "weights were not stored as int8"
    assert new.model_path.stat().st_size < repo.load("digits:1").model_path.stat().st_size

    feed = {"X": digits["x_test"]}
    before, after = _outputs(repo.load("digits:1").model_path, feed), _outputs(new.model_path, feed)
    assert np.mean(before["label"] == after["label"]) >= 0.97
    np.testing.assert_allclose(after["probabilities"], before["probabilities"], atol=0.1)


def test_cnn_auto_keeps_the_fastest_candidate_that_passes(repo: Repository, digits: dict) -> None:
    repo.register(cnn(), "cnn", sample={"image": _images(digits, "x_train")[:8]})
    # no level: quantize=auto; min_speedup=0 so that the choice, not this CPU's int8 speed, is
    # what is tested (the refusal of slower candidates has its own test below).
    report = optimize(repo, "cnn", rtol=0.1, speed_budget_s=FAST, min_speedup=0.0)

    names = [c.name for c in report.candidates]
    assert names == ["dynamic", "static", "static-per-channel"]
    passed = [c for c in report.candidates if c.passed]
    assert passed and all(c.speed is not None for c in passed)
    assert report.baseline is not None

    def mean_speedup(c: Candidate) -> float:
        b1, b32 = c.speedup(report.baseline, 1), c.speedup(report.baseline, 32)
        assert b1 is not None and b32 is not None
        return float(np.sqrt(b1 * b32))

    assert report.chosen == max(passed, key=mean_speedup).name
    chosen = report.candidate(report.chosen)
    assert chosen.gate is not None and chosen.gate.criterion == "error"  # not a classifier
    assert "generated" in report.eval_source  # no data given: generated around the example

    new = repo.load(report.registered)
    assert new.tags["optimized"] == chosen.description
    feed = {"image": _images(digits, "x_test")}
    before = _outputs(repo.load("cnn:1").model_path, feed)["logits"]
    after = _outputs(new.model_path, feed)["logits"]
    assert np.mean(np.abs(after - before)) / np.mean(np.abs(before)) < 0.1
    json.dumps(report.to_dict())  # the report is plain JSON


def test_auto_registers_nothing_that_is_not_faster(repo: Repository, digits: dict) -> None:
    repo.register(cnn(), "cnn", sample={"image": _images(digits, "x_train")[:8]})
    with pytest.raises(VerificationFailedError, match="faster than the float model") as info:
        optimize(repo, "cnn", rtol=0.1, speed_budget_s=FAST, min_speedup=1e9)
    report = info.value.report
    assert report.registered is None and report.chosen is None
    assert any(c.passed and c.speed is not None for c in report.candidates)
    assert [v.version for v in repo.list_versions("cnn")] == [1]


def test_static_per_channel_uses_the_calibration_file(
    repo: Repository, digits: dict, tmp_path: Path
) -> None:
    calibration = tmp_path / "calib.npy"
    np.save(calibration, _images(digits, "x_train")[:200])
    repo.register(cnn(), "cnn", sample={"image": _images(digits, "x_train")[:2]})
    report = optimize(
        repo,
        "cnn",
        quantize="static",
        per_channel=True,
        calibration=calibration,
        rtol=0.1,
        register=False,
        speed_budget_s=FAST,
    )
    assert report.chosen == "static-per-channel" and report.registered is None
    assert report.calibration_source == "file calib.npy (200 rows)"
    assert report.eval_source == "calibration file calib.npy" and report.eval_rows == 200
    assert [v.version for v in repo.list_versions("cnn")] == [1]  # dry run: nothing stored
    model = report.candidate("static-per-channel").model
    assert model is not None
    scales = [
        numpy_helper.to_array(t)
        for t in model.graph.initializer
        if t.name.endswith("_scale") and len(t.dims) == 1 and t.dims[0] > 1
    ]
    assert scales, "per-channel quantization stores one scale per output channel"


def test_a_strict_gate_refuses_and_leaves_the_repository_unchanged(
    repo: Repository, mlp: onnx.ModelProto, digits: dict, eval_file: Path
) -> None:
    repo.register(mlp, "digits", sample={"X": digits["x_test"][:4]})
    before = sorted(p.relative_to(repo.root) for p in repo.root.rglob("*") if "tmp" not in p.parts)

    with pytest.raises(VerificationFailedError) as info:
        optimize(
            repo,
            "digits",
            quantize="auto",
            eval_data=eval_file,
            max_accuracy_drop=0.0,
            atol=1e-9,
            speed_budget_s=FAST,
        )

    report = info.value.report
    assert isinstance(report, OptimizationReport) and not report
    assert report.registered is None and report.chosen is None
    assert all(not c.passed for c in report.candidates)
    failures = [f for c in report.candidates if c.gate is not None for f in c.gate.failures]
    assert any("atol" in f for f in failures)
    assert [v.version for v in repo.list_versions("digits")] == [1]
    after = sorted(p.relative_to(repo.root) for p in repo.root.rglob("*") if "tmp" not in p.parts)
    assert after == before


@pytest.mark.parametrize("level", ["basic", "extended", "all"])
def test_graph_optimization_levels_keep_parity(repo: Repository, digits: dict, level: str) -> None:
    repo.register(cnn(), "cnn", sample={"image": _images(digits, "x_train")[:8]})
    report = optimize(repo, "cnn", level=level, atol=1e-5, speed_budget_s=FAST)

    assert report.chosen == f"fp32-{level}" and report.registered == "cnn:2"
    new = repo.load("cnn:2")
    assert new.tags["optimized"] == f"level={level};quantize=none"
    domains = {node.domain for node in onnx.load(str(new.model_path)).graph.node}
    expected = {"basic": set(), "extended": {"com.microsoft"}, "all": {"com.microsoft.nchwc"}}
    assert expected[level] <= domains, domains
    if level == "all":
        assert any("this processor" in note for note in report.notes)
    feed = {"image": _images(digits, "x_test")}
    np.testing.assert_allclose(
        _outputs(new.model_path, feed)["logits"],
        _outputs(repo.load("cnn:1").model_path, feed)["logits"],
        atol=1e-5,
    )


def test_preprocessing_leaves_the_callers_model_alone() -> None:
    # Given a ModelProto, ONNX Runtime's pre-processing moves its weights to a made-up external
    # file in place; modelport hands it a file so the float model stays usable.
    model = cnn()
    before = model.SerializeToString()
    prepared = preprocess(model)
    assert model.SerializeToString() == before
    assert {n.op_type for n in prepared.graph.node} >= {"Conv", "Gemm"}
    assert len(prepared.graph.value_info) >= 5  # shapes inferred for the quantizer


def test_optimize_graph_works_on_a_bare_model() -> None:
    model = optimize_graph(cnn(), "extended")
    assert [n.op_type for n in model.graph.node].count("FusedConv") == 2
    # ONNX Runtime writes every domain it knows; only the used ones are kept
    assert {o.domain for o in model.opset_import} <= {"", "com.microsoft"}


# -- the gate ----------------------------------------------------------------------------------


def _signature(*outputs: tuple[str, str, tuple]) -> Signature:
    from modelport.signature import TensorSpec

    return Signature(
        (TensorSpec("x", "float32", ("N", 4)),),
        tuple(TensorSpec(n, d, s) for n, d, s in outputs),
    )


def test_gate_accuracy_with_labels_and_agreement_without() -> None:
    sig = _signature(("label", "int64", ("N",)), ("scores", "float32", ("N", 3)))
    predict = predictions(sig)
    assert predict is not None and predict.output == "label"
    ref = {"label": np.array([0, 1, 2, 1]), "scores": np.zeros((4, 3), np.float32)}
    got = {"label": np.array([0, 1, 2, 2]), "scores": np.full((4, 3), 0.01, np.float32)}
    truth = np.array([0, 1, 2, 2])  # the candidate fixes a mistake: accuracy goes up

    gate = compare(ref, got, sig, predict=predict, labels=truth, max_accuracy_drop=0.0)
    assert gate.passed and gate.criterion == "accuracy"
    assert gate.metrics["accuracy_drop"] == pytest.approx(-0.25)

    gate = compare(ref, got, sig, predict=predict, max_accuracy_drop=0.2)
    assert not gate.passed and gate.criterion == "agreement"
    assert gate.metrics["agreement"] == 0.75 and "25.00% of predicted classes" in gate.failures[0]

    gate = compare(ref, got, sig, predict=predict, labels=truth, atol=0.001)
    assert not gate.passed and "scores" in gate.failures[0]


def test_gate_relative_error_for_regressors_and_argmax_for_logits() -> None:
    sig = _signature(("y", "float32", ("N", 3)))
    assert predictions(sig) is None
    assert predictions(sig, task="classifier") == predictions(sig, labels_given=True)
    ref = {"y": np.array([[1.0, 2.0, 3.0], [3.0, 2.0, 1.0]], np.float32)}
    got = {"y": ref["y"] * 1.02}
    assert compare(ref, got, sig, rtol=0.05).passed
    gate = compare(ref, got, sig)  # default relative budget: 1%
    assert not gate.passed and gate.outputs[0].rel_err == pytest.approx(0.02, rel=1e-3)

    predict = predictions(sig, labels_given=True)
    assert predict is not None and predict.how == "argmax"
    gate = compare(ref, got, sig, predict=predict, labels=np.array([2, 0]))
    assert gate.passed and gate.metrics["accuracy_float"] == 1.0

    bad = {"y": np.zeros((2, 2), np.float32)}
    assert "float32[2, 2]" in compare(ref, bad, sig).failures[0]


# -- data --------------------------------------------------------------------------------------


def test_feeds_are_cast_and_reshaped_and_labels_come_from_a_column(tmp_path: Path) -> None:
    import pandas as pd

    sig = Signature.from_onnx(cnn())
    feed = to_feed(np.arange(128, dtype=np.float64).reshape(2, 64), sig)
    assert feed["image"].shape == (2, 1, 8, 8) and feed["image"].dtype == np.float32

    table = pd.DataFrame(np.ones((3, 64)), columns=[f"p{i}" for i in range(64)])
    table["digit"] = [1, 2, 3]
    table.to_csv(tmp_path / "eval.csv", index=False)
    feed, labels = load_feed(tmp_path / "eval.csv", sig, label_key="digit")
    assert feed["image"].shape == (3, 1, 8, 8)
    assert labels is not None and list(labels) == [1, 2, 3]

    with pytest.raises(InputError, match="expects"):
        to_feed(np.ones((2, 5), np.float32), sig)

    generated = generate_around({"image": feed["image"]}, rows=10)
    assert generated["image"].shape == (10, 1, 8, 8)
    np.testing.assert_array_equal(generated["image"][:3], feed["image"])


def test_bad_requests_are_one_line_user_errors(
    repo: Repository, mlp: onnx.ModelProto, tmp_path: Path, eval_file: Path
) -> None:
    repo.register(mlp, "digits")  # no input example
    with pytest.raises(UsageError, match="no input example"):
        optimize(repo, "digits")
    with pytest.raises(NotFoundError, match="does not exist"):
        optimize(repo, "digits", quantize="static", calibration=tmp_path / "missing.npy")
    with pytest.raises(UsageError, match="neither a file nor a column"):
        optimize(repo, "digits", eval_data=eval_file, labels="target")
    with pytest.raises(UsageError, match="level"):
        optimize(repo, "digits", level="max")
    with pytest.raises(UsageError, match="fraction"):
        optimize(repo, "digits", max_accuracy_drop=5)
    with pytest.raises(NotFoundError):
        optimize(repo, "nothing-here")


# -- timing ------------------------------------------------------------------------------------


def test_measure_times_every_model_at_each_batch_size() -> None:
    model = cnn()
    rows = {"image": np.zeros((3, 1, 8, 8), np.float32)}
    results = measure({"a": model, "b": model.SerializeToString()}, rows, (1, 32), budget_s=FAST)
    for result in results.values():
        assert set(result.latency) == {1, 32} and result.threads == 1
        assert all(lat.runs >= 5 and lat.median_ms > 0 for lat in result.latency.values())
        # 32 rows cost more than 1 (even on a noisy machine, by a wide margin)
        assert result.median_ms(32) > result.median_ms(1)  # type: ignore[operator]
    fixed = Signature.from_onnx(cnn())
    assert batch_sizes(fixed) == (1, 32)


# -- command line ------------------------------------------------------------------------------


def test_cli_exit_codes(
    repo: Repository, mlp: onnx.ModelProto, digits: dict, eval_file: Path, tmp_path: Path
) -> None:
    repo.register(mlp, "digits", sample={"X": digits["x_test"][:4]})
    runner = CliRunner()
    base = ["optimize", "digits", "--repo", str(repo.root)]

    refused = runner.invoke(
        cli,
        [
            *base,
            "--quantize",
            "static",
            "--max-accuracy-drop",
            "0",
            "--atol",
            "1e-9",
            "--eval",
            str(eval_file),
        ],
    )
    assert refused.exit_code == 1, refused.output
    assert "static" in refused.output and "nothing was registered" in refused.output
    assert [v.version for v in repo.list_versions("digits")] == [1]

    missing = runner.invoke(cli, [*base, "--quantize", "--calibration", str(tmp_path / "no.npy")])
    assert missing.exit_code == 2 and "does not exist" in missing.output
    assert runner.invoke(cli, [*base, "--level", "max"]).exit_code == 2

    done = runner.invoke(
        cli,
        [
            *base,
            "--quantize",
            "dynamic",
            "--eval",
            str(eval_file),
            "--labels",
            "y",
            "--max-accuracy-drop",
            "0.02",
            "--json",
        ],
    )
    assert done.exit_code == 0, done.output
    data = json.loads(done.output)
    assert data["registered"] == "digits:2" and data["chosen"] == "dynamic"
    assert data["candidates"][0]["gate"]["criterion"] == "accuracy"


def test_importing_optimize_pulls_in_no_framework() -> None:
    code = (
        "import sys, modelport.optimize, modelport.cli.optimize; "
        "print(sorted(m for m in ('torch', 'tensorflow', 'sklearn') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
