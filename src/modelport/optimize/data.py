"""Feeds for calibration, evaluation and timing: from files, or generated around an example.

Every feed here is a dict of arrays keyed by the model's input names, with the rows on axis 0.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from modelport.errors import InputError
from modelport.signature import Signature, TensorSpec, numpy_dtype

__all__ = [
    "Feed",
    "feed_rows",
    "generate_around",
    "iter_batches",
    "load_feed",
    "resolve_labels",
    "take_rows",
    "to_feed",
]

Feed = dict[str, np.ndarray]

# Generated evaluation data: this many rows, spread around the input example.
GENERATED_ROWS = 256
# Noise added to generated float rows, as a fraction of the example's own spread.
GENERATED_NOISE = 0.1


def load_feed(
    path: str | Path, signature: Signature, label_key: str | None = None
) -> tuple[Feed, np.ndarray | None]:
    """Read a data file into a feed; ``label_key`` names a column (or .npz/.json key) of labels.

    The label column is taken out before the rest is mapped to inputs, so a CSV can hold the
    features and the target side by side.
    """
    from modelport.datafiles import read_sample

    data = read_sample(path)
    labels = None
    if label_key is not None:
        data, labels = _pop_labels(data, label_key)
    return to_feed(data, signature, source=str(path)), labels


def _pop_labels(data: Any, key: str) -> tuple[Any, np.ndarray | None]:
    if isinstance(data, dict):
        if key not in data:
            return data, None
        rest = {k: v for k, v in data.items() if k != key}
        return rest, np.asarray(data[key])
    columns = getattr(data, "columns", None)
    if columns is not None and key in columns:
        return data.drop(columns=[key]), data[key].to_numpy()
    return data, None


def to_feed(data: Any, signature: Signature, source: str = "the data") -> Feed:
    """Map an array, a dict of arrays or a DataFrame to the model's inputs, cast and reshaped."""
    specs = signature.inputs
    names = signature.input_names
    raw: dict[str, np.ndarray]
    if isinstance(data, Mapping):
        missing = [n for n in names if n not in data]
        if missing:
            raise InputError(
                f"{source} lacks input(s) {missing}; it has {sorted(data)} and the model "
                f"expects {names}"
            )
        raw = {n: np.asarray(data[n]) for n in names}
    elif hasattr(data, "columns"):  # a pandas DataFrame
        if len(specs) == 1 and specs[0].name not in data.columns:
            raw = {specs[0].name: data.to_numpy()}
        else:
            missing = [n for n in names if n not in data.columns]
            if missing:
                raise InputError(
                    f"{source} lacks column(s) {missing} for the model's inputs {names}"
                )
            raw = {n: data[n].to_numpy() for n in names}
    else:
        if len(specs) != 1:
            raise InputError(
                f"{source} holds one array but the model has inputs {names}; "
                "use an .npz file with one array per input"
            )
        raw = {specs[0].name: np.asarray(data)}
    feed = {spec.name: _coerce(raw[spec.name], spec, source) for spec in specs}
    rows = {len(a) for a in feed.values()}
    if len(rows) > 1:
        raise InputError(f"the inputs in {source} have different numbers of rows: {sorted(rows)}")
    if rows == {0}:
        raise InputError(f"{source} has no rows")
    signature.check_feed(feed)
    return feed


def _coerce(array: np.ndarray, spec: TensorSpec, source: str) -> np.ndarray:
    """Cast to the input's dtype and fit its rank: [N, 64] becomes [N, 1, 8, 8] when fixed."""
    if spec.dtype == "str":
        array = array.astype(object)
    else:
        try:
            array = array.astype(numpy_dtype(spec.dtype), copy=False)
        except (TypeError, ValueError) as exc:
            raise InputError(
                f"input {spec.name!r} in {source} cannot be read as {spec.dtype}: {exc}"
            ) from exc
    rank = len(spec.shape)
    if array.ndim == rank or rank == 0:
        return array
    tail = spec.shape[1:]
    if all(isinstance(d, int) for d in tail):
        size = int(np.prod([int(d) for d in tail if d is not None]))  # type: ignore[arg-type]
        if array.ndim >= 1 and array.size == len(array) * size:
            return array.reshape((len(array), *[int(d) for d in tail]))  # type: ignore[arg-type]
    if array.ndim == 1 and rank == 2:
        return array.reshape(-1, 1)
    raise InputError(
        f"input {spec.name!r} in {source} has shape {list(array.shape)}, "
        f"the model expects {spec.wire_shape}"
    )


def resolve_labels(labels: Any, rows: int) -> np.ndarray:
    """Labels from an array or a file (.npy, one-array .npz/.json, one-column table)."""
    if isinstance(labels, str | Path):
        from modelport.datafiles import read_sample

        path = Path(labels)
        data = read_sample(path)
        if isinstance(data, dict):
            if len(data) != 1:
                raise InputError(f"labels file {path.name!r} must hold one array, not {list(data)}")
            data = next(iter(data.values()))
        elif hasattr(data, "columns"):
            if len(data.columns) != 1:
                raise InputError(f"labels file {path.name!r} must have one column")
            data = data.iloc[:, 0]
        labels = data
    array = np.asarray(labels)
    if array.ndim == 2 and array.shape[1] == 1:
        array = array[:, 0]
    if array.ndim != 1 or len(array) != rows:
        raise InputError(
            f"labels have shape {list(array.shape)}; expected one label per evaluation row ({rows})"
        )
    return array


def feed_rows(feed: Mapping[str, np.ndarray]) -> int:
    return len(next(iter(feed.values())))


def take_rows(feed: Mapping[str, np.ndarray], index: np.ndarray | slice) -> Feed:
    return {name: array[index] for name, array in feed.items()}


def iter_batches(feed: Mapping[str, np.ndarray], size: int) -> Iterator[Feed]:
    rows = feed_rows(feed)
    for start in range(0, rows, size):
        yield take_rows(feed, slice(start, start + size))


def generate_around(
    example: Mapping[str, np.ndarray], rows: int = GENERATED_ROWS, seed: int = 0
) -> Feed:
    """Rows drawn from the example with Gaussian noise on float inputs (a weak stand-in for data).

    The example's rows come first unchanged; the noise is ``GENERATED_NOISE`` times the spread of
    each input's values, so generated rows stay in the range the model was shown.
    """
    rng = np.random.default_rng(seed)
    count = feed_rows(example)
    keep = min(count, rows)
    index = np.concatenate([np.arange(keep), rng.integers(0, count, rows - keep)])
    feed: Feed = {}
    for name, array in example.items():
        picked = array[index]
        if picked.dtype.kind == "f":
            spread = float(np.std(array)) if array.size > 1 else 0.0
            scale = GENERATED_NOISE * max(spread, float(np.mean(np.abs(array))), 1e-3)
            noise = rng.normal(0.0, scale, picked.shape).astype(picked.dtype)
            noise[:keep] = 0
            picked = picked + noise
        feed[name] = picked
    return feed
