"""Invalid rows (``validation.on_invalid``): found in the JVM, scored as null or quarantined,
counted in the run summary, never lost or duplicated; and the same input scores the same twice.

Expectations come from the planted rows (:data:`tests.invalid_data.PLANTED`) and from the
bundle's pickle, never from ONNX Runtime.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

import formats
from formats.schema import input_specs
from formats.unknowns import with_unknown_tolerance
from jobs.scoring.output.summary import SUMMARY_NAME
from tests.conftest import FEATURES, penguins
from tests.invalid_data import (
    PLANTED,
    PROBA,
    assert_matches_pickle,
    pickle_predictions,
    planted_rows,
    run,
    strict_bundle,
    write_parquet,
)

__all__ = ["strict_bundle"]  # the fixture, imported for pytest

INVALID = {row_id: rule for row_id, (_, _, rule) in PLANTED.items() if rule is not None}


def summary_of(output: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((output / SUMMARY_NAME).read_text())
    return data


@pytest.fixture(scope="module")
def planted(tmp_path_factory: pytest.TempPathFactory) -> tuple[pd.DataFrame, Path]:
    data = planted_rows()
    return data, write_parquet(data, tmp_path_factory.mktemp("planted") / "input")


# --- the manifest: which string columns take unseen categories -----------------------------
def test_manifest_says_which_encoders_refuse_unseen_categories(
    penguins_bundle: Path, strict_bundle: Path
) -> None:
    tolerant = {c.name: c.accepts_unknown for c in formats.Bundle.open(penguins_bundle).manifest.inputs}
    strict = {c.name: c.accepts_unknown for c in formats.Bundle.open(strict_bundle).manifest.inputs}
    assert tolerant["island"] is True and tolerant["sex"] is True
    assert strict["island"] is False and strict["sex"] is True
    # the fitted pipelines agree: the strict one refuses Atlantis, the default scores it
    row = planted_rows(20).query("row_id == 11")[FEATURES]
    assert len(formats.load(penguins_bundle, "pickle").predict(row)) == 1
    with pytest.raises(Exception, match="unknown categor"):
        formats.load(strict_bundle, "pickle").predict(row)


def test_unknown_tolerance_of_other_pipeline_shapes() -> None:
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder

    x = pd.DataFrame({"a": ["p", "q", "p", "q"], "b": ["r", "s", "s", "r"], "n": [1.0, 2, 3, 4]})
    y = [0, 1, 0, 1]
    specs = input_specs(x)

    def fitted(*steps: Any) -> Any:
        return make_pipeline(*steps).fit(x, y)

    positional = ColumnTransformer(  # columns by position, the other string column by name
        [("a", OrdinalEncoder(), [0]),
         ("b", OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=-1), ["b"])],
        remainder="passthrough",
    )  # fmt: skip
    got = {s.name: s.accepts_unknown for s in with_unknown_tolerance(fitted(positional,
           LogisticRegression()), specs)}  # fmt: skip
    assert got == {"a": False, "b": True, "n": True}
    dropped = ColumnTransformer([("b", OneHotEncoder(), ["b"])], remainder="drop")
    got = {s.name: s.accepts_unknown for s in with_unknown_tolerance(fitted(dropped,
           LogisticRegression()), specs)}  # fmt: skip
    assert got == {"a": True, "b": False, "n": True}  # a dropped column cannot be refused


# --- on_invalid = null ---------------------------------------------------------------------
def test_null_mode_scores_invalid_rows_as_null_with_the_reason(
    spark: Any,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    penguins_bundle: Path,
    planted: tuple[pd.DataFrame, Path],
) -> None:
    data, source = planted
    out = tmp_path / "scores"
    code, stdout, err = run(
        capsys, "--bundle", penguins_bundle, "--input", source, "--output", out,
        "--set", "validation.on_invalid=null",
    )  # fmt: skip
    assert code == 0, err
    scored = pd.read_parquet(out)
    assert len(scored) == len(data) and scored["row_id"].is_unique
    by_id = scored.set_index("row_id")
    bad = by_id.loc[sorted(INVALID)]
    assert bad["label"].isna().all() and bad[PROBA].isna().all().all()
    assert by_id.loc[3, "error"] == "year: null where the model needs a value"
    assert by_id.loc[4, "error"] == (
        "year: 2008.5 is not a whole number; the model's int64 input would truncate it"
    )
    assert pd.isna(by_id.loc[5, "error"])  # a null island: scored, as the pickle does below
    assert by_id.loc[7, "error"] == "bill_length_mm: Infinity is infinite; the model takes finite numbers"
    assert by_id.loc[9, "error"].startswith("flipper_length_mm: 1.0E300 does not fit")
    good = by_id[by_id["error"].isna()].reset_index()
    assert len(good) == len(data) - len(INVALID)
    valid = data[~data["row_id"].isin(list(INVALID))]
    assert_matches_pickle(good, pickle_predictions(penguins_bundle, valid))
    summary = summary_of(out)
    assert summary["rows_in"] == len(data) and summary["rows_invalid"] == len(INVALID)
    assert summary["rows_scored"] == len(data) - len(INVALID)
    assert summary["invalid_reasons"] == dict(Counter(INVALID.values()))
    assert summary["on_invalid"] == "null" and summary["quarantine"] is None
    assert "scored as null" in stdout


def test_strings_in_a_numeric_column_are_cast_per_row(
    spark: Any, capsys: pytest.CaptureFixture[str], tmp_path: Path, penguins_bundle: Path
) -> None:
    data = planted_rows(60).pipe(lambda d: d[~d["row_id"].isin(list(INVALID))])  # only this column's problems
    mass = data["body_mass_g"].map(lambda v: None if pd.isna(v) else f" {v:g} ").astype(object)
    text = {20: "heavy", 21: "", 22: "NaN", 23: None}  # 22: NaN is a number, imputed
    for row_id, value in text.items():
        mass[data["row_id"] == row_id] = value
    source = write_parquet(data.assign(body_mass_g=mass), tmp_path / "input")
    out = tmp_path / "scores"
    code, _, err = run(
        capsys, "--bundle", penguins_bundle, "--input", source, "--output", out,
        "--set", "validation.on_invalid=null",
    )  # fmt: skip
    assert code == 0, err
    by_id = pd.read_parquet(out).set_index("row_id")
    assert by_id.loc[20, "error"] == "body_mass_g: 'heavy' is not a number"
    assert by_id.loc[21, "error"] == "body_mass_g: '' is not a number"
    assert by_id["error"].notna().sum() == 2
    numbers = data.assign(body_mass_g=pd.to_numeric(mass, errors="coerce"))
    numbers = numbers[~numbers["row_id"].isin([20, 21])]
    assert_matches_pickle(by_id.drop(index=[20, 21]).reset_index(),
                          pickle_predictions(penguins_bundle, numbers))  # fmt: skip
    assert summary_of(out)["invalid_reasons"] == {"body_mass_g: not a number": 2}


# --- on_invalid = quarantine ----------------------------------------------------------------
def test_quarantine_loses_and_duplicates_no_row(
    spark: Any,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    penguins_bundle: Path,
    planted: tuple[pd.DataFrame, Path],
) -> None:
    data, source = planted
    out = tmp_path / "scores"
    code, _, err = run(
        capsys, "--bundle", penguins_bundle, "--input", source, "--output", out,
        "--set", "validation.on_invalid=quarantine", "--set", "job.parity_rows=50",
    )  # fmt: skip
    assert code == 0, err
    scored = pd.read_parquet(out)
    jail = pd.read_parquet(tmp_path / "scores_quarantine")
    ids = np.concatenate([scored["row_id"].to_numpy(), jail["row_id"].to_numpy()])
    assert len(ids) == len(data) and sorted(ids) == sorted(data["row_id"])  # each exactly once
    assert sorted(jail["row_id"]) == sorted(INVALID)
    assert list(jail.columns) == [*data.columns, "reason"]  # every input column, as it was
    row9 = jail.set_index("row_id").loc[9]
    assert row9["flipper_length_mm"] == 1e300 and row9["reason"].startswith("flipper_length_mm:")
    assert "error" not in scored.columns
    valid = data[~data["row_id"].isin(list(INVALID))]
    assert_matches_pickle(scored, pickle_predictions(penguins_bundle, valid))
    summary = summary_of(out)
    assert summary["rows_in"] == summary["rows_scored"] + summary["rows_invalid"] == len(data)
    assert summary["rows_invalid"] == len(jail)
    assert summary["invalid_reasons"] == dict(Counter(INVALID.values()))
    assert summary["quarantine"] == str(tmp_path / "scores_quarantine")


def test_unseen_category_quarantined_where_the_encoder_refuses_it(
    spark: Any, capsys: pytest.CaptureFixture[str], tmp_path: Path, strict_bundle: Path
) -> None:
    data = planted_rows(80).pipe(lambda d: d[~d["row_id"].isin(list(INVALID))])
    source = write_parquet(data, tmp_path / "input")
    out = tmp_path / "scores"
    code, _, err = run(
        capsys, "--bundle", strict_bundle, "--input", source, "--output", out,
        "--set", "validation.on_invalid=quarantine",
    )  # fmt: skip
    assert code == 0, err
    jail = pd.read_parquet(tmp_path / "scores_quarantine").set_index("row_id")
    assert sorted(jail.index) == [5, 11]  # this encoder refuses a null island too
    assert jail.loc[11, "reason"].startswith("island: category 'Atlantis' was never seen")
    assert jail.loc[5, "reason"] == "island: null where the model needs a value"
    scored = pd.read_parquet(out)
    assert len(scored) == len(data) - 2
    valid = data.query("row_id not in (5, 11)")
    assert_matches_pickle(scored, pickle_predictions(strict_bundle, valid))
    assert summary_of(out)["invalid_reasons"] == {"island: unseen category": 1, "island: null": 1}
    with pytest.raises(ValueError, match="unknown categor"):  # what the rule stands for
        pickle_predictions(strict_bundle, data.query("row_id == 5"))


# --- determinism --------------------------------------------------------------------------
def test_the_same_input_scores_byte_for_byte_the_same(
    spark: Any,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    penguins_bundle: Path,
    penguins_parquet: Path,
) -> None:
    runs = []
    for i, batch in enumerate(["10000", "10000", "777"]):  # the last: other batch boundaries
        out = tmp_path / f"scores-{i}"
        code, _, err = run(
            capsys, "--bundle", penguins_bundle, "--input", penguins_parquet, "--output", out,
            "--set", "job.parity_gate=false", "--set", f"execution.max_records_per_batch={batch}",
        )  # fmt: skip
        assert code == 0, err
        runs.append(pd.read_parquet(out).sort_values("row_id", ignore_index=True))
    first = runs[0]
    assert len(first) == 6000 and first["row_id"].is_unique
    for other in runs[1:]:
        assert (first["row_id"].to_numpy() == other["row_id"].to_numpy()).all()
        assert first["label"].tolist() == other["label"].tolist()
        for col in PROBA:
            assert first[col].to_numpy().tobytes() == other[col].to_numpy().tobytes(), col
    sample = pd.read_parquet(penguins_parquet).head(300)
    assert_matches_pickle(first, pickle_predictions(penguins_bundle, sample))


# --- a one-tensor model: an all-numeric pipeline ---------------------------------------------
def test_all_numeric_pipeline_with_one_tensor_input(
    spark: Any, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """Its ONNX model takes one [batch, 4] tensor, not a tensor per column; trained without
    nulls, so a null or NaN anywhere is invalid (nothing in the pipeline imputes)."""
    import palmerpenguins
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    cols = ["bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g"]
    train = palmerpenguins.load_penguins().dropna(subset=cols)
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500))
    model.fit(train[cols], train["species"])
    bundle = tmp_path / "numeric"
    formats.save(model, bundle, sample=train[cols], formats=("pickle", "onnx"))
    data = planted_rows(120)[["row_id", *cols]]
    source = write_parquet(data, tmp_path / "input")
    out = tmp_path / "scores"
    code, _, err = run(
        capsys, "--bundle", bundle, "--input", source, "--output", out,
        "--set", "validation.on_invalid=null",
    )  # fmt: skip
    assert code == 0, err
    by_id = pd.read_parquet(out).set_index("row_id")
    nulls = set(data.loc[data[cols].isna().any(axis=1), "row_id"])  # sampled NaN and planted
    assert {7, 8, 9, 13} | nulls == set(by_id.index[by_id["error"].notna()])
    assert by_id.loc[13, "error"] == "bill_depth_mm: NaN where the model needs a value"
    good = data[~data["row_id"].isin({7, 8, 9, 13} | nulls)]
    want = formats.load(bundle, "pickle").predict(good[cols])
    want.index = good["row_id"].to_numpy()
    assert_matches_pickle(by_id.reset_index(), want)


# --- the rules at the edge of the ONNX input's type -----------------------------------------
def test_out_of_range_is_where_a_float32_cast_overflows(
    spark: Any, tmp_path: Path, penguins_bundle: Path
) -> None:
    """The JVM's test for a double that float32 cannot hold, against numpy's own cast, at the
    boundary (Float.MAX_VALUE rounds from below up to halfway to 2^128)."""
    from jobs.scoring.model import load_model
    from jobs.scoring.rules import checks, first_rule

    spec = load_model(penguins_bundle).spec
    fmax = float(np.finfo(np.float32).max)
    half = float.fromhex("0x1.ffffffp+127")  # halfway between fmax and 2^128
    edge = [fmax, np.nextafter(fmax, np.inf), np.nextafter(half, 0.0), half, 1e39, 1e300]
    values = [*edge, *(-v for v in edge), 0.0, 1e38, float("nan"), None, float("inf")]
    base = planted_rows(60).pipe(lambda d: d[~d["row_id"].isin(list(INVALID))])
    data = base.head(len(values)).assign(bill_length_mm=values)
    df = spark.read.parquet(str(write_parquet(data, tmp_path / "edge")))
    found = checks(df.schema, spec, per_row_cast=False)
    got = [r[0] for r in df.select(first_rule(found)).collect()]
    with np.errstate(over="ignore"):
        want = [
            None if v is None or np.isnan(v)
            else "bill_length_mm: infinite" if np.isinf(v)
            else "bill_length_mm: out of range" if np.isinf(np.float32(v))
            else None
            for v in values
        ]  # fmt: skip
    assert got == want
    assert want.count("bill_length_mm: out of range") == 6  # both sides of the edge, both signs


def test_an_integer_column_gets_only_the_rules_it_can_break(
    spark: Any, penguins_bundle: Path
) -> None:
    """A bigint year (int64 input) can be null, nothing else; a double year can be anything."""
    from jobs.scoring.model import load_model
    from jobs.scoring.rules import checks

    spec = load_model(penguins_bundle).spec

    def year_rules(schema: Any) -> list[str]:
        return [c.key for c in checks(schema, spec, per_row_cast=False) if c.key[:5] == "year:"]

    ints = spark.createDataFrame(penguins(5, seed=1)[FEATURES])
    assert dict(ints.dtypes)["year"] == "bigint"
    assert year_rules(ints.schema) == ["year: null"]
    floats = spark.createDataFrame(planted_rows(20)[FEATURES])
    assert dict(floats.dtypes)["year"] == "double"
    assert year_rules(floats.schema) == [
        "year: null", "year: NaN", "year: infinite", "year: out of range",
        "year: not a whole number",
    ]
