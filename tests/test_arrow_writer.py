"""The scores written by pyarrow in the workers and committed by the driver
(jobs.scoring.output.arrow): the same Parquet as Spark's writer, only reported attempts committed,
a failed run leaves the output as it was, and Spark's writer wherever this one cannot write."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from formats.errors import InputError, UsageError
from jobs.scoring.output import choose_writer
from jobs.scoring.output.arrow import MAX_ROWS_CONF, ArrowSink
from jobs.scoring.output.summary import SUMMARY_NAME
from tests.invalid_data import PLANTED, PROBA, planted_rows, run, write_parquet


def _job(capsys: pytest.CaptureFixture[str], bundle: Path, source: Path, out: Path,
         *sets: str) -> tuple[int, str]:  # fmt: skip
    code, _, err = run(capsys, "--bundle", bundle, "--input", source, "--output", out,
                       "--set", "job.parity_gate=false",
                       *(a for s in sets for a in ("--set", s)))  # fmt: skip
    return code, err


def _read(spark: Any, out: Path) -> tuple[Any, pd.DataFrame]:
    df = spark.read.parquet(str(out))
    return df.schema, df.toPandas().sort_values("row_id").reset_index(drop=True)


@pytest.mark.parametrize("on_invalid", ["fail", "null"])
def test_the_workers_write_what_spark_writes(
    spark: Any, capsys: pytest.CaptureFixture[str], tmp_path: Path, penguins_bundle: Path,
    penguins_parquet: Path, on_invalid: str,
) -> None:  # fmt: skip
    """Both writers on one input: the same schema as Spark reads it (names, types, order) and
    the same rows, value for value, with pass-through and model columns, and with the null
    outputs and reasons of invalid rows."""
    source = penguins_parquet
    if on_invalid == "null":
        source = write_parquet(planted_rows(), tmp_path / "planted")
    sets = (f"validation.on_invalid={on_invalid}", "output.model_columns=true",
            'output.passthrough=["island"]')  # fmt: skip
    got = {}
    for writer in ("arrow", "spark"):
        out = tmp_path / writer
        code, err = _job(capsys, penguins_bundle, source, out, f"output.writer={writer}", *sets)
        assert code == 0, err
        got[writer] = _read(spark, out)
        summary = pd.read_json(out / SUMMARY_NAME, typ="series")
        assert summary["writer"].startswith("pyarrow" if writer == "arrow" else "Spark's writer")
        assert not (out / "_temporary").exists() and (out / "_SUCCESS").exists()
    (schema, rows), (spark_schema, spark_rows) = got["arrow"], got["spark"]
    assert schema == spark_schema
    assert "model_sha256" in schema.names and "island" in schema.names
    pd.testing.assert_frame_equal(rows, spark_rows)
    if on_invalid == "null":  # the invalid rows are there, unscored, with their reasons
        invalid = sum(rule is not None for _, _, rule in PLANTED.values())
        assert rows[PROBA[0]].isna().sum() == invalid == rows["error"].notna().sum()


def test_pass_through_columns_of_every_kind_come_out_as_spark_writes_them(
    spark: Any, capsys: pytest.CaptureFixture[str], tmp_path: Path, penguins_bundle: Path,
    penguins_parquet: Path,
) -> None:  # fmt: skip
    """Timestamps (with and without a zone, in a session zone that is not UTC), dates,
    decimals, binary, a small int, lists, maps and structs passed through: the job runs
    (a timestamp once failed it in the driver, before any task) and both writers give the same
    schema and values."""
    import datetime as dt
    import decimal

    table = pq.read_table(penguins_parquet).slice(0, 1500)
    n = table.num_rows
    start = dt.datetime(2024, 3, 31, 0, 30)  # the night Europe moves its clocks
    extra = {
        "ts": pa.array([start + dt.timedelta(minutes=7 * i) for i in range(n)], pa.timestamp("us")),
        "tsz": pa.array([start.replace(tzinfo=dt.UTC) + dt.timedelta(seconds=i) for i in range(n)],
                        pa.timestamp("us", tz="UTC")),
        "day": pa.array([dt.date(2020, 1, 1) + dt.timedelta(days=i) for i in range(n)]),
        "price": pa.array([decimal.Decimal(i) / 100 for i in range(n)], pa.decimal128(10, 2)),
        "big": pa.array([decimal.Decimal(i) / 1000 for i in range(n)], pa.decimal128(30, 3)),
        "raw": pa.array([bytes([i % 256]) for i in range(n)], pa.binary()),
        "small": pa.array([i % 100 for i in range(n)], pa.int8()),
        "tags": pa.array([["a", "b"][: i % 3] for i in range(n)], pa.list_(pa.string())),
        "attrs": pa.array([{"k": i} for i in range(n)], pa.map_(pa.string(), pa.int64())),
        "nested": pa.array([{"x": i, "at": start} for i in range(n)]),
    }  # fmt: skip
    for name, values in extra.items():
        table = table.append_column(name, values)
    (tmp_path / "in").mkdir()
    pq.write_table(table, tmp_path / "in" / "part-0.parquet")
    names = ", ".join(f'"{c}"' for c in extra)
    spark.conf.set("spark.sql.session.timeZone", "Europe/Berlin")
    try:
        for writer in ("arrow", "spark"):
            code, err = _job(capsys, penguins_bundle, tmp_path / "in", tmp_path / writer,
                             f"output.writer={writer}", f"output.passthrough=[{names}]")  # fmt: skip
            assert code == 0, err
        got = {w: spark.read.parquet(str(tmp_path / w)) for w in ("arrow", "spark")}
        assert got["arrow"].schema == got["spark"].schema
        assert got["arrow"].columns[1 : 1 + len(extra)] == list(extra)
        as_text = [f"to_json(map('v', `{c}`)) AS `{c}`" for c in got["arrow"].columns]
        arrow, spark_rows = (got[w].selectExpr(*as_text) for w in ("arrow", "spark"))
        assert arrow.count() == n
        assert arrow.exceptAll(spark_rows).count() == 0 == spark_rows.exceptAll(arrow).count()
        first = got["arrow"].where("row_id = 0").first()
    finally:
        spark.conf.unset("spark.sql.session.timeZone")
    assert first is not None and first["ts"] == start and first["price"] == decimal.Decimal("0.00")


def test_only_the_reported_attempts_are_committed(spark: Any, tmp_path: Path) -> None:
    """A failed attempt's file and a speculative twin's stay out of the output; an overwrite
    removes the old output at commit, not before; a file the driver cannot see is an error
    that leaves the old output in place."""
    out = tmp_path / "scores"
    out.mkdir()
    pq.write_table(pa.table({"row_id": [99]}), out / "old.parquet")
    schema = pa.schema([("row_id", pa.int64()), ("label", pa.string())])
    sink = ArrowSink(str(out), "overwrite", schema=schema)
    sink.prepare()
    assert (out / "old.parquet").exists()  # nothing removed before the tasks succeed
    for partition, attempt, rows in ((0, 0, [1]), (0, 1, [1, 2]), (1, 0, [3]), (1, 1, [3])):
        table = pa.table({"row_id": rows, "label": ["a"] * len(rows)}, schema=schema)
        pq.write_table(table, sink.staging / f"p{partition}-a{attempt}.parquet")
    (sink.staging / "p2-a0.parquet").write_bytes(b"half a file")  # a task killed mid-write
    reported = [{"partition": 0, "attempt": 1, "files": ["p0-a1.parquet"], "rows": 2},
                {"partition": 1, "attempt": 0, "files": ["p1-a0.parquet"], "rows": 1}]  # fmt: skip

    lost = ArrowSink(str(out), "overwrite", schema=schema, run=sink.run)
    with pytest.raises(InputError, match="a filesystem that the driver and the executors share"):
        lost.commit([*reported, {"partition": 3, "attempt": 0, "files": ["gone.parquet"],
                                  "rows": 1}])
    assert (out / "old.parquet").exists()

    assert sink.commit(reported) == 3
    assert sorted(p.name for p in out.iterdir()) == ["_SUCCESS", "p0-a1.parquet", "p1-a0.parquet"]
    assert sorted(spark.read.parquet(str(out)).toPandas()["row_id"]) == [1, 2, 3]


def test_max_records_per_file_starts_a_task_s_next_file_as_spark_s_writer_does(
    spark: Any, capsys: pytest.CaptureFixture[str], tmp_path: Path, penguins_bundle: Path,
    penguins_parquet: Path,
) -> None:  # fmt: skip
    """spark.sql.files.maxRecordsPerFile: no file past the limit, as many files as Spark's
    writer makes of the same tasks, every row once."""
    spark.conf.set(MAX_ROWS_CONF, "700")  # 6,000 rows: batches of 10k straddle each limit
    try:
        files = {}
        for writer in ("arrow", "spark"):
            out = tmp_path / writer
            code, err = _job(capsys, penguins_bundle, penguins_parquet, out,
                             f"output.writer={writer}")  # fmt: skip
            assert code == 0, err
            files[writer] = [pq.read_metadata(f).num_rows for f in sorted(out.glob("*.parquet"))]
    finally:
        spark.conf.unset(MAX_ROWS_CONF)
    assert max(files["arrow"]) == 700 and sum(files["arrow"]) == 6000
    assert sorted(files["arrow"]) == sorted(files["spark"])
    names = sorted(p.name for p in (tmp_path / "arrow").glob("*.parquet"))
    assert names[0].endswith("-c000.parquet") and names[1].endswith("-c001.parquet")
    rows = pd.read_parquet(tmp_path / "arrow")["row_id"]
    assert rows.is_unique and len(rows) == 6000


def test_every_partition_empty_still_writes_the_schema(spark: Any, tmp_path: Path) -> None:
    schema = pa.schema([("row_id", pa.int64()), ("proba_a", pa.float64())])
    sink = ArrowSink(str(tmp_path / "scores"), "error", schema=schema)
    sink.prepare()
    assert sink.commit([{"partition": 0, "attempt": 0, "files": [], "rows": 0}]) == 0
    df = spark.read.parquet(str(tmp_path / "scores"))
    assert df.count() == 0 and df.columns == ["row_id", "proba_a"]


def test_a_failed_run_leaves_the_output_as_it_was(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, penguins_bundle: Path,
    penguins_parquet: Path,
) -> None:  # fmt: skip
    """A task that fails (an invalid row, on_invalid = fail): overwrite and append keep the
    old output and its summary, and a new output is not left behind."""
    out = tmp_path / "scores"
    code, err = _job(capsys, penguins_bundle, penguins_parquet, out)
    assert code == 0, err
    before = sorted(p.name for p in out.iterdir())
    assert SUMMARY_NAME in before
    planted = write_parquet(planted_rows(), tmp_path / "planted")
    for mode in ("overwrite", "append"):
        code, err = _job(capsys, penguins_bundle, planted, out, f"output.mode={mode}")
        assert code == 2 and "invalid" in err, err
        assert sorted(p.name for p in out.iterdir()) == before  # no _temporary, nothing replaced
        assert len(pd.read_parquet(out)) == 6000
    fresh = tmp_path / "fresh"
    code, err = _job(capsys, penguins_bundle, planted, fresh)
    assert code == 2 and not fresh.exists()


def test_spark_s_writer_where_this_one_cannot_write(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, penguins_bundle: Path,
    penguins_parquet: Path,
) -> None:  # fmt: skip
    assert choose_writer("auto", str(tmp_path), (), "snappy")[0] == "arrow"
    assert choose_writer("auto", f"file://{tmp_path}", (), "zstd")[0] == "arrow"
    for output, by, codec, why in (
        ("hdfs://nn/scores", (), "snappy", "not a local path"),
        ("s3a://bucket/scores", (), "snappy", "not a local path"),
        (str(tmp_path), ("label",), "snappy", "output.partition_by is set"),
        (str(tmp_path), (), "lzo", "which pyarrow does not write"),
    ):
        kind, reason = choose_writer("auto", output, by, codec)
        assert kind == "spark" and reason.startswith("Spark's writer (") and why in reason
        with pytest.raises(UsageError, match=why):
            choose_writer("arrow", output, by, codec)
    assert choose_writer("spark", str(tmp_path), (), "snappy")[0] == "spark"
    # a Spark Connect client may not see the executors' files: only where the user says so
    assert choose_writer("auto", str(tmp_path), (), "snappy", connect=True) == (
        "spark", "Spark's writer (a Spark Connect client, which may not see the executors' files)")
    assert choose_writer("arrow", str(tmp_path), (), "snappy", connect=True)[0] == "arrow"
    # asked for where it cannot write: one line, exit 2, before any task runs
    out = tmp_path / "scores"
    code, err = _job(capsys, penguins_bundle, penguins_parquet, out, "output.writer=arrow",
                     'output.partition_by=["label"]')  # fmt: skip
    assert code == 2 and "output.writer = arrow cannot write this run" in err, err
    assert not out.exists()


@pytest.mark.parametrize("writer", ["auto", "spark"])
@pytest.mark.parametrize("case", ["the input", "its parent", "a pattern's match"])
def test_overwriting_the_input_is_refused_before_any_task(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, penguins_bundle: Path,
    penguins_parquet: Path, writer: str, case: str,
) -> None:  # fmt: skip
    """Spark's writer deletes an overwrite's output before a task reads the input: without
    this refusal the input was gone (checked on the old code: the job failed on a missing file
    with every input file deleted)."""
    import shutil

    days = tmp_path / "days"
    for day in ("dt=2026-12-01", "dt=2026-12-02"):
        shutil.copytree(penguins_parquet, days / day)
    before = sorted(p.relative_to(days) for p in days.rglob("*"))
    source, out = {
        "the input": (days / "dt=2026-12-01", days / "dt=2026-12-01"),
        "its parent": (days / "dt=2026-12-01", days),
        "a pattern's match": (days / "dt=2026-12-0{1,2}", days / "dt=2026-12-02"),
    }[case]
    code, err = _job(capsys, penguins_bundle, source, out, "output.mode=overwrite",
                     f"output.writer={writer}")  # fmt: skip
    assert code == 2 and "is (or holds) the input and output.mode is overwrite" in err, err
    assert len(err.strip().splitlines()) == 1, err
    assert sorted(p.relative_to(days) for p in days.rglob("*")) == before


@pytest.mark.parametrize("writer", ["auto", "spark"])
def test_overwriting_the_bundle_is_refused(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, penguins_bundle: Path,
    penguins_parquet: Path, writer: str,
) -> None:  # fmt: skip
    """An output that holds the bundle (``--bundle out/model --output out``): both writers'
    overwrite would delete the user's bundle."""
    import shutil

    bundle = tmp_path / "out" / "model"
    shutil.copytree(penguins_bundle, bundle)
    before = sorted(p.name for p in bundle.iterdir())
    code, err = _job(capsys, bundle, penguins_parquet, tmp_path / "out", "output.mode=overwrite",
                     f"output.writer={writer}")  # fmt: skip
    assert code == 2 and "is (or holds) the bundle and output.mode is overwrite" in err, err
    assert sorted(p.name for p in bundle.iterdir()) == before


@pytest.fixture(scope="module")
def regressor_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A regressor on the penguins' columns: its output is ``prediction``, not ``label``."""
    from sklearn.linear_model import Ridge

    import formats
    from jobs.export import default_pipeline, split

    x, _, _, _ = split()
    x = x.dropna()
    model = default_pipeline("logreg").set_params(model=Ridge()).fit(x, x["body_mass_g"])
    path = tmp_path_factory.mktemp("bundles") / "ridge"
    formats.save(model, path, sample=x, formats=("pickle", "onnx"))
    return path


@pytest.mark.parametrize("writer", ["auto", "spark"])
def test_an_append_of_other_columns_is_refused_and_the_output_kept(
    spark: Any, capsys: pytest.CaptureFixture[str], tmp_path: Path, penguins_bundle: Path,
    regressor_bundle: Path, penguins_parquet: Path, writer: str,
) -> None:  # fmt: skip
    """Another model's columns, or on_invalid = null's error column, appended to an output
    would be invisible to a reader, who takes one file's schema; refused before any task, the
    output (files and summary) as it was. The same columns append."""
    out = tmp_path / "scores"
    code, err = _job(capsys, penguins_bundle, penguins_parquet, out, f"output.writer={writer}")
    assert code == 0, err
    before = sorted(p.name for p in out.iterdir())
    append = ("output.mode=append", f"output.writer={writer}")
    code, err = _job(capsys, regressor_bundle, penguins_parquet, out, *append)
    assert code == 2 and "would mix two schemas" in err and "['prediction']" in err, err
    code, err = _job(capsys, penguins_bundle, penguins_parquet, out, *append,
                     "validation.on_invalid=null")  # fmt: skip
    assert code == 2 and "writes ['error'], which it does not hold" in err, err
    assert sorted(p.name for p in out.iterdir()) == before  # the summary too
    code, err = _job(capsys, penguins_bundle, penguins_parquet, out, *append)
    assert code == 0, err
    rows = spark.read.parquet(str(out)).toPandas()
    assert len(rows) == 12000 and rows["label"].notna().all()
