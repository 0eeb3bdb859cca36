"""pickle and skops: the two formats that hold the Python object itself, scored by its own code.

pickle is the reference every other format is compared with (it *is* the original model), but
loading one runs arbitrary code: load pickles only from bundles you trust. skops stores the same
object without pickle's code execution: on load it refuses every type that is not on a trusted
list, and the manifest records the list that saving found, so loading a bundle we wrote works
while a swapped file with an unexpected type is refused.
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from formats._text import one_line
from formats.errors import FormatUnsupportedError, ModelLoadError
from formats.schema import ColumnSpec, as_fitted, canonical_frame, conform

__all__ = [
    "final_estimator",
    "SklearnScorer",
    "load_pickle",
    "load_skops",
    "write_pickle",
    "write_skops",
]


def final_estimator(model: Any) -> Any:
    """A pipeline's last step (the estimator that predicts), or the model itself."""
    steps = getattr(model, "steps", None)
    return steps[-1][1] if steps else model


def write_pickle(model: Any, path: Path) -> dict[str, Any]:
    try:
        data = pickle.dumps(model, protocol=5)
    except (pickle.PicklingError, TypeError, AttributeError) as exc:
        # a lambda or a local class inside the pipeline
        raise FormatUnsupportedError("pickle", None, one_line(exc)) from exc
    path.write_bytes(data)
    return {"protocol": 5}


def load_pickle(data: bytes) -> Any:
    """Unpickle a bundle's model.pkl. This runs code from the file: trusted bundles only."""
    try:
        return pickle.loads(data)
    except ModuleNotFoundError as exc:
        raise ModelLoadError(
            f"model.pkl needs the module {exc.name!r}, which is not installed; install the "
            "library the model was trained with"
        ) from exc
    except Exception as exc:  # unpickling can fail with any exception the file's code raises
        raise ModelLoadError(
            f"model.pkl cannot be unpickled ({type(exc).__name__}: {one_line(exc)})"
        ) from exc


def write_skops(model: Any, path: Path) -> dict[str, Any]:
    import skops.io as sio

    try:
        data = sio.dumps(model)
        untrusted = sio.get_untrusted_types(data=data)
    except Exception as exc:  # skops raises TypeError/ValueError/... for what it cannot store
        raise FormatUnsupportedError("skops", None, one_line(exc)) from exc
    path.write_bytes(data)
    # What the manifest records as trusted: the types this very model contains.
    return {"trusted_types": sorted(untrusted)}


def load_skops(data: bytes, trusted: list[str]) -> Any:
    import skops.io as sio

    try:
        untrusted = set(sio.get_untrusted_types(data=data))
    except Exception as exc:
        raise ModelLoadError(f"model.skops is not a skops file ({one_line(exc)})") from exc
    unexpected = sorted(untrusted - set(trusted))
    if unexpected:
        raise ModelLoadError(
            f"model.skops holds type(s) the manifest does not trust: {unexpected}; the file is "
            "not the one that was saved, re-create the bundle"
        )
    try:
        return sio.load(io.BytesIO(data), trusted=sorted(untrusted))
    except Exception as exc:
        raise ModelLoadError(f"model.skops cannot be loaded ({one_line(exc)})") from exc


class SklearnScorer:
    """Scores with the estimator's own ``predict`` and ``predict_proba``."""

    engine = "sklearn"

    def __init__(
        self,
        model: Any,
        fmt: str,
        task: str,
        classes: list[Any] | None,
        inputs: list[ColumnSpec],
        has_proba: bool = True,
    ) -> None:
        self.model = model
        self.fmt = fmt
        self.task = task
        self.classes = classes
        self.inputs = inputs
        self.has_proba = has_proba

    def predict(self, frame: pd.DataFrame) -> pd.DataFrame:
        x = as_fitted(_sklearn_missing(conform(frame, self.inputs), self.inputs), self.inputs)
        if self.task == "classification":
            proba = self.model.predict_proba(x) if self.has_proba else None
            label = self.model.predict(x)
            return canonical_frame(
                self.task, self.classes, label=label, proba=proba, index=frame.index
            )
        return canonical_frame(self.task, None, prediction=self.model.predict(x), index=frame.index)


def _sklearn_missing(x: pd.DataFrame, inputs: list[ColumnSpec]) -> pd.DataFrame:
    """scikit-learn's imputers look for np.nan: a None in a string column becomes np.nan."""
    for spec in inputs:
        if spec.kind == "string" and x[spec.name].isna().any():
            x[spec.name] = x[spec.name].astype(object).where(x[spec.name].notna(), np.nan)
    return x
