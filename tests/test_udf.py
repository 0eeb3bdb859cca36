"""The public UDF, ``jobs.udf.onnx_udf``, in users' own Spark code."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

import formats
from formats.errors import InputError, MissingDependencyError, UsageError
from jobs.scoring.model import load_model
from jobs.scoring.settings import load_settings
from jobs.scoring.transform import score
from jobs.udf import input_columns, onnx_udf, score_frame
from tests.conftest import FEATURES

CLASSES = ["Adelie", "Chinstrap", "Gentoo"]


def test_udf_in_with_column_agrees_with_the_pickle(
    spark: Any, penguins_bundle: Path, penguins_parquet: Path
) -> None:
    udf = onnx_udf(spark, penguins_bundle)
    assert input_columns(penguins_bundle) == FEATURES
    df = spark.read.parquet(str(penguins_parquet))
    out = df.withColumn("scores", udf(*input_columns(penguins_bundle)))
    assert dict(out.dtypes)["scores"] == (
        "struct<label:string,proba_Adelie:double,proba_Chinstrap:double,proba_Gentoo:double>"
    )
    got = out.select("row_id", "scores.*").toPandas().set_index("row_id").sort_index()
    _agrees_with_the_pickle(got, penguins_bundle, penguins_parquet)


def _agrees_with_the_pickle(got: pd.DataFrame, bundle: Path, parquet: Path) -> None:
    """``got`` (indexed by row_id, sorted) has every row, the pickle's labels and, within
    1e-5, its probabilities."""
    assert len(got) == 6000 and got.index.is_unique
    data = pd.read_parquet(parquet)
    want = formats.load(bundle, "pickle").predict(data[FEATURES])
    want.index = data["row_id"].to_numpy()
    want = want.sort_index()
    assert (got["label"].to_numpy() == want["label"].to_numpy()).all()
    for cls in CLASSES:
        np.testing.assert_allclose(got[f"proba_{cls}"], want[f"proba_{cls}"], atol=1e-5, rtol=0)


def test_udf_and_job_share_code_and_the_worker_cache(
    spark: Any, penguins_bundle: Path, penguins_parquet: Path
) -> None:
    """The job with category codes runs its own (rewritten) model, so its own session; with
    execution.string_codes = false it runs model.onnx, and shares the UDF's session."""
    df = spark.read.parquet(str(penguins_parquet)).repartition(4)
    model = load_model(penguins_bundle)
    frames = {
        codes: score(df, model, load_settings(None, [f"execution.string_codes={codes}"]))
        .toPandas().set_index("row_id").sort_index()
        for codes in ("true", "false")
    }  # fmt: skip
    udf = onnx_udf(spark, penguins_bundle)
    mine = (
        df.select("row_id", udf(*FEATURES).alias("s"))
        .select("row_id", "s.*")
        .toPandas()
        .set_index("row_id")
        .sort_index()
    )
    for job in frames.values():
        pd.testing.assert_frame_equal(job, mine)  # identical: the same feed and decoding

    sha = model.spec.sha256

    def sessions(batches: Any) -> Any:
        import os

        from jobs.scoring import worker as _udf

        for _ in batches:
            built = _udf._BUILT
            yield pd.DataFrame(
                {"pid": [os.getpid()], "strings": [built[sha, False]], "codes": [built[sha, True]]}
            )

    built = df.mapInPandas(sessions, "pid long, strings long, codes long").toPandas()
    # a worker that ran a path built that model's session once (0: a fresh worker)
    for form in ("strings", "codes"):
        per_worker = built.groupby("pid")[form].max()
        assert set(per_worker) <= {0, 1} and 1 in set(per_worker), built


def test_score_frame_is_the_job_s_transform_and_agrees_with_the_pickle(
    spark: Any, penguins_bundle: Path, penguins_parquet: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``score_frame`` in a user's own code: the job's columns, its settings as a mapping, the
    category columns as codes in the JVM, and the pickle's scores on every row."""
    df = spark.read.parquet(str(penguins_parquet))
    out = score_frame(df, penguins_bundle, {"output.passthrough": ["island"],
                                            "validation.on_invalid": "null"})  # fmt: skip
    assert out.columns[:2] == ["row_id", "island"]
    assert out.columns[2:6] == ["label", *(f"proba_{c}" for c in CLASSES)]
    out.explain()  # the plan turns the category columns into codes before Python sees them
    plan = capsys.readouterr().out  # (the invalid-row rules have CASE WHENs of their own)
    assert "CASE WHEN (coalesce(island#" in plan and "CASE WHEN (coalesce(sex#" in plan
    got = out.toPandas().set_index("row_id").sort_index()
    _agrees_with_the_pickle(got, penguins_bundle, penguins_parquet)
    data = pd.read_parquet(penguins_parquet).set_index("row_id").sort_index()
    assert (got["island"].to_numpy() == data["island"].to_numpy()).all()


def test_score_frame_refuses_bad_input_before_any_task(
    spark: Any, penguins_bundle: Path, penguins_parquet: Path
) -> None:
    df = spark.read.parquet(str(penguins_parquet))
    with pytest.raises(InputError, match="sex"):
        score_frame(df.drop("sex"), penguins_bundle)
    with pytest.raises(UsageError, match="on_invalid"):
        score_frame(df, penguins_bundle, {"validation.on_invalid": "skip-it"})
    # typed as in a TOML file: a list item that is not a column name is not made into one
    with pytest.raises(UsageError, match="'output.passthrough' takes a list of strings"):
        score_frame(df, penguins_bundle, {"output.passthrough": ["island", 3]})
    with pytest.raises(UsageError, match="'execution.string_codes' takes true or false"):
        score_frame(df, penguins_bundle, {"execution.string_codes": "no"})


def test_tensor_model_udf_with_one_array_argument(spark: Any, cnn: tuple[Any, Path]) -> None:
    import torch

    net, bundle = cnn
    images = np.random.default_rng(9).normal(size=(64, 1, 8, 8)).astype(np.float32)
    df = spark.createDataFrame(pd.DataFrame({"input": list(images.reshape(64, 64))}))
    out = df.select(onnx_udf(spark, bundle)("input").alias("y")).select("y.*").toPandas()
    with torch.no_grad():
        logits, top = net(torch.from_numpy(images))
    np.testing.assert_allclose(np.stack(out["output_0"].to_numpy()), logits.numpy(), atol=1e-5)
    np.testing.assert_allclose(out["output_1"].to_numpy(), top.numpy(), atol=1e-5)


def test_strings_where_numbers_belong_fail_in_one_line(
    spark: Any, penguins_bundle: Path, penguins_parquet: Path
) -> None:
    df = spark.read.parquet(str(penguins_parquet)).limit(10)
    swapped = ["island", "sex", *FEATURES[2:5], "island", "year"]  # a string as bill_length_mm
    udf = onnx_udf(spark, penguins_bundle)
    with pytest.raises(Exception, match="InputError: the model's inputs .* cannot convert"):
        df.select(udf(*swapped)).collect()


def test_cuda_on_a_cpu_only_driver_fails_before_any_task(spark: Any, penguins_bundle: Path) -> None:
    with pytest.raises(MissingDependencyError, match="no CUDA"):
        onnx_udf(spark, penguins_bundle, provider="cuda")
    assert onnx_udf(spark, penguins_bundle, provider="cuda", allow_cpu_fallback=True) is not None
