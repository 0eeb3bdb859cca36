"""Which PMML engine scores a bundle's model.pmml as the original does.

Two independent implementations read the same document and do not always agree with the
original: :func:`engine_agreement` scores the save sample with both and records each one's
agreement in the manifest (the PMML entry's ``details["engines"]``), and :func:`faithful_engine`
is ``formats.load``'s default: JPMML-Evaluator where it agreed (and in bundles saved before it
was recorded), PMML4S where only it did. :func:`pypmml_cause` says why PMML4S differs where it
does, for the parity report.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from formats.diff import Tolerance, compare_frames
from formats.errors import ModelportError
from formats.schema import ColumnSpec

if TYPE_CHECKING:
    import pandas as pd

    from formats.bundle import Bundle

__all__ = ["AGREEMENT_ROWS", "PREFERRED", "engine_agreement", "faithful_engine", "pypmml_cause"]

_FLOAT_FIELD = re.compile(rb"<(?:DataField|DerivedField)\b[^>]*\bdataType=[\"']float[\"']")
_SPLIT = re.compile(
    rb"<SimplePredicate\b[^>]*\boperator=[\"'](?:lessOrEqual|lessThan|greaterThan|greaterOrEqual)"
)

# in order of preference where several agree: JPMML-Evaluator rounds as scikit-learn does
PREFERRED = ("jpmml", "pypmml")
# the sample rows both engines score at save (PMML4S takes its rows as JSON: bounded)
AGREEMENT_ROWS = 10_000


def faithful_engine(details: dict[str, Any]) -> str:
    """The engine ``formats.load(bundle, "pmml")`` runs: the first of :data:`PREFERRED` that
    agreed with the original at save time; JPMML-Evaluator where none did or none was asked."""
    engines = details.get("engines") or {}
    agreed = [e for e in PREFERRED if (engines.get(e) or {}).get("agrees")]
    return agreed[0] if agreed else PREFERRED[0]


def engine_agreement(
    path: Path,
    model: Any,
    sample: pd.DataFrame,
    specs: list[ColumnSpec],
    target: tuple[str, list[Any] | None, bool],
    tolerance: Tolerance,
) -> dict[str, dict[str, Any]]:
    """{engine: {"agrees", "rows", "rows_differ", "max_abs"[, "why"]}}: each engine's scores
    of ``sample`` against the original's own on the same rows, by parity's rule."""
    from formats.pmml import JpmmlScorer, PypmmlScorer
    from formats.sklearn_formats import model_scores, rows_as_given

    task, classes, has_proba = target
    sample = sample.head(AGREEMENT_ROWS)
    try:
        want = model_scores(model, rows_as_given(sample, specs), task, classes, has_proba, None)
    except (ValueError, TypeError):  # the original refuses its own sample: nothing to measure
        return {}
    found: dict[str, dict[str, Any]] = {}
    for engine, cls in (("jpmml", JpmmlScorer), ("pypmml", PypmmlScorer)):
        try:
            with cls(path, task, classes, specs, has_proba) as scorer:
                got, note = scorer.predict(sample).reset_index(drop=True), scorer.note
        except ModelportError as exc:  # the engine cannot load or score it: it does not agree
            found[engine] = {"agrees": False, "rows": len(sample), "why": str(exc)}
            continue
        diff = compare_frames(want, got, tolerance)
        entry: dict[str, Any] = {
            "agrees": diff.passed, "rows": diff.rows, "rows_differ": int(diff.disagree.sum()),
            "max_abs": diff.max_abs,
        }  # fmt: skip
        if not diff.passed:
            entry["why"] = note or (_cause(path) if engine == "pypmml" else "")
        found[engine] = entry
    return found


def pypmml_cause(bundle: Bundle) -> str:
    """Why PMML4S scores the bundle's model.pmml otherwise than the original, where known."""
    return _cause(bundle.checked_path("pmml"))


def _cause(path: Path) -> str:
    """The known cause, read off the document: tree splits on fields it declares float.

    sklearn2pmml writes a split's threshold as the float32 at or below scikit-learn's, which is
    exact only where the value is compared in float32, as scikit-learn's trees and JPMML do.
    PMML4S keeps a float field's value (an input, or a scaler's output) in double and reads the
    threshold as a double, so a value within a float32 rounding of a split goes the other way."""
    import mmap

    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as text:
        if not (_FLOAT_FIELD.search(text) and _SPLIT.search(text)):
            return ""
    return (
        "PMML4S compares the document's float fields in double: sklearn2pmml writes each split "
        "threshold as the float32 at or below scikit-learn's, exact only when compared in float32 "
        "(as scikit-learn and JPMML-Evaluator do), so a value within a float32 rounding of a "
        "threshold takes the other branch"
    )
