"""formats.diff: the one rule by which two models' outputs agree (parity, nulls, verify, the
portability report, the export's checks and the job's gate all call it)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from formats.diff import Tolerance, compare_frames, first_difference, labels_equal, number_diff


def _frames() -> tuple[pd.DataFrame, pd.DataFrame]:
    want = pd.DataFrame({"label": ["a", "b", "a", "b"], "proba_a": [0.9, 0.2, 0.6, 0.0],
                         "proba_b": [0.1, 0.8, 0.4, 1.0]})  # fmt: skip
    return want, want.copy()


def test_numbers_within_atol_plus_rtol_times_want() -> None:
    tol = Tolerance(atol=0.01, rtol=0.1)
    diff = number_diff(np.array([1.0, 10.0, 0.0]), np.array([1.1, 11.0, 0.02]), tol)
    # allowed: 0.11, 1.01, 0.01
    assert diff.over.tolist() == [False, False, True] and not diff.passed
    assert diff.max_abs == 1.0 and diff.max_rel == np.inf  # 0.02 away from 0
    assert np.isclose(diff.min_passing_atol, 0.02)


def test_missing_and_infinite_values() -> None:
    tol = Tolerance(atol=1e-6)
    same = number_diff([np.nan, np.inf, -np.inf, 1.0], [np.nan, np.inf, -np.inf, 1.0], tol)
    assert same.passed and same.max_abs == 0.0
    one_side = number_diff([np.nan, 1.0], [0.0, 1.0], tol)
    assert one_side.over.tolist() == [True, False]
    assert one_side.max_abs == one_side.max_rel == one_side.min_passing_atol == np.inf
    assert not number_diff([np.inf], [-np.inf], Tolerance(atol=1e300)).passed


def test_labels_compare_as_text_when_either_side_is_text() -> None:
    assert labels_equal(np.array([b"a", b"b"]), np.array(["a", "c"], dtype=object)).tolist() == [
        True, False]  # fmt: skip
    assert labels_equal(np.array([1, 2]), np.array([1, 3])).tolist() == [True, False]


def test_compare_frames_labels_share_and_columns() -> None:
    want, got = _frames()
    assert compare_frames(want, got, Tolerance()).passed
    got.loc[1, "label"] = "a"
    got.loc[2, "proba_a"] = 0.61
    diff = compare_frames(want, got, Tolerance(atol=0.001, labels=0.75))
    assert diff.label_agreement == 0.75 and diff.labels_passed and diff.labels_differ == 1
    assert [(o.column, o.rows_over, o.passed) for o in diff.outputs] == [
        ("proba_a", 1, False), ("proba_b", 0, True)]  # fmt: skip
    assert diff.disagree.tolist() == [False, True, True, False] and not diff.passed
    assert np.isclose(diff.max_abs, 0.01)


def test_compare_frames_missing_column_disagrees_everywhere() -> None:
    want, got = _frames()
    diff = compare_frames(want, got.drop(columns="proba_b"), Tolerance())
    assert diff.missing == ["proba_b"] and not diff.passed and diff.disagree.all()
    assert diff.outputs[-1].max_abs == np.inf


def test_first_difference_names_the_first_column_that_differs() -> None:
    want, got = _frames()
    assert first_difference(want, got, Tolerance(atol=1e-6)) == ""
    got.loc[[0, 3], "proba_b"] += 1e-3
    assert first_difference(want, got, Tolerance(atol=1e-6)) == "proba_b differs on 2 of 4 rows"
    got.loc[2, "label"] = "b"
    assert first_difference(want, got, Tolerance(atol=1e-6)) == "label differs on 1 of 4 rows"
    assert first_difference(want, got, Tolerance(atol=1e-2, labels=0.5)) == ""
