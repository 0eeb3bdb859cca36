"""Reading samples and inputs from files: .npy, .npz, .csv, .parquet, .json, .jsonl."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from formats._lazy import CORE, require
from formats._text import one_line
from formats.errors import InputError, NotFoundError

__all__ = ["SUFFIXES", "check_numpy_file", "read_sample"]

SUFFIXES = (".npy", ".npz", ".csv", ".parquet", ".json", ".jsonl")
# What a file numpy wrote starts with; np.load falls back to unpickling anything else and then
# advises allow_pickle=True, which is the wrong advice for a file that is simply not an array.
_NUMPY_MAGIC = {
    ".npy": ((b"\x93NUMPY",), "numpy.save"),
    ".npz": ((b"PK\x03\x04", b"PK\x05\x06"), "numpy.savez"),
}


def read_sample(path: str | Path) -> Any:
    """An array (.npy, single-array .json), a dict of arrays (.npz, .json object) or a DataFrame.

    Tabular files stay DataFrames so that converters can map columns to named inputs.
    """
    path = Path(path)
    if not path.exists():
        raise NotFoundError(f"sample file {str(path)!r} does not exist")
    if path.is_dir():
        raise InputError(
            f"sample {str(path)!r} is a directory; give a file: {', '.join(SUFFIXES)}"
        )
    suffix = path.suffix.lower()
    try:
        if suffix == ".npy":
            check_numpy_file(path)
            return np.load(path, allow_pickle=False)
        if suffix == ".npz":
            check_numpy_file(path)
            with np.load(path, allow_pickle=False) as npz:
                return {key: npz[key] for key in npz.files}
        if suffix in (".csv", ".parquet", ".jsonl"):
            return _non_empty(_read_table(path, suffix), path)
        if suffix == ".json":
            data = json.loads(path.read_text())
            if isinstance(data, dict):
                return {key: np.asarray(value) for key, value in data.items()}
            return np.asarray(data)
    # EOFError: numpy's answer to a truncated .npy (click would print "Aborted!"); BadZipFile:
    # a truncated .npz.
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        raise InputError(f"cannot read {str(path)!r}: {one_line(exc)}") from exc
    raise InputError(
        f"unsupported sample file {path.name!r}; use one of {', '.join(SUFFIXES)}"
    )


def _read_table(path: Path, suffix: str) -> Any:
    pandas = require("pandas", CORE)
    if suffix == ".csv":
        return pandas.read_csv(path)
    if suffix == ".parquet":
        return pandas.read_parquet(path)
    return pandas.read_json(path, lines=True)


def _non_empty(frame: Any, path: Path) -> Any:
    # An empty table would otherwise surface later as a baffling "shape [0, 0]" mismatch.
    if len(frame) == 0:
        raise InputError(f"sample file {str(path)!r} has no rows; give at least one")
    return frame


def check_numpy_file(path: Path) -> None:
    """Refuse a .npy/.npz file that numpy did not write (empty, truncated to nothing, other data)."""
    magics, writer = _NUMPY_MAGIC[path.suffix.lower()]
    try:
        with open(path, "rb") as fh:
            head = fh.read(8)
    except OSError as exc:
        raise InputError(f"cannot read {str(path)!r}: {exc.strerror}") from exc
    if not head.startswith(magics):
        raise InputError(
            f"{str(path)!r} is not a {path.suffix.lower()} file "
            f"({'it is empty' if not head else 'no NumPy header'}); write it with {writer}"
        )
