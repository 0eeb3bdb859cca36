"""The score job and the public UDF on Spark Connect (an ``sc://`` session: no SparkContext, so
no broadcast), against pyspark's own Connect server on 127.0.0.1.

The clients run as subprocesses: a Connect session marks its whole process as remote
(SPARK_CONNECT_MODE_ENABLED), which would turn the suite's local session's columns and
functions into Connect ones for every test after it.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from jobs.localcluster import procs as _procs
from jobs.localcluster.cluster import spark_env
from tests.spark_procs import connect_server
from tests.test_score_job import assert_matches_pickle, assert_one_error, run, summary_of

ROOT = Path(__file__).resolve().parents[1]
CLIENT = r"""
import hashlib, json, os, sys
import pyarrow as pa
from pyspark.sql import SparkSession
from jobs.scoring.session import is_connect, share_bytes
from jobs.udf import input_columns, onnx_udf

url, bundle, source, out = sys.argv[1:5]
spark = SparkSession.builder.remote(url).getOrCreate()
try:
    spark.sparkContext
    no_context = ""
except Exception as exc:
    no_context = str(exc)

data = os.urandom(3_000_000)  # larger than a model: ship it, read it back on every task
load = share_bytes(spark, data)

def digest(batches):
    seen = hashlib.sha256(load()).hexdigest()
    for batch in batches:
        yield pa.RecordBatch.from_pydict({"d": [seen] * batch.num_rows})

digests = {r.d for r in spark.range(0, 40, numPartitions=4).mapInArrow(digest, "d string").collect()}
score = onnx_udf(spark, bundle)
df = spark.read.parquet(source)
scored = df.withColumn("s", score(*input_columns(bundle))).select("row_id", "s.*")
frame = scored.toPandas()
frame.attrs = {}  # Connect puts its plan metrics here; pandas cannot write them to Parquet
frame.to_parquet(out, index=False)
print(json.dumps({
    "connect": is_connect(spark), "no_context": no_context, "loader": type(load).__name__,
    "digests": sorted(digests), "want": hashlib.sha256(data).hexdigest(),
}))
"""


@pytest.fixture(scope="module")
def connect_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = _procs.free_port()
    with connect_server(tmp_path_factory.mktemp("connect"), port):
        yield f"sc://127.0.0.1:{port}"


def _python(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in spark_env().items() if not k.startswith("PYSPARK_GATEWAY")}
    env["PYTHONPATH"] = str(ROOT)
    return subprocess.run(
        [sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )


def test_score_job_on_spark_connect(
    connect_url: str, tmp_path: Path, penguins_bundle: Path, penguins_parquet: Path
) -> None:
    out = tmp_path / "scores"
    done = _python(
        "-m", "jobs.score", "--conf", str(ROOT / "conf" / "local.toml"),
        "--bundle", str(penguins_bundle), "--input", str(penguins_parquet), "--output", str(out),
        "--set", f"spark.remote={connect_url}", "--set", "output.model_columns=true",
        cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert_matches_pickle(out, penguins_parquet, penguins_bundle, 6000)
    summary = summary_of(out)
    assert summary["rows_in"] == summary["rows_scored"] == 6000
    assert summary["provider"] == "CPUExecutionProvider"
    assert summary["ort_sessions"] == summary["worker_processes"] >= 1
    assert summary["parity"]["label_agreement"] == 1.0
    assert set(pd.read_parquet(out, columns=["model_sha256"])["model_sha256"]) == {
        summary["model_sha256"]
    }
    # this client may not see the executors' files: auto left the write to Spark's writer;
    # here they share one machine, and the workers' writer asked for commits the same rows
    assert summary["writer"].startswith("Spark's writer (a Spark Connect client")
    both = tmp_path / "scores-arrow"
    done = _python(
        "-m", "jobs.score", "--conf", str(ROOT / "conf" / "local.toml"),
        "--bundle", str(penguins_bundle), "--input", str(penguins_parquet), "--output", str(both),
        "--set", f"spark.remote={connect_url}", "--set", "output.writer=arrow",
        "--set", "job.parity_gate=false", cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert_matches_pickle(both, penguins_parquet, penguins_bundle, 6000)
    assert summary_of(both)["writer"].startswith("pyarrow in the Python workers")
    # no JVM in this client: an overwrite of what a pattern reads is refused on local paths
    days = tmp_path / "days"
    shutil.copytree(penguins_parquet, days / "dt=2026-12-01")
    done = _python(
        "-m", "jobs.score", "--conf", str(ROOT / "conf" / "local.toml"),
        "--bundle", str(penguins_bundle), "--input", f"{days}/dt=*", "--output", str(days),
        "--set", f"spark.remote={connect_url}", "--set", "output.mode=overwrite", cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 2 and "is (or holds) the input" in done.stderr, done.stderr[-3000:]
    assert len(list((days / "dt=2026-12-01").glob("*.parquet"))) == 3


def test_public_udf_and_shipped_bytes_on_spark_connect(
    connect_url: str, tmp_path: Path, penguins_bundle: Path, penguins_parquet: Path
) -> None:
    script = tmp_path / "client.py"
    script.write_text(CLIENT)
    out = tmp_path / "udf.parquet"
    done = _python(
        str(script), connect_url, str(penguins_bundle), str(penguins_parquet), str(out),
        cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    got = json.loads(done.stdout.strip().splitlines()[-1])
    assert got["connect"] is True
    assert "JVM_ATTRIBUTE_NOT_SUPPORTED" in got["no_context"]  # why broadcast cannot be used
    # shipped as a session artifact, and every task read exactly those bytes back
    assert got["loader"] == "_SparkFile"
    assert got["digests"] == [got["want"]]
    # the public UDF on Connect agrees with the pickle (same check as the job's output)
    scored = tmp_path / "udf"
    scored.mkdir()
    (scored / "part-0.parquet").write_bytes(out.read_bytes())
    assert_matches_pickle(scored, penguins_parquet, penguins_bundle, 6000)


def test_a_remote_that_is_not_a_connect_url_is_one_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, penguins_bundle: Path, penguins_parquet: Path
) -> None:
    out = tmp_path / "scores"
    code, _, err = run(
        capsys, "--bundle", penguins_bundle, "--input", penguins_parquet, "--output", out,
        "--set", "spark.remote=http://127.0.0.1:15002",
    )  # fmt: skip
    assert code == 2
    assert_one_error(err, "spark.remote is 'http://127.0.0.1:15002'", "sc://host:port")
    assert not out.exists()
