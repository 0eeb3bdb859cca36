"""The public functions' docstrings: numpydoc sections, and examples that run.

The examples of formats.save, formats.load and formats.parity run in that order in one
namespace (load's and parity's use the bundle save's example wrote), as a reader would run them.
"""

from __future__ import annotations

import doctest
import inspect
import tempfile
from pathlib import Path
from typing import Any

import pytest

import formats

PUBLIC = [formats.save, formats.load, formats.parity]
SECTIONS = ["Parameters\n", "Returns\n", "Raises\n", "Examples\n"]


@pytest.mark.parametrize("function", PUBLIC, ids=lambda f: f.__name__)
def test_numpydoc_sections(function: Any) -> None:
    doc = inspect.getdoc(function) or ""
    assert [s for s in SECTIONS if s not in doc] == []


def test_examples_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # the examples' mkdtemp() lands here
    globs: dict[str, Any] = {}
    parser = doctest.DocTestParser()
    runner = doctest.DocTestRunner(optionflags=doctest.NORMALIZE_WHITESPACE)
    for function in PUBLIC:
        test = parser.get_doctest(
            inspect.getdoc(function) or "", globs, f"formats.{function.__name__}",
            inspect.getsourcefile(function), inspect.getsourcelines(function)[1],
        )  # fmt: skip
        assert test.examples, function.__name__
        runner.run(test, clear_globs=False)
        globs = test.globs  # DocTest copies the namespace it is given: pass on what ran
    result = runner.summarize(verbose=False)
    assert result.failed == 0 and result.attempted >= 12
