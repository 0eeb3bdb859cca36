"""Verification: parity against a native runner, structural checks, the report as data."""

from __future__ import annotations

import json
from collections.abc import Mapping

import numpy as np
import onnxruntime
import pytest

from formats.errors import InputError, UsageError
from formats.onnx.convert.base import ConversionResult, Tolerance
from formats.onnx.verify import (
    VerificationReport,
    compare,
    make_cases,
    run_checks,
    verify,
    verify_conversion,
)
from formats.signature import Signature
from tests import onnx_models


def _sample(rows: int = 4, seed: int = 1) -> dict[str, np.ndarray]:
    # Positive values: the trace-time branch of the "wrong" runner below is the x * 2 one.
    rng = np.random.default_rng(seed)
    return {"x": np.abs(rng.standard_normal((rows, 3))).astype(np.float32) + 0.1}


def _result(native, model=None, **kwargs) -> ConversionResult:
    model = model or onnx_models.doubler()
    return ConversionResult(
        model, Signature.from_onnx(model), "test", kwargs.pop("sample", _sample()), native, **kwargs
    )


def _branchy(feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    x = feed["x"]
    return {"y": x * 2 if x.sum() > 0 else x - 1}


def test_frozen_branch_is_caught_by_the_negated_case() -> None:
    report = verify_conversion(_result(_branchy))

    assert not report
    assert report.passed is False
    cases = {c.name: c for c in report.cases}
    assert cases["sample"].status == "passed"
    assert cases["negated"].status == "failed"
    by_case = {o.case: o for o in report.outputs if o.output == "y"}
    assert by_case["sample"].passed and by_case["sample"].max_abs_error == 0.0
    negated = by_case["negated"]
    assert not negated.passed
    assert negated.mismatch_fraction == 1.0
    # native: -x - 1, onnx: -2x; the difference is |1 - x| for every element
    x = _sample()["x"]
    assert negated.max_abs_error == pytest.approx(float(np.abs(1 - x).max()), rel=1e-6)
    assert negated.min_passing_atol > 0.0
    parity = next(c for c in report.checks if c.name == "parity")
    assert not parity.passed and "negated" in parity.detail
    assert any("negated" in line for line in report.failures)


def test_passing_conversion_reports_stats_for_every_case() -> None:
    def close(feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {"y": feed["x"].astype(np.float64) * 2 + 1e-6}

    report = verify_conversion(_result(close))

    assert report and report.passed and report.compared
    names = [c.name for c in report.cases]
    assert names == ["sample", "negated", "scaled", "shuffled", "batch=1", "batch=7"]
    assert {c.batch for c in report.cases} == {4, 1, 7}
    for comp in report.outputs:
        assert comp.passed and comp.shape_match and comp.dtype_match
        assert comp.mismatch_fraction == 0.0
        assert 0.0 < comp.max_abs_error < 1e-5  # the 1e-6 offset plus float32 rounding
    batch7 = next(o for o in report.outputs if o.case == "batch=7")
    assert batch7.onnx_shape == [7, 3]
    assert all(c.passed for c in report.checks)


def test_report_round_trips_through_json() -> None:
    report = verify_conversion(_result(_branchy))
    data = json.loads(report.to_json())
    again = VerificationReport.from_dict(data)

    assert data["passed"] is False
    assert again.to_dict() == report.to_dict()
    assert bool(again) is False
    assert [c.name for c in again.cases] == [c.name for c in report.cases]


def test_render_is_a_rich_renderable_naming_the_failure() -> None:
    from rich.console import Console

    console = Console(width=200, record=True, file=open("/dev/null", "w"))  # noqa: SIM115
    console.print(verify_conversion(_result(_branchy)).render())
    text = console.export_text()
    assert "negated" in text and "FAIL" in text and "verification failed" in text


def test_smallest_passing_atol_is_exact() -> None:
    expected = np.array([1.0, 2.0, 4.0, -10.0])
    actual = np.array([1.1, 2.0, 4.2, -10.05])
    rtol = 0.01
    comp = compare("y", "sample", expected, actual, Tolerance(1e-9, rtol))
    # per element: |d| - rtol*|e| = 0.09, -0.02, 0.16, -0.05
    assert comp.min_passing_atol == pytest.approx(0.16)
    assert comp.max_abs_error == pytest.approx(0.2)
    assert comp.max_rel_error == pytest.approx(0.1)
    assert comp.mismatch_fraction == 0.5
    assert not comp.passed
    assert compare("y", "s", expected, actual, Tolerance(0.16 + 1e-12, rtol)).passed
    assert not compare("y", "s", expected, actual, Tolerance(0.159, rtol)).passed


def test_nan_and_inf_agree_only_when_both_sides_match() -> None:
    tol = Tolerance(1e-6, 0.0)
    same = compare("y", "s", [np.nan, np.inf, 1.0], [np.nan, np.inf, 1.0], tol)
    assert same.passed and same.max_abs_error == 0.0
    differ = compare("y", "s", [np.nan, 1.0], [0.0, 1.0], tol)
    assert not differ.passed and differ.min_passing_atol == float("inf")


def test_shape_and_dtype_disagreement_fail_but_still_measure() -> None:
    tol = Tolerance(1e-4, 1e-3)
    comp = compare("y", "s", np.ones(3), np.ones((3, 1)), tol)
    assert not comp.passed and not comp.shape_match and comp.max_abs_error == 0.0
    assert "shape" in comp.detail
    kinds = compare("y", "s", np.array(["a", "b"]), np.array([0, 1]), tol)
    assert not kinds.passed and not kinds.dtype_match
    # Same kind, other width (float64 from the framework, float32 from ONNX) is agreement.
    assert compare("y", "s", np.ones(2), np.ones(2, np.float32), tol).passed


def test_classifier_label_agreement() -> None:
    model = onnx_models.mlp()
    weights = {
        init.name: onnx_models.numpy_helper.to_array(init) for init in model.graph.initializer
    }

    def native(feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        h = np.maximum(feed["x"] @ weights["w1"] + weights["b1"], 0)
        logits = h @ weights["w2"] + weights["b2"]
        label = logits.argmax(axis=1)
        label[0] = (label[0] + 1) % 3  # one wrong label in every case
        return {"logits": logits, "label": label}

    rng = np.random.default_rng(0)
    result = ConversionResult(
        model,
        Signature.from_onnx(model),
        "test",
        {"x": rng.standard_normal((10, 4)).astype(np.float32)},
        native,
        task="classifier",
        label_output="label",
    )
    report = verify_conversion(result)

    assert not report
    sample_label = next(o for o in report.outputs if o.case == "sample" and o.output == "label")
    assert sample_label.label_agreement == pytest.approx(0.9)
    assert not sample_label.passed
    sample_logits = next(o for o in report.outputs if o.case == "sample" and o.output == "logits")
    assert sample_logits.passed and sample_logits.label_agreement is None


def test_native_error_on_a_variation_is_recorded_not_raised() -> None:
    def only_four_rows(feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        if feed["x"].shape[0] != 4:
            raise RuntimeError("this model was built for batches of 4")
        return {"y": feed["x"] * 2}

    report = verify_conversion(_result(only_four_rows))

    statuses = {c.name: c.status for c in report.cases}
    assert statuses["batch=1"] == statuses["batch=7"] == "native-error"
    assert "batches of 4" in next(c.error for c in report.cases if c.name == "batch=1")
    assert statuses["negated"] == "passed"
    assert report.passed  # the original cannot run those inputs: nothing to hold ONNX to


def test_native_error_on_the_sample_fails() -> None:
    def broken(feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        raise ValueError("boom")

    report = verify_conversion(_result(broken))
    assert not report
    assert report.cases[0].status == "failed" and "boom" in report.cases[0].error
    assert next(c for c in report.checks if c.name == "parity").passed is False


def test_cases_vary_floats_and_resample_integer_rows_together() -> None:
    signature = Signature.from_dict(
        {
            "inputs": [
                {"name": "x", "dtype": "float32", "shape": ["batch", 2]},
                {"name": "ids", "dtype": "int64", "shape": ["batch"]},
            ],
            "outputs": [],
        }
    )
    sample = {"x": np.arange(6, dtype=np.float32).reshape(3, 2), "ids": np.array([0, 1, 2])}
    cases = {c.name: c for c in make_cases(sample, signature)}

    assert np.array_equal(cases["negated"].feed["x"], -sample["x"])
    assert np.array_equal(cases["negated"].feed["ids"], sample["ids"])  # integers untouched
    assert np.array_equal(cases["scaled"].feed["ids"], sample["ids"])
    assert not np.allclose(cases["scaled"].feed["x"], sample["x"])
    big = cases["batch=7"].feed
    assert big["x"].shape == (7, 2) and big["ids"].shape == (7,)
    # rows stay together across inputs: x's row i is row ids[i] of the sample
    assert np.array_equal(big["x"], sample["x"][big["ids"]])
    assert set(big["ids"]) == {0, 1, 2}  # tiling uses every row before repeating


def test_fixed_batch_axis_is_not_varied() -> None:
    model = onnx_models.doubler(batch=4)
    names = [c.name for c in make_cases(_sample(), Signature.from_onnx(model))]
    assert names == ["sample", "negated", "scaled"]


def test_sequence_output_is_not_servable() -> None:
    checks, session = run_checks(onnx_models.sequence_output())
    by_name = {c.name: c for c in checks}
    assert by_name["onnx.checker"].passed  # valid ONNX ...
    assert not by_name["servable"].passed  # ... but not something the V2 protocol can carry
    assert "'seq' is a sequence" in by_name["servable"].detail
    assert session is not None


def test_opset_newer_than_onnxruntime_is_flagged() -> None:
    checks, session = run_checks(onnx_models.doubler(opset=99))
    by_name = {c.name: c for c in checks}
    assert not by_name["opset"].passed
    assert "99" in by_name["opset"].detail and onnxruntime.__version__ in by_name["opset"].detail
    assert not by_name["loads on CPUExecutionProvider"].passed  # ORT agrees: it cannot load it
    assert session is None

    report = verify_conversion(_result(_branchy, model=onnx_models.doubler(opset=99)))
    assert not report and report.compared is False
    assert any("could not load" in note for note in report.notes)


def test_current_opset_passes() -> None:
    checks, _ = run_checks(onnx_models.doubler(opset=17))
    assert next(c for c in checks if c.name == "opset").passed


def test_unknown_provider_is_a_usage_error_and_unavailable_one_a_failed_check() -> None:
    with pytest.raises(UsageError, match="unknown execution provider"):
        run_checks(onnx_models.doubler(), ["nonsense"])
    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("CUDA is available here")
    checks, _ = run_checks(onnx_models.doubler(), ["cpu", "cuda"])
    cuda = next(c for c in checks if c.name == "loads on CUDAExecutionProvider")
    assert not cuda.passed and "not available" in cuda.detail


def test_verify_onnx_file_against_an_onnx_original(tmp_path) -> None:
    good = onnx_models.save(onnx_models.doubler(), tmp_path / "a.onnx")
    np.save(tmp_path / "x.npy", _sample()["x"].astype(np.float64))  # cast to float32 on the way

    assert verify(good, original=good, sample=tmp_path / "x.npy")

    tripler = onnx_models.doubler()
    tripler.graph.initializer[0].raw_data = np.array(3.0, np.float32).tobytes()
    other = onnx_models.save(tripler, tmp_path / "b.onnx")
    report = verify(other, original=good, sample=tmp_path / "x.npy", atol=1e-5, rtol=0)
    assert not report and report.atol == 1e-5 and report.rtol == 0
    assert all(not o.passed for o in report.outputs)


def test_verify_without_original_runs_checks_and_the_sample(tmp_path) -> None:
    path = onnx_models.save(onnx_models.doubler(), tmp_path / "m.onnx")
    report = verify(path)
    assert report and not report.compared and not report.cases
    assert any("no original" in note for note in report.notes)

    report = verify(path, sample={"x": np.ones((2, 3), np.float32)})
    assert next(c for c in report.checks if c.name == "runs on sample").passed

    with pytest.raises(InputError, match=r"shape \[2, 5\]"):  # a sample that cannot fit
        verify(path, sample={"x": np.ones((2, 5), np.float32)})
    with pytest.raises(UsageError, match="--original"):
        verify(path, framework="torch")
