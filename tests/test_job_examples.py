"""The Examples of the scoring library's public functions run, as written, on a real session:
``jobs.scoring.run``, ``jobs.udf.onnx_udf``, ``score_frame`` and ``input_columns``."""

from __future__ import annotations

import doctest
from pathlib import Path
from typing import Any

import pytest

import jobs.scoring
import jobs.udf


def _run_examples(obj: Any, globs: dict[str, Any]) -> doctest.TestResults:
    finder, runner = doctest.DocTestFinder(recurse=False), doctest.DocTestRunner(verbose=False)
    tests = finder.find(obj, obj.__name__, globs=globs)
    assert tests and tests[0].examples, f"{obj.__name__} has no example"
    for test in tests:
        runner.run(test)
    return runner.summarize(verbose=False)


@pytest.mark.parametrize("name", ["onnx_udf", "score_frame", "input_columns"])
def test_the_udf_examples_run(
    name: str, spark: Any, penguins_bundle: Path, penguins_parquet: Path
) -> None:
    globs = {**vars(jobs.udf), "spark": spark, "bundle": str(penguins_bundle),
             "df": spark.read.parquet(str(penguins_parquet))}  # fmt: skip
    result = _run_examples(getattr(jobs.udf, name), globs)
    assert result.failed == 0 and result.attempted >= 1


def test_the_run_example_runs(
    spark: Any, penguins_bundle: Path, penguins_parquet: Path, tmp_path: Path
) -> None:
    globs = {**vars(jobs.scoring), "spark": spark, "bundle": str(penguins_bundle),
             "data": str(penguins_parquet), "out": str(tmp_path / "scores")}  # fmt: skip
    result = _run_examples(jobs.scoring.run, globs)
    assert result.failed == 0 and result.attempted >= 3
    assert (tmp_path / "scores" / "_SUCCESS").exists()
