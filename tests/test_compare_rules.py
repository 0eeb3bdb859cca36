"""The recommendation rules and the findings, on made-up measurements: each rule can be seen to
decide (a faster format that fails parity, runs code or cannot run in the target is passed over),
and a slower ONNX Runtime is said to be slower. Also the report's JSON round trip and its Spark
section, which a later stage fills in."""

from __future__ import annotations

import json
from dataclasses import replace

import pandas as pd
import pytest

from formats.compare import compare
from formats.compare.recommend import findings, recommend
from formats.compare.report import to_html, to_json, to_markdown
from formats.compare.results import (
    Cell,
    CompareOptions,
    CompareReport,
    EngineResult,
    Recommendation,
    SecurityCheck,
    SparkResult,
    Throughput,
)
from formats.compare.sections import SPARK_NOT_MEASURED
from formats.errors import UsageError


def _engine(fmt: str, engine: str, rates: dict[int, float], p50: float, **kw: object) -> EngineResult:
    e = EngineResult(fmt, engine, "measured", parity="pass", label_agreement=1.0, max_abs=0.0,
                     load_seconds=1.0, gzip_bytes=1000, latency_p50_ms=p50)  # fmt: skip
    e.throughput = [Throughput(b, r, 1, b / r) for b, r in rates.items()]
    return replace(e, **kw)  # type: ignore[arg-type]


def _engines() -> list[EngineResult]:
    return [
        _engine("pickle", "sklearn", {1: 50, 10_000: 500_000}, 20.0, parity="original"),
        _engine("skops", "sklearn", {1: 50, 10_000: 400_000}, 20.0),
        _engine("pmml", "pypmml", {1: 300, 10_000: 20_000}, 3.0),
        _engine("pmml", "jpmml", {1: 200, 10_000: 9_000}, 4.0),
        _engine("onnx", "onnxruntime", {1: 40, 10_000: 300_000}, 0.5),
    ]


SECURITY = [
    SecurityCheck("pickle", True, "loading runs code", ""),
    SecurityCheck("skops", False, "refuses untrusted types", ""),
    SecurityCheck("pmml", False, "loads as data", ""),
    SecurityCheck("onnx", False, "loads as data", ""),
]


def test_python_batch_passes_over_the_faster_pickle_because_loading_runs_code() -> None:
    rec = recommend(_engines(), [], SECURITY, "python", "batch")
    assert (rec.fmt, rec.engine) == ("skops", "sklearn")  # 400k beats ONNX's 300k
    pickle = next(r for r in rec.ranking if r["fmt"] == "pickle")
    assert not pickle["kept"] and "runs code" in pickle["why"]
    assert "400,000 rows/s at batch 10,000" in rec.reasons[0]


def test_single_row_ranks_by_p50_latency() -> None:
    rec = recommend(_engines(), [], SECURITY, "python", "single-row")
    assert rec.fmt == "onnx" and "p50 0.5 ms" in rec.reasons[0]


def test_jvm_target_takes_pmml_and_a_parity_failure_drops_an_engine() -> None:
    engines = _engines()
    assert recommend(engines, [], SECURITY, "jvm", "batch").engine == "pypmml"
    engines[2].parity = "fail"
    rec = recommend(engines, [], SECURITY, "jvm", "batch")
    assert (rec.fmt, rec.engine) == ("pmml", "jpmml")
    assert next(r for r in rec.ranking if r["engine"] == "pypmml")["why"] == "parity fail"


def test_any_target_drops_onnx_when_node_disagrees_with_the_original() -> None:
    assert recommend(_engines(), [], SECURITY, "any", "batch").fmt == "onnx"
    node = Cell("ONNX in Node.js", "onnx", "differs", "", details={"against": "original"})
    rec = recommend(_engines(), [node], SECURITY, "any", "batch")
    assert rec.fmt == "pmml"
    # The PMML engines disagreeing with each other gates nothing: parity judges each engine.
    engines = recommend(_engines(), [Cell("PMML", "pmml", "differs", "",
                                          details={"against": "each other"})], SECURITY, "any",
                        "batch")  # fmt: skip
    assert engines.fmt == "onnx"


def test_spark_rows_per_core_decide_a_batch_workload_when_measured() -> None:
    spark = [SparkResult("onnx", "onnxruntime", 1000.0, 1.0),
             SparkResult("pmml", "pypmml", 5000.0, 1.0)]  # fmt: skip
    rec = recommend(_engines(), [], SECURITY, "any", "batch", spark)
    assert rec.engine == "pypmml" and "rows/s/core on Spark" in rec.reasons[0]


def test_ties_go_to_the_faster_cold_load() -> None:
    engines = _engines()
    engines[1].throughput[-1].rows_per_s = 310_000  # skops within 10 % of nothing faster...
    engines[4].load_seconds = 0.2  # ...and ONNX (300k) within 10 % of skops, loading faster
    assert recommend(engines, [], SECURITY, "python", "batch").fmt == "onnx"


def test_no_candidate_says_so() -> None:
    engines = [replace(e, parity="fail") for e in _engines() if e.fmt == "pmml"]
    rec = recommend(engines, [], SECURITY, "jvm", "batch")
    assert rec.fmt is None and rec.headline.startswith("No format qualifies")


def test_findings_say_where_onnx_runtime_is_slower() -> None:
    said = findings(_engines(), [])
    assert "ONNX Runtime is slower than scikit-learn at batch 10,000: 300,000 vs 500,000 rows/s" in said
    assert "ONNX Runtime is slower than scikit-learn at batch 1: 40 vs 50 rows/s" in said
    faster = [replace(e, throughput=[Throughput(1, 100.0, 1, 0.01)]) if e.fmt == "onnx" else e
              for e in _engines()]  # fmt: skip
    assert any(f.startswith("ONNX Runtime is 2x scikit-learn at batch 1") for f in findings(faster, []))


def _report(spark: list[SparkResult] | None) -> CompareReport:
    engines = _engines() + [EngineResult("skops", "sklearn", "not saved", "not saved: no skops")]
    rec = recommend(engines, [], SECURITY, "any", "batch", spark)
    return CompareReport("b", "d", "m", "classification", 10, CompareOptions(), engines, [], [],
                         SECURITY, rec, findings(engines, []), spark=spark)  # fmt: skip


def test_spark_section_renders_results_or_says_not_measured() -> None:
    plain = _report(None)
    assert SPARK_NOT_MEASURED in to_markdown(plain)
    assert "not measured: run <code>make compare</code> with Spark" in to_html(plain)
    spark = _report([SparkResult("onnx", "onnxruntime", 123_456.0, 1.0)])
    md = to_markdown(spark)
    assert SPARK_NOT_MEASURED not in md and "| onnx/onnxruntime | 123,456 | 100.00% |" in md
    assert 'id="plot-spark"' in to_html(spark) and "123,456" in to_html(spark)


def test_json_round_trip_keeps_everything() -> None:
    report = _report([SparkResult("onnx", "onnxruntime", 1.0, 0.5)])
    data = json.loads(to_json(report))
    again = CompareReport.from_dict(data)
    assert json.loads(to_json(again)) == data
    assert isinstance(again.recommendation, Recommendation) and again.spark is not None


def test_a_not_saved_engine_column_says_why() -> None:
    md = to_markdown(_report(None))
    header = next(line for line in md.splitlines() if line.startswith("|  | pickle/sklearn"))
    first = md.splitlines()[md.splitlines().index(header) + 2]
    assert first.startswith("| file size |") and first.rstrip(" |").endswith("not saved: no skops")


def test_jvm_recommendation_mentions_onnx_on_the_jvm() -> None:
    rec = recommend(_engines(), [], SECURITY, "jvm", "batch")
    assert any("onnxruntime's Java API" in reason for reason in rec.reasons)


def test_unknown_format_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="unknown format"):
        compare("nowhere", pd.DataFrame({"a": [1]}), CompareOptions(formats=("pmmml",)))


def test_a_regressor_s_reasons_name_no_labels() -> None:
    """A regressor has no labels: its parity line gave "labels 0.00% equal" before."""
    engines = [replace(e, label_agreement=None, max_abs=7.8e-05) for e in _engines()]
    rec = recommend(engines, [], SECURITY, "any", "batch")
    assert rec.fmt == "onnx" and "parity pass: max |diff| 7.8e-05" in rec.reasons
    assert not any("labels" in reason for reason in rec.reasons)
