"""Which string columns of a fitted pipeline take a category they never saw in training.

Recorded per column in the manifest (``ColumnSpec.accepts_unknown``) at save time, because only
the fitted pipeline knows: ``OneHotEncoder(handle_unknown="ignore")`` scores an unseen category
as all zeros, ``handle_unknown="error"`` refuses the row (and its ONNX form cannot be trusted to
do the same). The Spark job reads it to decide whether an unseen category is an invalid row.

The walk follows the columns from the pipeline's input to the first step that encodes them: a
``ColumnTransformer`` routes each column to its transformer, a ``Pipeline`` passes it through
steps that keep columns (imputers) until an encoder decides. Anything this walk does not know
leaves the column tolerant (the default), so an unusual pipeline never makes valid rows invalid.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from formats.schema import ColumnSpec

__all__ = ["selected_columns", "with_unknown_tolerance"]


def with_unknown_tolerance(model: Any, specs: Sequence[ColumnSpec]) -> list[ColumnSpec]:
    """``specs`` with ``accepts_unknown`` set from the fitted ``model``'s encoders."""
    strings = [s.name for s in specs if s.kind == "string"]
    found = (_walk(model, strings, [s.name for s in specs]) or {}) if strings else {}
    return [
        dataclasses.replace(s, accepts_unknown=found.get(s.name, True)) if s.kind == "string" else s
        for s in specs
    ]


def _walk(step: Any, columns: list[str], names: list[str]) -> dict[str, bool] | None:
    """{column: accepts unknown} for the ``columns`` entering ``step`` (``names``: all of the
    step's input columns, in order, to resolve positional selections); None: this step passes
    the columns on unchanged and does not decide."""
    from sklearn.compose import ColumnTransformer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder

    if isinstance(step, Pipeline):
        for _, sub in step.steps:
            if sub is None or sub == "passthrough":
                continue
            decided = _walk(sub, columns, names)
            if decided is not None:
                return decided
        return {}
    if isinstance(step, ColumnTransformer):
        out: dict[str, bool] = {}
        for _, trans, selection in step.transformers_:
            if isinstance(trans, str):  # "drop" (the model ignores it) or "passthrough"
                continue
            chosen = selected_columns(selection, names)
            mine = [c for c in columns if c in chosen]
            if mine:
                out.update(_walk(trans, mine, chosen) or {})
        return out
    if isinstance(step, OneHotEncoder):  # "ignore", "infrequent_if_exist", "warn" take unknowns
        return dict.fromkeys(columns, step.handle_unknown != "error")
    if isinstance(step, OrdinalEncoder):  # "use_encoded_value" maps unknowns to unknown_value
        return dict.fromkeys(columns, step.handle_unknown != "error")
    if hasattr(step, "transform") and not _keeps_columns(step):
        return {}  # another transformer (TargetEncoder, ...): not known to refuse unknowns
    return None


def _keeps_columns(step: Any) -> bool:
    """Steps that hand each column on as it came (so a later encoder sees the raw category)."""
    from sklearn.impute import SimpleImputer

    return isinstance(step, SimpleImputer)


def selected_columns(selection: Any, names: list[str]) -> list[str]:
    """A ColumnTransformer's column selection as names (names, positions or a boolean mask)."""
    if isinstance(selection, str):
        return [selection]
    if isinstance(selection, int):  # one position (a list of them is handled below)
        return [names[selection]]
    if isinstance(selection, slice):
        return names[selection]
    import numpy as np

    items = list(selection) if hasattr(selection, "__iter__") else []
    if items and all(isinstance(v, bool | np.bool_) for v in items):
        return [n for n, keep in zip(names, items, strict=False) if keep]
    return [names[int(v)] if isinstance(v, int | np.integer) else str(v) for v in items]
