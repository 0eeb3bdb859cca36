"""Input files read a chunk of rows at a time (see the package docstring for what streams)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from modelport._lazy import require
from modelport.datafiles import check_numpy_file
from modelport.errors import InputError, ModelportError, UsageError
from modelport.predict._text import one_line

__all__ = ["INPUT_SUFFIXES", "UNNAMED", "Chunk", "Reader", "open_reader"]

INPUT_SUFFIXES = (".npy", ".npz", ".csv", ".parquet", ".json", ".jsonl")
UNNAMED = ""  # key of the one array of a .npy or single-array .json file

Chunk = Any  # dict[str, np.ndarray] for array files, a pandas DataFrame for tables


@dataclass
class Reader:
    chunks: Iterator[Chunk]
    total: int | None  # rows, when known up front (for the progress bar)
    notes: list[str] = field(default_factory=list)


def open_reader(path: Path, batch_size: int) -> Reader:
    suffix = path.suffix.lower()
    try:
        if suffix in (".npy", ".npz"):
            check_numpy_file(path)
        if suffix == ".npy":
            array = np.load(path, mmap_mode="r", allow_pickle=False)
            return _array_reader({UNNAMED: array}, batch_size, path)
        if suffix == ".npz":
            # np.load on an .npz is lazy per member, but each member is read whole when touched.
            with np.load(path, allow_pickle=False) as npz:
                arrays = {key: npz[key] for key in npz.files}
            return _array_reader(arrays, batch_size, path)
        if suffix == ".json":
            return _json_reader(path, batch_size)
        pd = require("pandas", "io")
        if suffix == ".csv":
            return Reader(_guard(pd.read_csv(path, chunksize=batch_size), path), None)
        if suffix == ".jsonl":
            chunks = pd.read_json(path, lines=True, chunksize=batch_size)
            return Reader(_guard(chunks, path), None)
        if suffix == ".parquet":
            pq = require("pyarrow.parquet", "io")
            parquet = pq.ParquetFile(path)
            batches = (b.to_pandas() for b in parquet.iter_batches(batch_size=batch_size))
            return Reader(_guard(batches, path), parquet.metadata.num_rows)
    except ModelportError:
        raise
    except Exception as exc:  # numpy's, pandas' and pyarrow's parse errors share no base class
        raise InputError(f"cannot read {str(path)!r}: {one_line(exc)}") from exc
    raise UsageError(f"unsupported input file {path.name!r}")  # pragma: no cover


def _guard(chunks: Iterator[Chunk], path: Path) -> Iterator[Chunk]:
    """Parse errors surface while iterating; turn them into one-line input errors."""
    iterator = iter(chunks)
    while True:
        try:
            chunk = next(iterator)
        except StopIteration:
            return
        except Exception as exc:  # pandas/pyarrow parser errors have no common base class
            raise InputError(f"cannot read {str(path)!r}: {one_line(exc)}") from exc
        yield chunk


def _array_reader(arrays: dict[str, np.ndarray], batch_size: int, path: Path) -> Reader:
    if not arrays:
        raise InputError(f"{str(path)!r} holds no arrays")
    lengths = {}
    for key, array in arrays.items():
        if array.ndim == 0:
            raise InputError(f"array {key or path.name!r} is a scalar; predict needs rows")
        if array.dtype.kind == "O":
            raise InputError(f"array {key or path.name!r} holds Python objects; save plain arrays")
        lengths[key] = array.shape[0]
    if len(set(lengths.values())) > 1:
        raise InputError(f"arrays in {str(path)!r} have different row counts {lengths}")
    total = next(iter(lengths.values()))

    def chunks() -> Iterator[Chunk]:
        for start in range(0, total, batch_size):
            # np.asarray copies only this slice out of a memory map.
            yield {key: np.asarray(a[start : start + batch_size]) for key, a in arrays.items()}

    return Reader(chunks(), total)


def _json_reader(path: Path, batch_size: int) -> Reader:
    data = json.loads(path.read_text())
    note = "the .json input was parsed whole; use .jsonl to stream large inputs"
    if isinstance(data, list) and data and all(isinstance(r, dict) for r in data):
        frame = require("pandas", "io").DataFrame.from_records(data)
        frames = (frame.iloc[i : i + batch_size] for i in range(0, len(frame), batch_size))
        return Reader(frames, len(frame), [note])
    if isinstance(data, dict):
        arrays = {str(k): np.asarray(v) for k, v in data.items()}
    else:
        arrays = {UNNAMED: np.asarray(data)}
    arrays = {k: (a.astype(str) if a.dtype.kind == "O" else a) for k, a in arrays.items()}
    reader = _array_reader(arrays, batch_size, path)
    reader.notes.append(note)
    return reader
