"""Spark's per-row Arrow batch size check, skipped only where it can change no batch
(jobs.scoring.output.batches)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pyspark.sql import types as T

from jobs.scoring.model import load_model
from jobs.scoring.output.batches import MAX_BYTES, _bytes, row_bytes, skipping_size_check
from jobs.scoring.settings import load_settings
from jobs.scoring.transform import plan


def test_row_bytes_counts_fixed_widths_and_names_a_variable_one() -> None:
    fixed = T.StructType([T.StructField("a", T.FloatType()), T.StructField("b", T.LongType()),
                          T.StructField("c", T.IntegerType())])  # fmt: skip
    assert row_bytes(fixed) == (1 + 5 + 9 + 5, "")
    mixed = T.StructType([*fixed.fields, T.StructField("name", T.StringType())])
    assert row_bytes(mixed) == (None, "name")
    nested = T.StructType([T.StructField("s", T.StructType([T.StructField("x", T.DoubleType())]))])
    assert row_bytes(nested) == (1 + 9 + 1, "")
    assert row_bytes(T.StructType([T.StructField("xs", T.ArrayType(T.IntegerType()))]))[0] is None


@pytest.mark.parametrize(
    ("text", "value"),
    [("67108864b", 67108864), ("64m", 64 * 2**20), ("1g", 2**30), ("2147483647", 2**31 - 1),
     ("10kb", 10240), ("lots", None)],
)  # fmt: skip
def test_spark_sizes_are_read_as_spark_reads_them(text: str, value: int | None) -> None:
    assert _bytes(text) == value


def _batch_sizes(spark: Any, df: Any) -> list[int]:
    """The row counts of the Arrow batches a Python worker receives, in order."""
    import pyarrow as pa

    def sizes(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for batch in batches:
            yield pa.record_batch([pa.array([batch.num_rows], pa.int64())], names=["n"])

    return [r.n for r in df.coalesce(1).mapInArrow(sizes, "n long").collect()]


def test_skipping_the_check_changes_no_batch_and_restores_the_setting(spark: Any) -> None:
    df = spark.range(25_000).selectExpr("id", "CAST(id AS FLOAT) AS x")
    width, _ = row_bytes(df.schema)
    assert width is not None
    with_check = _batch_sizes(spark, df)
    with skipping_size_check(spark, width) as what:
        assert spark.conf.get(MAX_BYTES) == str(2**31 - 1)
        without = _batch_sizes(spark, df)
    assert "skipped" in what
    assert with_check == without == [10_000, 10_000, 5_000]
    assert spark.conf.get(MAX_BYTES, None) is None  # unset again, as it was

    spark.conf.set(MAX_BYTES, "256m")
    try:
        with skipping_size_check(spark, width):
            assert spark.conf.get(MAX_BYTES) == str(2**31 - 1)
        assert spark.conf.get(MAX_BYTES) == "256m"  # the session's own value is back
    finally:
        spark.conf.unset(MAX_BYTES)


def test_the_check_stays_where_the_limit_can_cut_a_batch(spark: Any) -> None:
    """A small limit cuts fixed-width batches (then the check is kept, and it does cut them);
    a column of variable width keeps it whatever the limit."""
    df = spark.range(25_000).selectExpr("id", "CAST(id AS FLOAT) AS x")
    width, _ = row_bytes(df.schema)
    spark.conf.set(MAX_BYTES, "64k")
    try:
        with skipping_size_check(spark, width) as what:
            assert spark.conf.get(MAX_BYTES) == "64k"
            sizes = _batch_sizes(spark, df)
        assert "may reach it" in what
        assert sum(sizes) == 25_000 and max(sizes) < 10_000  # the limit cut them
    finally:
        spark.conf.unset(MAX_BYTES)
    with skipping_size_check(spark, None, "island") as what:
        assert spark.conf.get(MAX_BYTES, None) is None
    assert what == "sized by Spark's byte limit (column 'island' has no fixed width)"


def test_the_job_sends_fixed_widths_with_codes_and_not_with_strings(
    spark: Any, penguins_bundle: Path, penguins_parquet: Path
) -> None:
    df = spark.read.parquet(str(penguins_parquet))
    model = load_model(penguins_bundle)
    got = {}
    for codes in ("true", "false"):
        got[codes] = plan(df, model, load_settings(None, [f"execution.string_codes={codes}"])).row_bytes
    # row_id (long) and the model's columns: 4 floats, a long year, 2 int32 codes
    assert got["true"] == (1 + 9 + 4 * 5 + 9 + 2 * 5, "")
    assert got["false"] == (None, "island")


class _Conf:
    """A session's conf holding a byte limit Spark would refuse to set (it checks sizes on
    ``conf.set``), so only a conf object can hold one."""

    def __init__(self, values: dict[str, str]) -> None:
        self.values = values

    def get(self, key: str, default: Any = None) -> Any:
        return self.values.get(key, default)


def test_an_unreadable_limit_keeps_the_check_and_says_so() -> None:
    session = type("Session", (), {})()
    session.conf = _Conf({MAX_BYTES: "lots", "spark.sql.execution.arrow.maxRecordsPerBatch": "10"})
    with skipping_size_check(session, 20) as what:
        assert session.conf.values[MAX_BYTES] == "lots"  # untouched
    assert what == "sized by Spark's byte limit (its value 'lots' is not read here)"
    session.conf.values[MAX_BYTES] = str(2**31 - 1)
    with skipping_size_check(session, 20) as what:
        pass
    assert what == "Spark's byte limit is off in this session"
