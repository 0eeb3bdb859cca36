"""The score job's bad-input corpus: one test per thing a user gets wrong.

Each case is one ``error: ...`` line on stderr (never a traceback or a JVM stack frame, and no
multi-line pyspark warning), exit 2, and no output marked complete (no ``_SUCCESS``, no run
summary). Most run ``main`` in this process on the shared session; the ones about starting
Spark (Java, the master URL) and one about the executors' logs run ``python -m jobs.score`` in
a fresh process, with a timeout, since this process's session already exists. The one input
that must work (extra columns) is checked against the pickle.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

import formats
from tests.invalid_data import (
    assert_matches_pickle,
    assert_not_complete,
    assert_one_error,
    pickle_predictions,
    planted_rows,
    run,
    strict_bundle,
    write_parquet,
)

__all__ = ["strict_bundle"]  # the fixture, imported for pytest

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Ctx:
    tmp: Path
    bundle: Path  # the default penguins bundle
    strict: Path  # its island encoder refuses unseen categories
    parquet: Path  # 6000 good rows in 3 files

    def data(self, rows: int = 200) -> pd.DataFrame:
        return pd.read_parquet(self.parquet).head(rows)

    def write(self, data: pd.DataFrame, name: str = "input") -> Path:
        path = self.tmp / name
        path.mkdir(exist_ok=True)
        data.to_parquet(path / f"part-{len(list(path.iterdir()))}.parquet", index=False)
        return path

    def copy_bundle(self) -> Path:
        target = self.tmp / "bundle"
        shutil.copytree(self.bundle, target)
        return target

    def job(self, source: Path, *extra: Any, bundle: Path | None = None) -> list[Any]:
        return ["--bundle", bundle or self.bundle, "--input", source,
                "--output", self.tmp / "scores", *extra]  # fmt: skip


# --- the cases: each returns the job's arguments -------------------------------------------
def _renamed_column(c: Ctx) -> list[Any]:
    # a typo ("Sex" is the model's "sex", as in Spark: tests/test_score_transform.py)
    return c.job(c.write(c.data().rename(columns={"sex": "sexe"})))


def _number_in_string_column(c: Ctx) -> list[Any]:
    data = c.data()
    return c.job(c.write(data.assign(island=data["island"].astype("category").cat.codes)))


def _timestamp_in_numeric_column(c: Ctx) -> list[Any]:
    data = c.data()  # not castable per row, so refused even when strings would be cast
    years = pd.to_datetime(data["year"].astype(str), format="%Y").astype("datetime64[us]")
    return c.job(c.write(data.assign(year=years)), "--set", "validation.on_invalid=quarantine")


def _zero_rows(c: Ctx) -> list[Any]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.Table.from_pandas(c.data(), preserve_index=False).schema  # the good schema
    (c.tmp / "input").mkdir()
    pq.write_table(schema.empty_table(), c.tmp / "input" / "part-0.parquet")  # and no rows
    return c.job(c.tmp / "input")


def _corrupt_file_among_good(c: Ctx) -> list[Any]:
    source = c.tmp / "input"
    shutil.copytree(c.parquet, source)
    (source / "part-9.parquet").write_bytes(b"PAR1 not really a parquet file PAR1")
    return c.job(source, "--set", "job.parity_gate=false")


def _mixed_schema_types(c: Ctx) -> list[Any]:
    data = c.data()
    source = c.write(data.head(100))
    c.write(data.tail(100).assign(body_mass_g=data["body_mass_g"].tail(100).astype(str)))
    return c.job(source)


def _mixed_schema_missing_column(c: Ctx) -> list[Any]:
    data = c.data()  # the second file lacks year: Spark reads it as null, an invalid row
    source = c.write(data.head(100))
    c.write(data.tail(100).drop(columns="year"))
    return c.job(source)


def _tampered_pickle(c: Ctx) -> list[Any]:
    bundle = c.copy_bundle()  # the parity gate opens the pickle: checked before unpickling
    with open(bundle / "model.pkl", "ab") as fh:
        fh.write(b"\0")
    return c.job(c.parquet, bundle=bundle)


def _damaged_manifest(c: Ctx) -> list[Any]:
    bundle = c.copy_bundle()
    text = (bundle / "manifest.json").read_text()
    (bundle / "manifest.json").write_text(text[: len(text) // 2])
    return c.job(c.parquet, bundle=bundle)


def _bundle_for_another_schema(c: Ctx) -> list[Any]:
    from sklearn.linear_model import LogisticRegression

    x = pd.DataFrame({"petal_length": [1.0, 1.5, 4.5, 5.0], "petal_width": [0.2, 0.3, 1.5, 1.8]})
    model = LogisticRegression().fit(x, ["setosa", "setosa", "virginica", "virginica"])
    formats.save(model, c.tmp / "iris", sample=x, formats=("pickle", "onnx"))
    return c.job(c.parquet, bundle=c.tmp / "iris")


def _unknown_conf_key_set(c: Ctx) -> list[Any]:
    return c.job(c.parquet, "--set", "output.partition=label")


def _unknown_conf_key_toml(c: Ctx) -> list[Any]:
    conf = c.tmp / "job.toml"
    conf.write_text('[validation]\non_invalide = "null"\n')
    return ["--conf", conf, *c.job(c.parquet)]


def _bad_on_invalid(c: Ctx) -> list[Any]:
    return c.job(c.parquet, "--set", "validation.on_invalid=skip")


def _output_parent_is_a_file(c: Ctx) -> list[Any]:
    (c.tmp / "a_file").write_text("not a directory")
    return ["--bundle", c.bundle, "--input", c.parquet, "--output", c.tmp / "a_file" / "scores"]


def _output_under_proc(c: Ctx) -> list[Any]:
    return ["--bundle", c.bundle, "--input", c.parquet, "--output", "/proc/modelport-scores"]


def _quarantine_exists(c: Ctx) -> list[Any]:
    (c.tmp / "scores_quarantine").mkdir()
    return c.job(c.parquet, "--set", "validation.on_invalid=quarantine")


def _cuda_on_cpu_node(c: Ctx) -> list[Any]:
    return ["--conf", ROOT / "conf" / "gpu.toml", *c.job(c.parquet)]


def _planted(c: Ctx, row_id: int, bundle: Path | None = None) -> list[Any]:
    data = planted_rows(60)
    return c.job(write_parquet(data[data["row_id"] >= row_id], c.tmp / "input"), bundle=bundle)


def _error_column_clash(c: Ctx) -> list[Any]:
    data = c.data().assign(error="upstream note")
    return c.job(c.write(data), "--set", "validation.on_invalid=null",
                 "--set", 'output.passthrough=["error"]')  # fmt: skip


def _reason_column_clash(c: Ctx) -> list[Any]:
    return c.job(c.write(c.data().assign(reason="x")), "--set", "validation.on_invalid=quarantine")


CASES: dict[str, tuple[Callable[[Ctx], list[Any]], list[str]]] = {
    "renamed-column": (_renamed_column, ["lacks column(s) ['sex']", "did you mean 'sexe' for 'sex'?"]),
    "number-in-string-column": (_number_in_string_column, ["'island' is tinyint", "takes strings"]),
    "timestamp-in-numeric-column": (_timestamp_in_numeric_column, ["'year' is timestamp", "takes numbers"]),
    "zero-rows": (_zero_rows, ["has no rows; nothing to score"]),
    "corrupt-file-among-good": (
        _corrupt_file_among_good, ["is not Parquet: part-9.parquet", "remove or replace that file"]
    ),
    "mixed-schema-types": (
        _mixed_schema_types, ["disagree on column 'body_mass_g' (numbers in", "strings in"]
    ),
    "mixed-schema-missing-column": (
        _mixed_schema_missing_column, ["invalid row, row_id 100: year: null where the model needs a value"]
    ),
    "tampered-pickle": (_tampered_pickle, ["model.pkl", "sha256"]),
    "damaged-manifest": (_damaged_manifest, ["manifest.json is not valid JSON"]),
    "bundle-for-another-schema": (_bundle_for_another_schema, ["lacks column(s) ['petal_length', 'petal_width']"]),
    "unknown-conf-key-set": (_unknown_conf_key_set, ["unknown conf key 'output.partition'", "'output.partition_by'"]),
    "unknown-conf-key-toml": (_unknown_conf_key_toml, ["'validation.on_invalide'", "'validation.on_invalid'"]),
    "bad-on-invalid-value": (_bad_on_invalid, ["'validation.on_invalid' is 'skip'", "fail, null, quarantine"]),
    "output-parent-is-a-file": (_output_parent_is_a_file, ["cannot be written", "is a file"]),
    "output-under-proc": (_output_under_proc, ["'/proc/modelport-scores' cannot be written in '/proc'"]),
    "quarantine-output-exists": (_quarantine_exists, ["scores_quarantine", "exists", "output.mode is error"]),
    "cuda-on-a-cpu-node": (_cuda_on_cpu_node, ["execution.provider is cuda", "no CUDA", "allow_cpu_fallback"]),
    "invalid-null-in-int-input": (
        lambda c: _planted(c, 3), ["invalid row, row_id 3: year: null where the model needs a value"]
    ),
    "invalid-infinite": (lambda c: _planted(c, 7), ["row_id 7: bill_length_mm: Infinity is infinite"]),
    "invalid-out-of-range": (
        lambda c: _planted(c, 9), ["row_id 9: flipper_length_mm: 1.0E300 does not fit the model's float32"]
    ),
    "invalid-unseen-category": (
        lambda c: _planted(c, 11, c.strict), ["row_id 11: island: category 'Atlantis' was never seen"]
    ),
    "error-column-clash": (_error_column_clash, ["'error' would collide"]),
    "reason-column-clash": (_reason_column_clash, ["column 'reason', which the quarantine adds"]),
}  # fmt: skip


@pytest.fixture
def ctx(tmp_path: Path, penguins_bundle: Path, strict_bundle: Path, penguins_parquet: Path) -> Ctx:
    return Ctx(tmp_path, penguins_bundle, strict_bundle, penguins_parquet)


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input(spark: Any, capsys: pytest.CaptureFixture[str], ctx: Ctx, case: str) -> None:
    prepare, words = CASES[case]
    args = prepare(ctx)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        code, _, err = run(capsys, *args)
    assert code == 2, err
    assert_one_error(err, *words)
    # a warning pyspark prints is lines on a user's stderr before the one error line
    assert not [w for w in caught if "pyspark" in w.filename], [str(w.message) for w in caught]
    output = Path(str(args[args.index("--output") + 1]))
    assert_not_complete(output)
    assert_not_complete(Path(f"{output}_quarantine"))


@pytest.mark.parametrize(
    ("prepare", "words"),
    [
        (_corrupt_file_among_good,
         ["[FAILED_READ_FILE.", "part-9.parquet: corrupted file", "remove or replace"]),
        (_mixed_schema_types,
         ["PARQUET_COLUMN_DATA_TYPE_MISMATCH", "body_mass_g", "disagree on that column's type"]),
    ],
)  # fmt: skip
def test_a_file_spark_cannot_read_is_one_line_with_its_cause_and_fix(
    spark: Any, ctx: Ctx, prepare: Callable[[Ctx], list[Any]], words: list[str]
) -> None:
    """On a cluster filesystem the driver reads no footers, and the task fails: the job's line
    for Spark's real error (the cause Spark nests under its class, and what to do)."""
    from jobs._cli import spark_error

    args = prepare(ctx)
    source = args[args.index("--input") + 1]
    with pytest.raises(Exception) as info:
        spark.read.parquet(str(source)).select("body_mass_g").collect()
    message = str(spark_error(info.value))
    assert "\n" not in message and message.startswith("spark: "), message
    for word in words:
        assert word in message, message


def test_a_failed_query_logs_no_trace_in_a_job_s_session(
    spark: Any, ctx: Ctx, capfd: pytest.CaptureFixture[str]
) -> None:
    """PySpark logs a failed query's JVM trace as a JSON line on stderr before it raises (make
    compare printed 8 KB of it per failing engine); a job's session leaves stderr to the job."""
    from pyspark.sql import functions as F

    from jobs.scoring.session import build_session
    from jobs.scoring.settings import load_settings

    build_session(load_settings(None))  # the test session is active: it is the one returned
    df = spark.read.parquet(str(ctx.parquet))
    capfd.readouterr()
    with pytest.raises(Exception, match="UNRESOLVED_COLUMN"):
        df.select(F.col("no_such_column"))
    assert "DataFrameQueryContextLogger" not in capfd.readouterr().err


# --- cases before any task: nothing but the schema read -------------------------------------
@pytest.mark.parametrize(
    ("change", "words"),
    [
        ("drop sex", ["lacks column(s) ['sex']"]),
        ("string mass", ["'body_mass_g' is string", "takes numbers", "on_invalid"]),
    ],
)
def test_bad_columns_before_any_task(
    spark: Any,
    capsys: pytest.CaptureFixture[str],
    ctx: Ctx,
    change: str,
    words: list[str],
) -> None:
    data = ctx.data(100)
    if change == "drop sex":
        data = data.drop(columns="sex")
    else:
        data["body_mass_g"] = data["body_mass_g"].astype(str)
    source, out = ctx.write(data), ctx.tmp / "scores"
    sc = spark.sparkContext
    sc.setJobGroup("bad-columns", "the job on bad columns")
    code, _, err = run(capsys, *ctx.job(source))
    sc.setJobGroup("read-only", "reading the schema alone")
    spark.read.parquet(str(source))
    sc.setJobGroup("", "")
    assert code == 2
    assert_one_error(err, *words)
    # no more Spark jobs than reading the Parquet schema takes: nothing sampled or scored
    tracker = sc.statusTracker()
    assert len(tracker.getJobIdsForGroup("bad-columns")) <= len(
        tracker.getJobIdsForGroup("read-only")
    )
    assert not out.exists()


def test_extra_columns_are_fine(
    spark: Any, capsys: pytest.CaptureFixture[str], ctx: Ctx
) -> None:
    data = ctx.data(300).assign(note="extra", weight_kg=lambda d: d["body_mass_g"] / 1000)
    out = ctx.tmp / "scores"
    code, _, err = run(capsys, *ctx.job(ctx.write(data), "--set", 'output.passthrough=["note"]'))
    assert code == 0, err
    scored = pd.read_parquet(out)
    assert list(scored.columns[:2]) == ["row_id", "note"] and "weight_kg" not in scored.columns
    assert_matches_pickle(scored, pickle_predictions(ctx.bundle, data))


# --- a fresh process: starting Spark, and what the executors log ----------------------------
def _job_process(args: list[Any], env: dict[str, str], timeout: int = 90) -> tuple[int, str, float]:
    start = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "jobs.score", *[str(a) for a in args]],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip
    return done.returncode, done.stderr, time.monotonic() - start


def _env(**changes: str | None) -> dict[str, str]:
    env = {**os.environ, "PYSPARK_PYTHON": sys.executable, "SPARK_LOCAL_IP": "127.0.0.1"}
    for key, value in changes.items():
        env.pop(key, None) if value is None else env.__setitem__(key, value)
    return env


def _noise_free(stderr: str) -> str:
    """Spark's progress bar and the JVM's fixed incubator-module notice are not messages."""
    lines = stderr.replace("\r", "\n").splitlines()
    kept = [ln for ln in lines if not ln.lstrip().startswith("[Stage")
            and "Using incubator modules" not in ln]  # fmt: skip
    return "\n".join(kept)


@pytest.mark.parametrize(
    ("master", "words"),
    [
        ("nonsense://x", ["spark.master 'nonsense://x' is not a Spark master URL"]),
        ("spark://127.0.0.1:1", ["spark.master 'spark://127.0.0.1:1' does not answer"]),
    ],
)
def test_bad_master_fails_fast(ctx: Ctx, master: str, words: list[str]) -> None:
    props = ctx.tmp / "spark.conf"
    props.write_text(f"spark.master {master}\n")
    code, err, seconds = _job_process(
        [*ctx.job(ctx.parquet), "--set", f"spark.properties={props}"], _env()
    )
    assert code == 2
    assert_one_error(_noise_free(err), *words)
    assert seconds < 30  # an unreachable standalone master otherwise blocks for a minute
    assert not (ctx.tmp / "scores").exists()


def test_no_java_for_the_score_job(ctx: Ctx) -> None:
    code, err, _ = _job_process(ctx.job(ctx.parquet), _env(PATH="/nonexistent", JAVA_HOME=None))
    assert code == 2
    assert_one_error(err, "Java was not found", "JAVA_HOME")
    assert not (ctx.tmp / "scores").exists()


def test_no_java_for_a_pmml_export(ctx: Ctx) -> None:
    """The score job itself needs no PMML; exporting one does, and says so before any work."""
    out = ctx.tmp / "pmml-bundle"
    done = subprocess.run(
        [sys.executable, "-m", "formats", "save", str(ctx.bundle / "model.pkl"),
         "--sample", str(ctx.bundle / "input_example.parquet"), "-o", str(out),
         "--formats", "pickle,pmml"],
        cwd=ROOT, env=_env(PATH="/nonexistent", JAVA_HOME=None), capture_output=True,
        text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 2
    assert_one_error(done.stderr, "Java was not found")
    assert not out.exists() and not list(ctx.tmp.glob(".pmml-bundle.*"))


def test_invalid_row_in_a_fresh_job_is_one_line_not_executor_traces(ctx: Ctx) -> None:
    """The executors log the failed task too: with the job's log4j2 setup, without a trace."""
    code, err, _ = _job_process(
        ["--conf", ROOT / "conf" / "local.toml", *_planted(ctx, 5, ctx.strict)], _env()
    )
    assert code == 2
    text = _noise_free(err)
    assert not [ln for ln in text.splitlines() if ln.startswith("\tat ") or "Traceback" in ln], err
    errors = [ln for ln in text.splitlines() if ln.startswith("error: ")]
    assert errors == [
        "error: invalid row, row_id 5: island: null where the model needs a value; set "
        'validation.on_invalid = "null" or "quarantine" to score the other rows'
    ], err
    assert_not_complete(ctx.tmp / "scores")

