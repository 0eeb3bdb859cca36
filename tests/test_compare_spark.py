"""The Spark half of the format comparison (``jobs/compare.py``) on the real default pipeline:
the Java UDF compiled with the real javac and run in the session's JVM, pypmml's JVMs in the
Python workers, the ONNX job, and the report they end in. Nothing is mocked; the in-process
half runs with tiny settings and two formats, so the module stays well under a minute of
Spark work."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

import formats
from formats.bundle import Bundle
from jobs.compare import main
from jobs.comparison import jvm as _jvm
from jobs.comparison.engines import ENGINES, Target, jpmml_java_udf, register_pmml_udf
from jobs.comparison.spark import measure, prepare
from jobs.scoring.settings import load_settings

TINY = ["--batch-sizes", "1,50", "--repeats", "1", "--latency-rows", "10", "--parity-rows", "300",
        "--min-seconds", "0.05", "--no-old-sklearn", "--no-node", "--formats", "pickle,onnx",
        "--spark-repeats", "1"]  # fmt: skip


@pytest.fixture(scope="module")
def fitted() -> tuple[Any, Path]:
    """The default pipeline (jobs.export's random forest) and its bundle with pickle, PMML and
    ONNX."""
    import tempfile

    from jobs.export import train

    model, x_train = train("rf")
    path = Path(tempfile.mkdtemp(prefix="compare-spark-")) / "penguins"
    formats.save(model, path, sample=x_train, formats=("pickle", "pmml", "onnx"))
    return model, path


def _target(bundle: Path) -> Target:
    m = Bundle.open(bundle).manifest
    classes = tuple(m.classes) if m.classes is not None else None
    return Target(str(bundle), m.task, classes, tuple(m.inputs), m.has_proba, "row_id")


def _sklearn_rows(frame: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """The rows as scikit-learn takes them: a missing category is NaN (the bundle's contract)."""
    x = frame[columns].copy()
    for c in ("island", "sex"):
        x[c] = x[c].astype(object).where(x[c].notna(), np.nan)
    return x


def test_java_udf_scores_like_scikit_learn(
    spark: Any, fitted: tuple[Any, Path], penguins_parquet: Path, tmp_path: Path
) -> None:
    model, bundle = fitted
    target = _target(bundle)
    register_pmml_udf(spark, target, _jvm.build().all)
    out = tmp_path / "jpmml"
    jpmml_java_udf(spark, target, str(penguins_parquet), str(out), load_settings(None))

    got = pd.read_parquet(out).sort_values("row_id").reset_index(drop=True)
    data = pd.read_parquet(penguins_parquet).sort_values("row_id").reset_index(drop=True)
    assert got["row_id"].tolist() == data["row_id"].tolist()
    assert data["sex"].isna().any() and data["bill_length_mm"].isna().any()  # missing values ran
    x = _sklearn_rows(data, [c.name for c in target.inputs])
    np.testing.assert_array_equal(got["label"].to_numpy(), model.predict(x).astype(str))
    proba = got[[f"proba_{c}" for c in model.classes_]].to_numpy()
    np.testing.assert_allclose(proba, model.predict_proba(x), rtol=0, atol=1e-9)


def test_compare_writes_the_spark_half(
    spark: Any, fitted: tuple[Any, Path], penguins_parquet: Path, tmp_path: Path
) -> None:
    _, bundle = fitted
    out = tmp_path / "report"
    argv = ["--bundle", str(bundle), "--input", str(penguins_parquet), "--out", str(out),
            "--rows", "4000", *TINY]  # fmt: skip
    assert main(argv) == 0
    report = json.loads((out / "report.json").read_text())
    keys = [f"{s['fmt']}/{s['engine']}" for s in report["spark"]]
    assert keys == ["pickle/sklearn", "pmml/pypmml", "pmml/jpmml", "onnx/onnxruntime"]
    by = {f"{s['fmt']}/{s['engine']}": s for s in report["spark"]}
    for key, s in by.items():
        assert s["error"] is None, (key, s["error"])
        assert s["rows"] == 4000 and s["cores"] == spark.sparkContext.defaultParallelism
        assert s["rows_per_s_per_core"] > 0 and s["runs"] and s["agreement"] is not None
    for key in ("pickle/sklearn", "pmml/jpmml", "onnx/onnxruntime"):  # in-process parity passes
        assert by[key]["agreement"] == 1.0, key
    assert by["pmml/pypmml"]["agreement"] > 0.95
    assert not (out / "spark").exists()  # the engines' Parquet is removed
    md = (out / "report.md").read_text()
    assert "## On Spark" in md and "Java UDF in the executors' JVM" in md
    assert "not measured: run" not in md


def test_data_without_the_model_columns_is_one_line(
    fitted: tuple[Any, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, bundle = fitted
    bad = tmp_path / "bad.parquet"
    pd.DataFrame({"row_id": [1, 2], "colour": ["red", "blue"]}).to_parquet(bad)
    code = main(["--bundle", str(bundle), "--input", str(bad), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1 and err.startswith("error: ") and "island" in err
    assert not (tmp_path / "o").exists()


def test_missing_javac_is_that_cell_only(
    spark: Any,
    fitted: tuple[Any, Path],
    penguins_parquet: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _, bundle = fitted
    monkeypatch.setenv(_jvm.JAVAC_ENV, str(tmp_path / "no-jdk" / "javac"))
    monkeypatch.setenv(_jvm.CACHE_ENV, str(tmp_path / "jvm"))  # no jar built before
    assert _jvm.main([]) == 2
    assert "apt-get install -y openjdk-17-jdk-headless" in capsys.readouterr().err

    target = _target(bundle)
    prepared = prepare(spark, str(penguins_parquet), "row_id", tmp_path / "work", 2000)
    results = measure(spark, target, prepared, load_settings(None), tmp_path / "work",
                      engines=("pickle", "jpmml"), repeats=1)  # fmt: skip
    pickle, jpmml = results
    assert (jpmml.fmt, jpmml.engine, jpmml.rows_per_s_per_core) == ("pmml", "jpmml", None)
    assert jpmml.error and "javac not found" in jpmml.error and "openjdk-17-jdk" in jpmml.error
    assert pickle.error is None and pickle.agreement == 1.0
    assert pickle.rows == 2000 and (pickle.rows_per_s_per_core or 0) > 0
    assert list(ENGINES)[:1] == ["pickle"]


def test_a_glob_pattern_input_is_read_as_spark_reads_it(
    spark: Any, fitted: tuple[Any, Path], penguins_parquet: Path, tmp_path: Path
) -> None:
    """The comparison's input checks and its local slicing read a pattern's files (pyarrow
    takes no Hadoop patterns); the slices hold the matched files' rows and no others."""
    from jobs.comparison import check_columns

    _, bundle = fitted
    pattern = f"{penguins_parquet}/part-{{0,2}}.parquet"
    check_columns(pattern, Bundle.open(bundle))  # no error: the columns were read
    want = pd.concat(pd.read_parquet(penguins_parquet / f"part-{i}.parquet") for i in (0, 2))
    prepared = prepare(spark, pattern, "row_id", tmp_path / "work", None)
    assert prepared.rows == len(want) == 4000
    got = spark.read.parquet(prepared.data).select("row_id").toPandas()["row_id"]
    assert sorted(got) == sorted(want["row_id"])


def test_a_partitioned_input_keeps_its_partition_column(
    spark: Any, fitted: tuple[Any, Path], penguins_parquet: Path, tmp_path: Path
) -> None:
    """A directory Spark wrote with partitionBy("year"): the model's year is in the directory
    names, not the files. The checks read it as Spark does (an int), and the slices hold it:
    pyarrow kept the files' Spark metadata, whose schema has no year, and Spark then read
    none (every engine failed on "`year` cannot be resolved")."""
    from jobs.comparison import check_columns

    _, bundle = fitted
    parts = tmp_path / "parts"
    spark.read.parquet(str(penguins_parquet)).write.partitionBy("year").parquet(str(parts))
    check_columns(str(parts), Bundle.open(bundle))  # no error: year was found
    prepared = prepare(spark, str(parts), "row_id", tmp_path / "work", 3000)
    got = spark.read.parquet(prepared.data).toPandas().set_index("row_id")
    assert prepared.rows == len(got) == 3000 and got.index.is_unique
    want = pd.read_parquet(penguins_parquet).set_index("row_id").loc[got.index]
    assert (got["year"].to_numpy() == want["year"].to_numpy()).all()


def test_a_pmml_of_labels_only_is_that_engine_s_error_on_spark(
    spark: Any, penguins_parquet: Path, tmp_path: Path
) -> None:
    """An SVC's PMML declares no probabilities: both PMML engines say so, on the driver, and
    the pickle beside them is measured as usual."""
    from sklearn.svm import SVC

    from jobs.export import default_pipeline, split

    x_train, _, y_train, _ = split()
    model = default_pipeline("rf").set_params(model=SVC(probability=True, random_state=0))
    model.fit(x_train, y_train)
    bundle = tmp_path / "svc"
    formats.save(model, bundle, sample=x_train, formats=("pickle", "pmml"))
    prepared = prepare(spark, str(penguins_parquet), "row_id", tmp_path / "work", 2000)
    pickle, pypmml, jpmml = measure(spark, _target(bundle), prepared, load_settings(None),
                                    tmp_path / "work", engines=("pickle", "pypmml", "jpmml"),
                                    repeats=1)  # fmt: skip
    for result in (pypmml, jpmml):
        assert result.error and "model.pmml has labels only: its SupportVectorMachineModel" in result.error
        assert result.rows_per_s_per_core is None
    assert pickle.error is None and pickle.agreement == 1.0
