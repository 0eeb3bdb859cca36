"""Reading samples and inputs from files: .npy, .npz, .csv, .parquet, .json, .jsonl."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from modelport._lazy import require
from modelport.errors import InputError, NotFoundError

__all__ = ["SUFFIXES", "read_sample"]

SUFFIXES = (".npy", ".npz", ".csv", ".parquet", ".json", ".jsonl")


def read_sample(path: str | Path) -> Any:
    """An array (.npy, single-array .json), a dict of arrays (.npz, .json object) or a DataFrame.

    Tabular files stay DataFrames so that converters can map columns to named inputs.
    """
    path = Path(path)
    if not path.exists():
        raise NotFoundError(f"sample file {str(path)!r} does not exist")
    suffix = path.suffix.lower()
    try:
        if suffix == ".npy":
            return np.load(path, allow_pickle=False)
        if suffix == ".npz":
            with np.load(path, allow_pickle=False) as npz:
                return {key: npz[key] for key in npz.files}
        if suffix == ".csv":
            return require("pandas", "io").read_csv(path)
        if suffix == ".parquet":
            return require("pandas", "io").read_parquet(path)
        if suffix == ".jsonl":
            return require("pandas", "io").read_json(path, lines=True)
        if suffix == ".json":
            data = json.loads(path.read_text())
            if isinstance(data, dict):
                return {key: np.asarray(value) for key, value in data.items()}
            return np.asarray(data)
    except (ValueError, OSError, json.JSONDecodeError) as exc:
        raise InputError(f"cannot read {str(path)!r}: {exc}") from exc
    raise InputError(
        f"unsupported sample file {path.name!r}; use one of {', '.join(SUFFIXES)}"
    )
