"""Shared by the invalid-row tests and the bad-input corpus: a strict bundle (its island encoder
refuses unseen categories), penguins with known invalid rows, and the job's one-line checks."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import formats
from jobs.score import main
from jobs.scoring.output.summary import SUMMARY_NAME
from tests.conftest import FEATURES, penguins

CLASSES = ["Adelie", "Chinstrap", "Gentoo"]
PROBA = [f"proba_{c}" for c in CLASSES]

# row_id -> (column, value, the rule it breaks for the default bundle, or None: valid)
PLANTED: dict[int, tuple[str, Any, str | None]] = {
    3: ("year", None, "year: null"),  # the ONNX input is int64: no NaN to stand for it
    4: ("year", 2008.5, "year: not a whole number"),  # int64 would truncate it
    # training had no null island, but the pipeline imputes it and model.onnx scores it the
    # same (formats.nulls): valid; the strict bundle's encoder refuses it
    5: ("island", None, None),
    7: ("bill_length_mm", float("inf"), "bill_length_mm: infinite"),
    8: ("body_mass_g", float("-inf"), "body_mass_g: infinite"),
    9: ("flipper_length_mm", 1e300, "flipper_length_mm: out of range"),  # float32 overflows
    11: ("island", "Atlantis", None),  # OneHotEncoder(handle_unknown="ignore") takes it
    12: ("sex", None, None),  # training had null sex: imputed
    13: ("bill_depth_mm", float("nan"), None),  # a real NaN (not null) where training had NaN
}


def run(capsys: pytest.CaptureFixture[str], *args: Any) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_error(err: str, *words: str) -> str:
    """stderr is one ``error:`` line holding ``words``; no traceback, no JVM stack frame."""
    lines = [line for line in err.splitlines() if line.strip()]
    assert not [ln for ln in lines if ln.startswith("\tat ") or "Traceback" in ln], err
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


def assert_not_complete(output: Path) -> None:
    assert not (output / "_SUCCESS").exists()
    assert not (output / SUMMARY_NAME).exists()


def pickle_predictions(bundle: Path, data: pd.DataFrame) -> pd.DataFrame:
    """The bundle's pickle (the fitted pipeline itself) on ``data``, indexed by row_id."""
    want = formats.load(bundle, "pickle").predict(data[FEATURES])
    want.index = data["row_id"].to_numpy()
    return want


def assert_matches_pickle(scored: pd.DataFrame, want: pd.DataFrame) -> None:
    got = scored.set_index("row_id").loc[want.index]
    assert (got["label"].to_numpy() == want["label"].to_numpy()).all()
    for col in PROBA:
        np.testing.assert_allclose(got[col], want[col], atol=1e-5, rtol=0)


def planted_rows(rows: int = 400) -> pd.DataFrame:
    """``rows`` penguins with :data:`PLANTED` written in (year as a nullable float column)."""
    data = penguins(rows, seed=7)
    data["year"] = data["year"].astype("float64")
    data["island"] = data["island"].astype(object)
    data["sex"] = data["sex"].astype(object)
    for row_id, (col, value, _) in PLANTED.items():
        data.loc[data["row_id"] == row_id, col] = value
    return data


def write_parquet(data: pd.DataFrame, path: Path, name: str = "part-0.parquet") -> Path:
    """``from_pandas=False``: NaN stays NaN (pandas' default writes it as null) and None null."""
    path.mkdir(parents=True, exist_ok=True)
    arrays = {}
    for col in data.columns:
        values = data[col].to_numpy()
        arrays[col] = pa.array(
            [None if v is None else v for v in values] if values.dtype == object else values,
            from_pandas=values.dtype == object,
        )
    year = data["year"].to_numpy() if "year" in data.columns else None
    if year is not None and year.dtype.kind == "f":  # a null year is null, not NaN
        arrays["year"] = pa.array(year, mask=np.isnan(year))
    pq.write_table(pa.table(arrays), path / name)
    return path


@pytest.fixture(scope="session")
def strict_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The default pipeline, except that the island encoder refuses unseen categories."""
    import palmerpenguins
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline, make_pipeline
    from sklearn.preprocessing import OneHotEncoder

    df = palmerpenguins.load_penguins()
    numeric = ["bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g", "year"]
    sex = make_pipeline(
        SimpleImputer(strategy="constant", fill_value="missing"),
        OneHotEncoder(handle_unknown="ignore"),
    )
    pre = ColumnTransformer(
        [
            ("num", SimpleImputer(strategy="median"), numeric),
            ("island", OneHotEncoder(handle_unknown="error"), ["island"]),
            ("sex", sex, ["sex"]),
        ]
    )
    model = Pipeline([("pre", pre), ("model", RandomForestClassifier(20, random_state=0))])
    model.fit(df[FEATURES], df["species"])
    path = tmp_path_factory.mktemp("bundles") / "strict"
    formats.save(model, path, sample=df[FEATURES], formats=("pickle", "onnx"))
    return path
