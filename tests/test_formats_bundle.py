"""Bundles: what save writes, what load checks, and every bad input as one line (exit 2)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer

import formats
from formats.bundle import sha256_file
from formats.errors import (
    InputError,
    IntegrityError,
    MissingDependencyError,
    ModelLoadError,
    NotFoundError,
    UsageError,
)
from jobs.export import split, train

FAST = ("pickle", "skops", "onnx")


@pytest.fixture(scope="module")
def fitted() -> tuple[Any, pd.DataFrame]:
    return train("rf")


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory, fitted: Any) -> formats.Bundle:
    model, x_train = fitted
    return formats.save(
        model,
        tmp_path_factory.mktemp("b") / "penguins",
        sample=x_train,
        formats=FAST,
        name="penguins",
        version="3",
        tags={"team": "birds"},
        description="test bundle",
    )


def test_manifest_records_the_contract(bundle: formats.Bundle) -> None:
    m = bundle.manifest
    path = bundle.local_path
    assert path is not None
    assert sorted(p.name for p in path.iterdir()) == sorted(
        ["model.pkl", "model.skops", "model.onnx", "input_example.parquet", "manifest.json"]
    )
    data = json.loads((path / "manifest.json").read_text())
    assert data["task"] == "classification"
    assert data["classes"] == ["Adelie", "Chinstrap", "Gentoo"]
    assert data["outputs"] == ["label", "proba_Adelie", "proba_Chinstrap", "proba_Gentoo"]
    assert (data["name"], data["version"], data["tags"]) == ("penguins", "3", {"team": "birds"})
    inputs = {c["name"]: c for c in data["inputs"]}
    assert inputs["island"]["kind"] == "string"
    assert inputs["island"]["categories"] == ["Biscoe", "Dream", "Torgersen"]
    assert inputs["sex"]["nullable"] is True
    assert inputs["year"]["dtype"] == "int64"
    assert inputs["bill_length_mm"]["kind"] == "numeric"
    for name, entry in data["files"].items():
        assert entry["sha256"] == sha256_file(path / name)
    assert data["versions"]["scikit-learn"]
    assert data["formats"]["onnx"]["details"]["precision"] in ("float32", "float64")
    assert not m.formats.get("pmml")
    assert m.sha256 == data["files"]["model.onnx"]["sha256"]


def test_canonical_columns_are_the_same_for_every_format(
    bundle: formats.Bundle, fitted: Any
) -> None:
    model, _ = fitted
    _, x_test, _, _ = split()
    frames = [formats.load(bundle, fmt).predict(x_test) for fmt in FAST]
    for frame in frames:
        assert list(frame.columns) == bundle.manifest.outputs
        np.testing.assert_array_equal(frame["label"], model.predict(x_test))


def test_a_step_a_format_cannot_take_does_not_stop_the_others(tmp_path: Path) -> None:
    x, _, y, _ = split()
    numeric = x[["bill_length_mm", "bill_depth_mm"]].fillna(40.0)
    model = Pipeline(
        [("log", FunctionTransformer(np.log1p)), ("model", LogisticRegression(max_iter=500))]
    ).fit(numeric, y)
    saved = formats.save(model, tmp_path / "b", sample=numeric, formats=FAST)
    entries = saved.manifest.formats
    assert entries["pickle"].saved and entries["skops"].saved
    assert entries["onnx"].status == "failed"
    assert entries["onnx"].reason and "FunctionTransformer" in entries["onnx"].reason
    with pytest.raises(NotFoundError, match="no onnx model: not saved"):
        formats.load(saved, "onnx")
    report = formats.parity(saved, numeric)
    assert report.passed  # skops agrees; onnx is reported as not saved, not as a failure
    assert [r.status for r in report.results if r.fmt == "onnx"] == ["not saved"]


def test_the_step_onnx_cannot_take_is_the_one_named(tmp_path: Path) -> None:
    """The step a conversion failed at is the operator skl2onnx was converting: here the
    category branch's encoder. It used to be the first Pipeline inside (the numeric branch),
    because the message names the outer Pipeline."""
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.preprocessing import OneHotEncoder

    x, _, y, _ = split()
    numeric = ["bill_length_mm", "bill_depth_mm"]
    x = x[[*numeric, "island"]]
    model = Pipeline([
        ("pre", ColumnTransformer([
            ("num", Pipeline([("impute", SimpleImputer())]), numeric),
            ("cat", Pipeline([("impute", SimpleImputer(strategy="constant", fill_value="missing")),
                              ("onehot", OneHotEncoder(handle_unknown="infrequent_if_exist",
                                                       min_frequency=60))]), ["island"]),
        ])),
        ("model", LogisticRegression(max_iter=500)),
    ]).fit(x, y)  # fmt: skip
    saved = formats.save(model, tmp_path / "b", sample=x, formats=FAST)
    onnx = saved.manifest.formats["onnx"]
    assert onnx.status == "failed" and onnx.step == "pre/cat/onehot"
    assert onnx.reason and "Infrequent categories" in onnx.reason


def test_unfitted_model(tmp_path: Path) -> None:
    x, _, _, _ = split()
    with pytest.raises(InputError, match="not fitted; call fit"):
        formats.save(RandomForestClassifier(), tmp_path / "b", sample=x)
    assert not (tmp_path / "b").exists()


def test_sample_columns_must_match(tmp_path: Path, fitted: Any) -> None:
    model, x_train = fitted
    with pytest.raises(InputError, match=r"lacks \['year'\]"):
        formats.save(model, tmp_path / "b", sample=x_train.drop(columns="year"))
    assert list(tmp_path.iterdir()) == []  # no temp directory left behind


def test_existing_bundle_needs_overwrite(bundle: formats.Bundle, fitted: Any) -> None:
    model, x_train = fitted
    with pytest.raises(UsageError, match="exists; pass overwrite"):
        formats.save(model, str(bundle.local_path), sample=x_train)


def test_tampered_file_is_refused(tmp_path: Path, bundle: formats.Bundle) -> None:
    import shutil

    copy = tmp_path / "copy"
    assert bundle.local_path is not None
    shutil.copytree(bundle.local_path, copy)
    with open(copy / "model.onnx", "r+b") as fh:
        fh.seek(100)
        fh.write(b"\x00\x01")
    with pytest.raises(IntegrityError, match="does not match the sha256"):
        formats.load(copy, "onnx")
    formats.load(copy, "pickle")  # the untouched formats still load


def test_missing_or_damaged_manifest(tmp_path: Path) -> None:
    with pytest.raises(NotFoundError, match="is not a bundle"):
        formats.load(tmp_path, "onnx")
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(ModelLoadError, match="not valid JSON"):
        formats.load(tmp_path, "onnx")


def test_unknown_format_and_engine(bundle: formats.Bundle) -> None:
    with pytest.raises(UsageError, match="unknown format 'tflite'"):
        formats.load(bundle, "tflite")
    with pytest.raises(UsageError, match="unknown engine 'jvm' for pmml"):
        formats.load(bundle, "pmml", "jvm")


@pytest.mark.parametrize("fmt", FAST)
def test_predict_checks_columns_and_types(bundle: formats.Bundle, fmt: str) -> None:
    _, x_test, _, _ = split()
    scorer = formats.load(bundle, fmt)
    with pytest.raises(InputError, match=r"lacks column\(s\) \['sex'\]"):
        scorer.predict(x_test.drop(columns="sex"))
    with pytest.raises(InputError, match="'bill_length_mm' is object but the model takes numbers"):
        scorer.predict(x_test.assign(bill_length_mm="long"))
    with pytest.raises(InputError, match="'island' is float64 but the model takes strings"):
        scorer.predict(x_test.assign(island=1.5))
    # extra columns are ignored and castable types are cast
    extra = x_test.assign(extra="x", year=x_test["year"].astype("int32"))
    pd.testing.assert_frame_equal(scorer.predict(extra), scorer.predict(x_test))
    # a SQL DECIMAL column as pandas holds it (Decimal objects, None for null): numbers
    import decimal

    rounded = x_test.assign(bill_length_mm=x_test["bill_length_mm"].round(2))
    as_decimals = rounded.assign(bill_length_mm=[
        None if np.isnan(v) else decimal.Decimal(f"{v:.2f}") for v in rounded["bill_length_mm"]
    ])  # fmt: skip
    assert as_decimals["bill_length_mm"].dtype == object
    pd.testing.assert_frame_equal(scorer.predict(as_decimals), scorer.predict(rounded))


def test_skops_refuses_a_type_the_manifest_does_not_trust(
    tmp_path: Path, bundle: formats.Bundle
) -> None:
    import shutil

    assert bundle.local_path is not None
    copy = tmp_path / "copy"
    shutil.copytree(bundle.local_path, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["formats"]["skops"]["details"]["trusted_types"] = []
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelLoadError, match="does not trust"):
        formats.load(copy, "skops")


def test_java_missing_is_one_line(tmp_path: Path) -> None:
    """A real missing Java: the command runs with a PATH that has no java on it."""
    import pickle

    model, x_train = train("logreg")
    (tmp_path / "m.pkl").write_bytes(pickle.dumps(model))
    x_train.to_parquet(tmp_path / "x.parquet")
    env = {"PATH": str(Path(sys.executable).parent), "HOME": str(tmp_path)}
    proc = subprocess.run(
        [sys.executable, "-m", "formats", "save", str(tmp_path / "m.pkl"),
         "--sample", str(tmp_path / "x.parquet"), "-o", str(tmp_path / "b")],
        capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: Java was not found; modelport needs Java 17 or newer")
    assert not (tmp_path / "b").exists()
    from formats.java import java_version

    java_version.cache_clear()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PATH", str(tmp_path))
        mp.delenv("JAVA_HOME", raising=False)
        with pytest.raises(MissingDependencyError):
            java_version()
    java_version.cache_clear()


def test_cli_save_and_parity(tmp_path: Path) -> None:
    import pickle

    model, x_train = train("logreg")
    _, x_test, _, _ = split()
    (tmp_path / "m.pkl").write_bytes(pickle.dumps(model))
    x_train.to_parquet(tmp_path / "train.parquet")
    x_test.to_parquet(tmp_path / "test.parquet")
    cli = [sys.executable, "-m", "formats"]
    saved = subprocess.run(
        [*cli, "save", str(tmp_path / "m.pkl"), "--sample", str(tmp_path / "train.parquet"),
         "-o", str(tmp_path / "b"), "--formats", "pickle,onnx", "--tag", "a=b"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert saved.returncode == 0, saved.stderr
    assert "model.onnx" in saved.stdout
    checked = subprocess.run(
        [*cli, "parity", str(tmp_path / "b"), "--data", str(tmp_path / "test.parquet"),
         "--json", "-"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert checked.returncode == 0, checked.stderr
    report = json.loads(checked.stdout)
    assert report["passed"] is True and report["rows"] == len(x_test)
    onnx = next(r for r in report["results"] if r["fmt"] == "onnx")
    assert onnx["label_agreement"] == 1.0
    bad = subprocess.run(
        [*cli, "parity", str(tmp_path / "nope")], capture_output=True, text=True, timeout=300
    )
    assert bad.returncode == 2
    assert bad.stderr.strip().splitlines() == [
        f"error: {str(tmp_path / 'nope')!r} is not a bundle (no manifest.json); create one with "
        "'python -m formats save' or 'make export'"
    ]
