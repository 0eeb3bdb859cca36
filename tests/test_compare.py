"""``formats compare`` on the real default pipeline (a random forest on the penguins, all four
formats), with tiny settings: real child processes, real JVMs, real Node.js, real Chromium.

The caches (the older-scikit-learn venv, onnxruntime-node) live where ``make compare`` keeps
them (``.cache/compare``, or $MODELPORT_COMPARE_CACHE), so only a first run installs them.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

import formats
from formats.compare import (
    CompareOptions,
    CompareReport,
    compare,
    portability,
    security,
    write_reports,
)
from formats.compare.results import Cell
from formats.sklearn_formats import load_pickle

ROOT = Path(__file__).resolve().parents[1]
CACHE = Path(os.environ.get("MODELPORT_COMPARE_CACHE", ROOT / ".cache" / "compare"))
TINY = CompareOptions(batch_sizes=(1, 50), repeats=1, latency_rows=10, parity_rows=300,
                      min_seconds=0.05, old_sklearn=None, cache_dir=str(CACHE))  # fmt: skip


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from jobs.export import train

    model, x_train = train("rf")
    path = tmp_path_factory.mktemp("compare") / "penguins"
    formats.save(model, path, sample=x_train, name="penguins-rf")
    return path


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from jobs.datagen import generate

    path = tmp_path_factory.mktemp("compare-data") / "penguins"
    generate(2000, path)
    return path


@pytest.fixture(scope="module")
def report(bundle: Path, data: Path) -> CompareReport:
    return compare(bundle, data, TINY)


def _rows(data: Path) -> pd.DataFrame:
    return pd.read_parquet(data).head(TINY.parity_rows)


def test_every_engine_is_measured(report: CompareReport) -> None:
    assert [e.key for e in report.engines] == [
        "pickle/sklearn", "skops/sklearn", "pmml/pypmml", "pmml/jpmml", "onnx/onnxruntime"]
    for e in report.engines:
        assert e.status == "measured", e.reason
        assert e.file_bytes and e.gzip_bytes and e.gzip_bytes < e.file_bytes
        assert e.save_seconds and e.save_seconds > 0 and e.load_seconds and e.load_seconds > 0
        assert [t.batch for t in e.throughput] == [1, 50]
        assert all(t.rows_per_s > 0 and t.calls >= 1 for t in e.throughput)
        assert e.latency_p50_ms is not None and e.latency_p99_ms is not None
        assert 0 < e.latency_p50_ms <= e.latency_p99_ms and e.latency_samples == 10
        assert e.rss_python_mb and e.rss_python_mb > 50
        # The JVM engines' memory is a separate process: found, and only for them.
        assert (e.rss_jvm_mb is not None and e.rss_jvm_mb > 20) == (e.fmt == "pmml")


def test_parity_column_is_formats_parity(report: CompareReport, bundle: Path, data: Path) -> None:
    # the same Parquet rows, read by parity as the comparison reads them
    truth = formats.parity(bundle, data, formats=["skops", "pmml", "onnx"], rows=TINY.parity_rows)
    for p in truth.results:
        e = report.engine(p.fmt, p.engine)
        assert e is not None and e.parity == p.status
        assert e.label_agreement == p.label_agreement
        assert e.max_abs == max(o.max_abs for o in p.outputs)
    pickle = report.engine("pickle", "sklearn")
    assert pickle is not None and pickle.parity == "original"


def test_node_scores_the_onnx_model_like_the_original(bundle: Path, data: Path) -> None:
    rows = _rows(data)
    got, info = portability.node_onnx(formats.Bundle.open(bundle), rows, CACHE)
    want = formats.load(bundle, "pickle").predict(rows)
    assert info["node"].startswith("v") and len(got) == len(rows)
    assert (got["label"].to_numpy() == want["label"].to_numpy()).all()
    proba = [c for c in want.columns if c.startswith("proba_")]
    assert np.abs(got[proba].to_numpy() - want[proba].to_numpy()).max() <= 1e-5


def test_portability_cells(report: CompareReport) -> None:
    cells = {c.fmt: c for c in report.portability}
    assert set(cells) == {"pmml", "onnx"}  # the older scikit-learn is off in TINY
    assert cells["onnx"].status == "ok" and cells["onnx"].rows == TINY.parity_rows
    assert cells["onnx"].max_abs is not None and cells["onnx"].max_abs <= 1e-5
    assert cells["pmml"].status in ("ok", "differs") and cells["pmml"].rows == TINY.parity_rows


def test_node_missing_says_what_to_install(bundle: Path, data: Path, tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    monkeypatch.setenv("PATH", str(tmp_path))
    b = formats.Bundle.open(bundle)
    rows = _rows(data).head(5)
    cell = portability.node_onnx_cell(b, rows, formats.load(b, "pickle").predict(rows), tmp_path)
    assert cell.status == "missing" and "install Node.js" in cell.summary


def test_requirements(report: CompareReport) -> None:
    needs = {(r.fmt, r.engine): r for r in report.requirements}
    names = {k: {p.name.lower() for p in r.packages} for k, r in needs.items()}
    assert {"scikit-learn", "numpy", "scipy", "joblib"} <= names[("pickle", "sklearn")]
    assert "skops" in names[("skops", "sklearn")]
    assert "onnxruntime" in names[("onnx", "onnxruntime")]
    assert "scikit-learn" not in names[("onnx", "onnxruntime")]
    assert needs[("pmml", "pypmml")].runtime.startswith("Java: openjdk")
    assert all(r.package_bytes > 0 for r in report.requirements)


def test_security_canaries(bundle: Path, tmp_path: Path) -> None:
    marker = tmp_path / "m"
    load_pickle(security.canary_pickle(marker))
    assert marker.exists()  # loading a pickle runs code
    b = formats.Bundle.open(bundle)
    rows = pd.read_parquet(bundle / "input_example.parquet").head(3)
    checks = {s.fmt: s for s in security.checks(b, rows, ["pickle", "skops", "pmml", "onnx"])}
    assert checks["pickle"].runs_code
    assert not checks["skops"].runs_code and "refused" in checks["skops"].evidence
    for fmt in ("pmml", "onnx"):
        found = tmp_path / f"{fmt}"
        found.mkdir()
        check = {"pmml": security.pmml_check, "onnx": security.onnx_check}[fmt](b, rows, found)
        assert check.measured and not check.runs_code
        assert not (found / f"{fmt}.marker").exists()


def test_recommendation_follows_the_target(report: CompareReport) -> None:
    rec = report.recommendation
    assert rec.target == "any" and rec.fmt in ("onnx", "pmml")
    kept = [r for r in rec.ranking if r["kept"]]
    assert (kept[0]["fmt"], kept[0]["engine"]) == (rec.fmt, rec.engine)
    assert all(r["fmt"] in ("onnx", "pmml") for r in kept)


def test_reports_written_and_chromium_draws_the_plots(report: CompareReport, tmp_path: Path) -> None:
    written = write_reports(report, tmp_path / "out")
    md = written["report.md"].read_text()
    assert md.startswith("# Format comparison: penguins-rf") and "## Recommendation" in md
    assert "not measured: run `make compare` with Spark" in md
    assert CompareReport.from_dict(json.loads(written["report.json"].read_text()))
    html = written["report.html"].read_text()
    assert "http://" not in html.replace('xmlns="http://www.w3.org/2000/svg"', "")
    chromium = _chromium()
    with tempfile.TemporaryDirectory() as profile:
        dom = subprocess.run(
            [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
             "--no-first-run", "--disable-background-networking", "--disable-component-update",
             "--disable-sync", f"--user-data-dir={profile}", "--dump-dom",
             written["report.html"].as_uri()],
            capture_output=True, text=True, timeout=120,
        ).stdout  # fmt: skip
    ids = set(re.findall(r'<svg class="plot" id="plot-([a-z]+)"', dom))
    assert ids == {"throughput", "load", "size", "spark", "parity"}
    throughput = dom[dom.index('id="plot-throughput"') :].split("</svg>")[0]
    assert throughput.count("<path") == len(report.engines)  # one line per engine


def _chromium() -> str:
    found = shutil.which("chromium")
    if found is None and shutil.which("apt-get") and os.geteuid() == 0:
        subprocess.run("apt-get update -qq && apt-get install -y -qq chromium", shell=True,
                       capture_output=True, timeout=600)  # fmt: skip
        found = shutil.which("chromium")
    if found is None:
        pytest.skip("Chromium is not installed and could not be (apt-get install -y chromium)")
    return found


def _cli(args: list[Any]) -> Any:
    from formats.cli import cli

    return CliRunner().invoke(cli, ["compare", *map(str, args)])


def test_data_without_the_model_columns_is_one_line_exit_2(bundle: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.parquet"
    pd.read_parquet(bundle / "input_example.parquet").drop(columns="island").to_parquet(bad)
    result = _cli([bundle, "--data", bad, "--out", tmp_path / "o"])
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "'island'" in lines[0]
    assert not (tmp_path / "o").exists()


def test_a_format_that_failed_reads_not_saved(data: Path, tmp_path: Path) -> None:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import FunctionTransformer

    x = pd.read_parquet(data)[["bill_length_mm", "flipper_length_mm"]].fillna(40.0)
    model = Pipeline([("log", FunctionTransformer(np.log1p)),
                      ("model", LogisticRegression(max_iter=500))]).fit(x, x["bill_length_mm"] > 44)
    b = formats.save(model, tmp_path / "b", sample=x, formats=("pickle", "onnx"))
    reason = b.manifest.formats["onnx"].why_not()
    result = _cli([tmp_path / "b", "--data", data, "--out", tmp_path / "o", "--batch-sizes", "1,10",
                   "--repeats", "1", "--latency-rows", "5", "--parity-rows", "50",
                   "--min-seconds", "0.01", "--no-old-sklearn", "--no-node",
                   "--cache", CACHE])  # fmt: skip
    assert result.exit_code == 0, result.output + result.stderr
    md = (tmp_path / "o" / "report.md").read_text()
    assert reason.startswith("not saved") and "FunctionTransformer" in reason and reason in md
    assert "not saved: not in the bundle" in md  # skops and PMML were never asked for


def test_java_missing_empties_the_pmml_cells_only(bundle: Path, data: Path, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "JAVA_HOME"}
    env["PATH"] = str(tmp_path)  # no java, no node
    command = [sys.executable, "-m", "formats", "compare", str(bundle), "--data", str(data),
               "--out", str(tmp_path / "o"), "--formats", "pmml,onnx", "--batch-sizes", "1,10",
               "--repeats", "1", "--latency-rows", "5", "--parity-rows", "50",
               "--min-seconds", "0.01", "--no-old-sklearn", "--no-node", "--cache", str(CACHE),
               "--json", str(tmp_path / "r.json")]  # fmt: skip
    proc = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr
    report = CompareReport.from_dict(json.loads((tmp_path / "r.json").read_text()))
    for engine in ("pypmml", "jpmml"):
        e = report.engine("pmml", engine)
        assert e is not None and e.status == "error"
        assert "Java was not found" in e.reason and "apt-get install" in e.reason
    onnx = report.engine("onnx", "onnxruntime")
    assert onnx is not None and onnx.status == "measured" and onnx.parity == "pass"
    pmml_cell = next(c for c in report.portability if c.fmt == "pmml")
    assert pmml_cell.status == "missing" and "apt-get install" in pmml_cell.summary
    assert report.recommendation.fmt == "onnx"


def test_pickle_in_an_older_scikit_learn(bundle: Path, data: Path) -> None:
    version = "1.6.1"
    b = formats.Bundle.open(bundle)
    rows = _rows(data)
    cell: Cell = portability.old_sklearn_cell(
        b, rows, formats.load(b, "pickle").predict(rows), version, CACHE
    )
    if cell.status == "missing":
        pytest.skip(cell.summary)  # no network to build the venv: the cell says what to run
    assert cell.details["sklearn"] == version
    # 1.6.1 unpickles a 1.9 forest with InconsistentVersionWarning and the same predictions.
    assert cell.status == "warning", cell.summary
    assert "InconsistentVersionWarning" in cell.summary and cell.label_agreement == 1.0
    assert cell.max_abs is not None and cell.max_abs <= 1e-12 and cell.rows == len(rows)
