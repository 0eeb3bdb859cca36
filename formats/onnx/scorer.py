"""The bundle's ONNX model scored by ONNX Runtime, with the canonical output columns.

The feeding and decoding are plain functions of numpy arrays, so the Spark executors' UDF
(:mod:`jobs.scoring.worker`) runs exactly this code on Arrow batches: the job and
``formats.load`` cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from formats.errors import InputError
from formats.onnx.label_index import LABEL_INDEX
from formats.onnx.runtime import Session, SessionOptions
from formats.schema import ColumnSpec, canonical_columns, conform

__all__ = ["OnnxScorer"]


class OnnxScorer:
    fmt = "onnx"
    engine = "onnxruntime"

    def __init__(
        self,
        model: bytes,
        task: str,
        classes: list[Any] | None,
        inputs: list[ColumnSpec],
        *,
        providers: Sequence[str] = (),
        intra_op_threads: int = 0,
        provider_options: Sequence[dict[str, Any]] | None = None,
    ) -> None:
        self.task = task
        self.classes = classes
        self.inputs = inputs
        self.session = Session(
            model,
            SessionOptions(
                providers=tuple(providers),
                intra_op_threads=intra_op_threads,
                provider_options=tuple(provider_options or ()),
            ),
        )
        self.providers = self.session.providers
        self._dtypes = {spec.name: np.dtype(spec.dtype) for spec in self.session.signature.inputs}
        names = self.session.signature.output_names
        self._label = "label" if "label" in names else None
        self._proba = "probabilities" if "probabilities" in names else None
        # the Spark job's model may return the label as its class index (formats.onnx.label_index)
        self._index = LABEL_INDEX if LABEL_INDEX in names and classes else None
        self._classes = np.array(classes or [], dtype=object)
        outputs = ("label", "probabilities", LABEL_INDEX)
        self._value = next((n for n in names if n not in outputs), names[0])
        # All-numeric models without a ColumnTransformer take one [batch, n] tensor of the
        # columns in manifest order; the others one [batch, 1] tensor per column.
        self._matrix: str | None = None
        missing = [s.name for s in inputs if s.name not in self._dtypes]
        if missing and len(self._dtypes) == 1:
            (self._matrix,) = self._dtypes
            width = self.session.signature.inputs[0].shape[-1]
            if width not in (None, len(inputs)) or any(s.kind != "numeric" for s in inputs):
                raise InputError(
                    f"model.onnx takes one tensor of width {width}, which does not fit the "
                    f"manifest's {len(inputs)} input columns; re-create the bundle"
                )
        elif missing:
            raise InputError(
                f"model.onnx has no input(s) {missing} of the manifest; the bundle's files do "
                "not belong together: re-create it"
            )

    def feed(
        self, columns: Mapping[str, np.ndarray], strings_filled: bool = False
    ) -> dict[str, np.ndarray]:
        """1-D column arrays (by input name) as the model's ``[batch, 1]`` tensors.

        A missing string (None or NaN in an object array) is fed as "" (see formats.onnx.export).
        ``strings_filled``: the caller's object arrays hold str only, "" for a missing one (the
        Spark job's Arrow batches), so the test for missing values, which visits every object
        of the column, is skipped.
        """
        if self._matrix is not None:
            dtype = self._dtypes[self._matrix]
            stacked = np.column_stack([np.asarray(columns[s.name], dtype=dtype) for s in self.inputs])
            return {self._matrix: stacked}
        feed = {}
        for name, dtype in self._dtypes.items():
            values = np.asarray(columns[name])
            if dtype == np.dtype(object) or dtype.kind in "US":
                if values.dtype != object:
                    values = values.astype(str).astype(object)
                elif not strings_filled:  # Python strings (conform): a missing one becomes ""
                    missing = pd.isna(values)
                    if missing.any():
                        values = np.where(missing, "", values)
            elif values.dtype != dtype:
                if dtype.kind in "iu" and values.dtype.kind == "f" and np.isnan(values).any():
                    # NaN has no integer form: casting would feed INT64_MIN and score silently
                    raise InputError(
                        f"column {name!r} has null values but model.onnx takes {dtype} there; "
                        "fill them before scoring (or filter those rows out)"
                    )
                values = values.astype(dtype)
            feed[name] = values.reshape(-1, 1)
        return feed

    def run(self, feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        return self.session.run(feed)

    def canonical(self, outputs: Mapping[str, np.ndarray], index: Any = None) -> pd.DataFrame:
        return pd.DataFrame(self.canonical_columns(outputs), index=index)

    def canonical_columns(
        self, outputs: Mapping[str, np.ndarray], labels: Any = None
    ) -> dict[str, Any]:
        """:meth:`canonical` as arrays by column name (no pandas: the Spark job's batches).
        ``labels``: the classes as an Arrow array, in order (the job's); where the model returns
        the class index, the label column is then ``labels.take(index)``, an Arrow array made
        with no Python object per row."""
        if self.task == "classification":
            label = outputs[self._label] if self._label else None
            index = self.label_index(outputs)
            if index is not None and labels is None:
                label = self._classes[index]
            proba = outputs[self._proba] if self._proba else None
            out = canonical_columns(self.task, self.classes, label=label, proba=proba)
            if index is not None and labels is not None:
                out["label"] = labels.take(index)
            return out
        return canonical_columns(self.task, None, prediction=outputs[self._value])

    def label_index(self, outputs: Mapping[str, np.ndarray]) -> np.ndarray | None:
        """Each row's class as an index into ``classes``, where the model returns one instead
        of the label (formats.onnx.label_index); None otherwise."""
        if self._index is None:
            return None
        return np.asarray(outputs[self._index]).reshape(-1)

    def _outputs(self, frame: pd.DataFrame) -> dict[str, np.ndarray]:
        x = conform(frame, self.inputs)
        return self.run(self.feed({c: x[c].to_numpy() for c in x.columns}))

    def predict(self, frame: pd.DataFrame) -> pd.DataFrame:
        return self.canonical(self._outputs(frame), frame.index)

    def raw_labels(self, frame: pd.DataFrame) -> np.ndarray:
        """The label tensor as ONNX Runtime returns it (for export's precision check)."""
        if self._label is None:
            raise InputError("model.onnx has no label output")
        return np.asarray(self._outputs(frame)[self._label]).reshape(-1)
