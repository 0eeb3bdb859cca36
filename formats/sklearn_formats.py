"""pickle and skops: the two formats that hold the Python object itself, scored by its own code.

The pickle holds the original model: :func:`formats.parity` calls the unpickled object itself on
the rows as given, while the scorer here first feeds missing values in the form the pipeline
was fitted on (:func:`formats.schema.missing_as_fitted`). Loading a pickle runs arbitrary code:
load pickles only from bundles you trust. skops stores the same
object without pickle's code execution: on load it refuses every type that is not on a trusted
list, and the manifest records the list that saving found, so loading a bundle we wrote works
while a swapped file with an unexpected type is refused.
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path
from typing import Any

import pandas as pd

from formats._text import one_line
from formats.errors import FormatUnsupportedError, ModelLoadError
from formats.schema import ColumnSpec, as_fitted, canonical_frame, conform, missing_as_fitted

__all__ = [
    "final_estimator",
    "SklearnScorer",
    "load_pickle",
    "model_scores",
    "rows_as_given",
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
        # missing values in the form the pipeline was fitted on (None and NaN score apart)
        x = as_fitted(missing_as_fitted(conform(frame, self.inputs), self.inputs), self.inputs)
        return model_scores(self.model, x, self.task, self.classes, self.has_proba, frame.index)


def model_scores(
    model: Any, x: pd.DataFrame, task: str, classes: list[Any] | None, has_proba: bool, index: Any
) -> pd.DataFrame:
    """The canonical frame of ``model``'s own ``predict`` (and ``predict_proba``) on ``x``."""
    if task == "classification":
        proba = model.predict_proba(x) if has_proba else None
        return canonical_frame(task, classes, label=model.predict(x), proba=proba, index=index)
    return canonical_frame(task, None, prediction=model.predict(x), index=index)


def rows_as_given(frame: pd.DataFrame, inputs: list[ColumnSpec]) -> pd.DataFrame:
    """The model's columns of ``frame``, in order, values untouched (a missing value keeps its
    form), with pandas' categories back where the model was fitted on them: what the original
    is called on. The input check (:func:`conform`) still gives a bad frame its one line."""
    conform(frame.head(1), inputs)
    by_name = {str(c): c for c in frame.columns}
    x = pd.DataFrame({s.name: frame[by_name[s.name]] for s in inputs}, index=frame.index)
    return as_fitted(x, inputs)
