"""The score job end to end: ``main([...])`` in this process (on the shared session),
``python -m jobs.score`` and ``spark-submit jobs/score.py`` as subprocesses, and every bad input
answered with one ``error: ...`` line, exit 2 (1 for the parity gate), and no output marked
complete. The bad-input corpus (columns, types, files, conf, master, Java, CUDA, invalid rows)
is tests/test_bad_input_corpus.py.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

import formats
from jobs.score import main
from jobs.scoring.output.summary import SUMMARY_NAME
from tests.conftest import FEATURES

ROOT = Path(__file__).resolve().parents[1]
CLASSES = ["Adelie", "Chinstrap", "Gentoo"]


def run(capsys: pytest.CaptureFixture[str], *args: Any) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_error(err: str, *words: str) -> None:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    for word in words:
        assert word in lines[0], lines[0]


def assert_not_complete(output: Path) -> None:
    assert not (output / "_SUCCESS").exists()
    assert not (output / SUMMARY_NAME).exists()


def assert_matches_pickle(output: Path, source: Path, bundle: Path, rows: int) -> None:
    """Every input row scored once; a sample agrees with the pickle (joined on row_id)."""
    scored = pd.read_parquet(output)
    assert len(scored) == rows and scored["row_id"].nunique() == rows
    data = pd.read_parquet(source).sample(500, random_state=0)
    want = formats.load(bundle, "pickle").predict(data[FEATURES])
    want.index = data["row_id"].to_numpy()
    got = scored.set_index("row_id").loc[want.index]
    assert (got["label"].to_numpy() == want["label"].to_numpy()).all()
    for cls in CLASSES:
        np.testing.assert_allclose(got[f"proba_{cls}"], want[f"proba_{cls}"], atol=1e-5, rtol=0)


def summary_of(output: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((output / SUMMARY_NAME).read_text())
    return data


def test_job_scores_writes_and_summarises(
    spark: Any,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    penguins_bundle: Path,
    penguins_parquet: Path,
) -> None:
    out = tmp_path / "scores"
    code, stdout, err = run(
        capsys, "--bundle", penguins_bundle, "--input", penguins_parquet, "--output", out
    )
    assert code == 0, err
    assert (out / "_SUCCESS").exists()
    assert_matches_pickle(out, penguins_parquet, penguins_bundle, 6000)
    summary = summary_of(out)
    assert summary["rows_in"] == summary["rows_scored"] == 6000 and summary["rows_invalid"] == 0
    assert summary["provider"] == "CPUExecutionProvider"
    assert summary["model_sha256"] == formats.Bundle.open(penguins_bundle).manifest.sha256
    assert summary["ort_sessions"] == summary["worker_processes"] >= 1
    assert summary["parity"]["rows"] == 1000 and summary["parity"]["label_agreement"] == 1.0
    assert summary["rows_per_second"] > 0
    # codes and numbers only cross to Python: Spark's per-row batch size check is skipped,
    # and the session's own setting is back after the job
    assert "Spark's per-row size check skipped" in summary["arrow_batches"]
    assert spark.conf.get("spark.sql.execution.arrow.maxBytesPerBatch", None) is None
    assert "rows scored" in stdout and "CPUExecutionProvider" in stdout
    # a local output: the workers wrote it (jobs.scoring.output.arrow), and nothing staged is left
    assert summary["writer"].startswith("pyarrow in the Python workers")
    assert not (out / "_temporary").exists()

    # append adds the rows again (and a fresh summary); overwrite replaces them
    code, _, err = run(
        capsys, "--bundle", penguins_bundle, "--input", penguins_parquet, "--output", out,
        "--set", "output.mode=append", "--set", "job.parity_gate=false",
    )  # fmt: skip
    assert code == 0, err
    assert len(pd.read_parquet(out)) == 12000 and summary_of(out)["parity"] is None
    code, _, err = run(
        capsys, "--bundle", penguins_bundle, "--input", penguins_parquet, "--output", out,
        "--set", "output.mode=overwrite", "--set", 'output.partition_by=["label"]',
        "--set", "output.model_columns=true",
    )  # fmt: skip
    assert code == 0, err
    assert sorted(p.name for p in out.glob("label=*")) == [f"label={c}" for c in CLASSES]
    assert summary_of(out)["writer"] == "Spark's writer (output.partition_by is set)"
    again = pd.read_parquet(out)
    assert len(again) == 6000 and set(again["model_version"]) == {"1"}


@pytest.mark.parametrize(
    ("pattern", "days"),
    [
        ("dt=2026-{11-30,12-02}", [0, 2]),  # Hadoop's alternatives
        ("dt=2026-12-0[^1]", [2]),  # Hadoop's negated class (Python's is [!...])
        ("dt=2026-1*", [0, 1, 2]),
        ("*", [0, 1, 2]),  # matches _SUCCESS too, which Spark skips
    ],
)
def test_a_glob_pattern_input_scores_what_it_matches(
    spark: Any, capsys: pytest.CaptureFixture[str], tmp_path: Path, penguins_bundle: Path,
    penguins_parquet: Path, pattern: str, days: list[int],
) -> None:  # fmt: skip
    """spark.read.parquet takes Hadoop patterns; the job's checks used to call one missing."""
    parts = sorted(penguins_parquet.glob("*.parquet"))
    for part, day in zip(parts, ["dt=2026-11-30", "dt=2026-12-01", "dt=2026-12-02"], strict=True):
        (tmp_path / "days" / day).mkdir(parents=True)
        shutil.copy(part, tmp_path / "days" / day / part.name)
    (tmp_path / "days" / "_SUCCESS").touch()
    out = tmp_path / "scores"
    code, _, err = run(capsys, "--bundle", penguins_bundle, "--input",
                       f"{tmp_path / 'days'}/{pattern}", "--output", out)  # fmt: skip
    assert code == 0, err
    data = pd.concat([pd.read_parquet(parts[d]) for d in days])
    scored = pd.read_parquet(out).set_index("row_id")
    assert sorted(scored.index) == sorted(data["row_id"])  # every matched row once, no other
    want = formats.load(penguins_bundle, "pickle").predict(data[FEATURES])
    assert (scored.loc[data["row_id"], "label"].to_numpy() == want["label"].to_numpy()).all()
    assert summary_of(out)["rows_scored"] == len(data)

    code, _, err = run(capsys, "--bundle", penguins_bundle, "--input",
                       f"{tmp_path / 'days'}/dt=2025-*", "--output", tmp_path / "none")  # fmt: skip
    assert code == 2
    assert_one_error(err, "dt=2025-*' matches nothing")


@pytest.mark.parametrize("writer", ["auto", "spark"])
def test_an_empty_input_is_an_error_unless_allowed(
    spark: Any, capsys: pytest.CaptureFixture[str], tmp_path: Path, penguins_bundle: Path,
    penguins_parquet: Path, writer: str,
) -> None:  # fmt: skip
    import pyarrow.parquet as pq

    empty = tmp_path / "input"
    empty.mkdir()
    first = sorted(penguins_parquet.glob("*.parquet"))[0]
    pq.write_table(pq.read_table(first).slice(0, 0), empty / "part-0.parquet")
    out = tmp_path / "scores"
    code, _, err = run(capsys, "--bundle", penguins_bundle, "--input", empty, "--output", out,
                       "--set", f"output.writer={writer}")  # fmt: skip
    assert code == 2
    assert_one_error(err, "has no rows", "job.allow_empty_input = true")
    assert not out.exists()

    code, _, err = run(capsys, "--bundle", penguins_bundle, "--input", empty, "--output", out,
                       "--set", f"output.writer={writer}",
                       "--set", "job.allow_empty_input=true")  # fmt: skip
    assert code == 0, err
    assert (out / "_SUCCESS").exists()  # complete, and readable with the job's schema
    scored = spark.read.parquet(str(out))
    assert scored.count() == 0
    assert scored.columns == ["row_id", "label", *[f"proba_{c}" for c in CLASSES]]
    summary = summary_of(out)
    assert summary["rows_in"] == summary["rows_scored"] == 0 and summary["parity"] is None


def test_a_hist_gradient_boosting_bundle_scores_the_generated_data(
    spark: Any, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """``make export MODEL=hgb`` then the job on ``make data``'s rows: the float32 model the
    export wrote before flipped splits on values such as 42.300000000000004, and the parity
    gate refused to score. Every row now agrees with the pickle."""
    from jobs.datagen import generate
    from jobs.export import main as export_main

    bundle, data, out = tmp_path / "hgb", tmp_path / "data", tmp_path / "scores"
    assert export_main(["--output", str(bundle), "--model", "hgb"]) == 0
    generate(6000, data, seed=42)
    code, _, err = run(capsys, "--bundle", bundle, "--input", data, "--output", out)
    assert code == 0, err
    scored = pd.read_parquet(out).set_index("row_id")
    frame = pd.read_parquet(data)
    want = formats.load(bundle, "pickle").predict(frame)
    got = scored.loc[frame["row_id"]]
    assert len(scored) == len(frame)
    assert (got["label"].to_numpy() == want["label"].to_numpy()).all()
    for cls in CLASSES:
        np.testing.assert_allclose(got[f"proba_{cls}"], want[f"proba_{cls}"], atol=1e-5, rtol=0)


def test_decimal_feature_columns_are_numbers(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, penguins_bundle: Path,
    penguins_parquet: Path,
) -> None:  # fmt: skip
    """DECIMAL columns (a database's, Hive's) feed numeric inputs: the parity gate takes them
    (toPandas makes them Decimal objects) and the scores are the pickle's on the same values."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    table = pq.read_table(penguins_parquet)
    numeric = [f.name for f in table.schema if f.name in FEATURES and pa.types.is_floating(f.type)]
    assert numeric
    floats, decimals = table, table
    for name in numeric:
        i = table.schema.get_field_index(name)
        rounded = pc.round(table.column(name), 2)
        floats = floats.set_column(i, name, rounded)
        decimals = decimals.set_column(i, name, pc.cast(rounded, pa.decimal128(12, 2)))
    for where, data in (("floats", floats), ("decimals", decimals)):
        (tmp_path / where).mkdir()
        pq.write_table(data, tmp_path / where / "part-0.parquet")
    out = tmp_path / "scores"
    code, _, err = run(capsys, "--bundle", penguins_bundle, "--input", tmp_path / "decimals",
                       "--output", out)  # fmt: skip
    assert code == 0, err
    assert summary_of(out)["parity"]["label_agreement"] == 1.0
    assert_matches_pickle(out, tmp_path / "floats", penguins_bundle, 6000)


def test_columns_named_in_another_case_are_scored_as_spark_resolves_them(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, penguins_bundle: Path,
    penguins_parquet: Path,
) -> None:  # fmt: skip
    """An upper-case export (a database's) is read as Spark reads it, case-insensitively: the
    parity gate, the invalid-row rules, the quarantine and the scores all find the columns."""
    data = pd.read_parquet(penguins_parquet)
    broken = data["row_id"].isin([3, 500, 4000])
    mass = data["body_mass_g"].where(~broken, float("inf"))  # never valid
    upper = data.assign(body_mass_g=mass).rename(columns=str.upper)
    (tmp_path / "in").mkdir()
    upper.to_parquet(tmp_path / "in" / "part-0.parquet")
    out = tmp_path / "scores"
    code, _, err = run(capsys, "--bundle", penguins_bundle, "--input", tmp_path / "in",
                       "--output", out, "--set", "validation.on_invalid=quarantine")  # fmt: skip
    assert code == 0, err
    summary = summary_of(out)
    assert summary["rows_scored"] == 5997 and summary["parity"]["label_agreement"] == 1.0
    scored = pd.read_parquet(out).rename(columns={"ROW_ID": "row_id"})
    assert sorted(scored["row_id"]) == sorted(data.loc[~broken, "row_id"])
    (tmp_path / "valid").mkdir()
    scored.to_parquet(tmp_path / "scored.parquet")
    data[~broken].to_parquet(tmp_path / "valid" / "part-0.parquet")
    assert_matches_pickle(tmp_path / "scored.parquet", tmp_path / "valid", penguins_bundle, 5997)
    kept = pd.read_parquet(tmp_path / "scores_quarantine")
    assert sorted(kept["ROW_ID"]) == [3, 500, 4000]
    assert set(kept["reason"]) == {"body_mass_g: Infinity is infinite; the model takes finite numbers"}


def _copy(bundle: Path, tmp_path: Path) -> Path:
    target = tmp_path / "bundle"
    shutil.copytree(bundle, target)
    return target


def _edit_manifest(bundle: Path, **changes: Any) -> None:
    manifest = json.loads((bundle / "manifest.json").read_text())
    manifest.update(changes)
    (bundle / "manifest.json").write_text(json.dumps(manifest))


def test_parity_gate_refuses_with_the_numbers(
    spark: Any,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    penguins_bundle: Path,
    penguins_parquet: Path,
) -> None:
    # No tolerance at all: the float32 ONNX probabilities differ from the pickle's float64 ones.
    bundle = _copy(penguins_bundle, tmp_path)
    _edit_manifest(bundle, tolerance={"labels": 1.0, "atol": 0.0, "rtol": 0.0})
    out = tmp_path / "scores"
    code, _, err = run(capsys, "--bundle", bundle, "--input", penguins_parquet, "--output", out)
    assert code == 1
    assert_one_error(err, "parity gate failed", "of 1000 sample rows", "max |diff|", "atol 0")
    assert not out.exists()


def _bad_bundle(kind: str, bundle: Path, tmp_path: Path) -> Path:
    if kind == "missing":
        return tmp_path / "no-such-bundle"
    copy = _copy(bundle, tmp_path)
    if kind == "no model.onnx file":
        (copy / "model.onnx").unlink()
    elif kind == "no onnx format":
        manifest = json.loads((copy / "manifest.json").read_text())
        del manifest["formats"]["onnx"], manifest["files"]["model.onnx"]
        (copy / "manifest.json").write_text(json.dumps(manifest))
    elif kind == "sha256 mismatch":
        with open(copy / "model.onnx", "ab") as fh:
            fh.write(b"\0")
    return copy


@pytest.mark.parametrize(
    ("kind", "words"),
    [
        ("missing", ["is not a bundle"]),
        ("no model.onnx file", ["has no model.onnx"]),
        ("no onnx format", ["no onnx format"]),
        ("sha256 mismatch", ["model.onnx", "sha256"]),
    ],
)
def test_bad_bundle(
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    penguins_bundle: Path,
    penguins_parquet: Path,
    kind: str,
    words: list[str],
) -> None:
    bundle = _bad_bundle(kind, penguins_bundle, tmp_path)
    out = tmp_path / "scores"
    code, _, err = run(capsys, "--bundle", bundle, "--input", penguins_parquet, "--output", out)
    assert code == 2
    assert_one_error(err, *words)
    assert not out.exists()


def _bad_input(kind: str, tmp_path: Path) -> Path:
    path = tmp_path / "input"
    if kind == "empty":
        path.mkdir()
        (path / "_SUCCESS").write_text("")  # metadata only: still no data
    elif kind == "not parquet":
        path.mkdir()
        (path / "part-0.parquet").write_text("row_id,island\n1,Dream\n")
    return path


@pytest.mark.parametrize(
    ("kind", "words"),
    [
        ("missing", ["does not exist"]),
        ("empty", ["holds no data files"]),
        ("not parquet", ["is not Parquet", "part-0.parquet"]),
    ],
)
def test_bad_input_path(
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    penguins_bundle: Path,
    kind: str,
    words: list[str],
) -> None:
    source = _bad_input(kind, tmp_path)
    out = tmp_path / "scores"
    code, _, err = run(capsys, "--bundle", penguins_bundle, "--input", source, "--output", out)
    assert code == 2
    assert_one_error(err, f"input {str(source)!r}", *words)
    assert not out.exists()


def _write(tmp_path: Path, data: pd.DataFrame) -> Path:
    path = tmp_path / "input"
    path.mkdir()
    data.to_parquet(path / "part-0.parquet", index=False)
    return path


def test_gpu_fallback_allowed_runs_on_cpu_and_says_so(
    spark: Any,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    penguins_bundle: Path,
    penguins_parquet: Path,
) -> None:
    out = tmp_path / "scores"
    code, _, err = run(
        capsys, "--conf", ROOT / "conf" / "gpu.toml", "--bundle", penguins_bundle,
        "--input", penguins_parquet, "--output", out,
        "--set", "execution.allow_cpu_fallback=true", "--set", "job.parity_gate=false",
    )  # fmt: skip
    assert code == 0, err
    assert summary_of(out)["provider"] == "CPUExecutionProvider"


def test_output_exists_with_mode_error(
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    penguins_bundle: Path,
    penguins_parquet: Path,
) -> None:
    out = tmp_path / "scores"
    out.mkdir()
    (out / "part-0.parquet").write_text("earlier")
    code, _, err = run(
        capsys, "--bundle", penguins_bundle, "--input", penguins_parquet, "--output", out
    )
    assert code == 2
    assert_one_error(err, "exists", "output.mode is error", "output.mode=overwrite")
    assert (out / "part-0.parquet").read_text() == "earlier"
    assert_not_complete(out)


def test_missing_flag_and_bad_flag(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "--input", "x", "--output", "y")
    assert code == 2
    assert_one_error(err, "no bundle: pass --bundle")
    code, _, err = run(capsys, "--bundel", "x")
    assert code == 2
    assert_one_error(err, "unrecognized arguments: --bundel x")


def test_an_executor_error_of_ours_is_one_line(
    spark: Any, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """A tensor model fed rows of the wrong length: found by the task, reported as ours."""
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])],
        "identity",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.save(model, tmp_path / "identity.onnx")
    from jobs.scoring.tensor import bundle_from_onnx

    bundle = bundle_from_onnx(tmp_path / "identity.onnx", tmp_path / "bundle")
    source = _write(tmp_path, pd.DataFrame({"x": [[1.0, 2.0, 3.0]] * 10}))
    out = tmp_path / "scores"
    code, _, err = run(
        capsys, "--bundle", bundle.location, "--input", source, "--output", out,
        "--set", "job.parity_gate=false",
    )  # fmt: skip
    assert code == 2
    assert_one_error(err, "the tensor input 'x' takes 4 values per row")
    assert_not_complete(out)


# --- subprocesses: a fresh JVM each, as a user runs the job ------------------------------------
def _env() -> dict[str, str]:
    return {**os.environ, "PYSPARK_PYTHON": sys.executable, "SPARK_LOCAL_IP": "127.0.0.1"}


def _noise_free(stderr: str) -> list[str]:
    """stderr without the progress bar and the JVM's one fixed incubator-module notice."""
    return [
        line
        for line in stderr.replace("\r", "\n").splitlines()
        if line.strip() and not line.lstrip().startswith("[Stage")
        and "Using incubator modules" not in line
    ]  # fmt: skip


def test_python_dash_m_from_another_directory(
    tmp_path: Path, penguins_bundle: Path, penguins_parquet: Path
) -> None:
    out = tmp_path / "scores"
    done = subprocess.run(
        [sys.executable, "-m", "jobs.score", "--conf", str(ROOT / "conf" / "local.toml"),
         "--bundle", str(penguins_bundle), "--input", str(penguins_parquet), "--output", str(out)],
        cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    # our log4j2.properties was found (Spark's default profile announces itself) and is quiet
    assert "default log4j profile" not in done.stderr
    assert _noise_free(done.stderr) == [], done.stderr
    assert "rows scored" in done.stdout
    assert_matches_pickle(out, penguins_parquet, penguins_bundle, 6000)
    assert summary_of(out)["rows_scored"] == 6000


def test_spark_submit(tmp_path: Path, penguins_bundle: Path, penguins_parquet: Path) -> None:
    import pyspark

    submit = Path(pyspark.__file__).parent / "bin" / "spark-submit"
    out = tmp_path / "scores"
    started = time.time()
    done = subprocess.run(
        [str(submit), "--properties-file", "conf/spark/local.conf",
         "--conf", "spark.ui.enabled=false", "--conf", "spark.ui.showConsoleProgress=false",
         "jobs/score.py", "--conf", "conf/local.toml", "--bundle", str(penguins_bundle),
         "--input", str(penguins_parquet), "--output", str(out),
         "--set", "output.model_columns=true"],
        cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert _noise_free(done.stderr) == [], done.stderr
    assert_matches_pickle(out, penguins_parquet, penguins_bundle, 6000)
    summary = summary_of(out)
    assert summary["provider"] == "CPUExecutionProvider"
    assert summary["ort_sessions"] == summary["worker_processes"]
    assert set(pd.read_parquet(out, columns=["model_sha256"])["model_sha256"]) == {
        summary["model_sha256"]
    }
    # the run's clock starts with spark-submit's JVM, before the Python driver existed, and
    # its phases add up to it
    elapsed = time.time() - started
    phases = summary["phases"]
    assert list(phases) == ["start", "checks before Spark", "session", "checks", "parity gate",
                            "score and write"]  # fmt: skip
    assert summary["wall_seconds"] == pytest.approx(sum(phases.values()), abs=0.01)
    assert 0 < summary["wall_seconds"] <= elapsed
    assert phases["score and write"] == summary["seconds"]
