"""Output files written chunk by chunk into a temporary path (renamed into place by the caller).

``.npy``/``.npz`` spill each output's rows to a temporary file and write the array header once
the row count is known; tables append rows; ``.json`` is built whole.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import numpy as np

from modelport._lazy import require
from modelport.errors import InputError, UsageError
from modelport.predict.readers import INPUT_SUFFIXES

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["OUTPUT_SUFFIXES", "Writer", "make_writer"]

OUTPUT_SUFFIXES = INPUT_SUFFIXES


class Writer:
    def write(self, outputs: dict[str, np.ndarray]) -> None:
        raise NotImplementedError

    def finish(self) -> None:
        raise NotImplementedError

    def abort(self) -> None:
        """Release resources after a failure; the temporary file is removed by atomic_path."""

    def __enter__(self) -> Writer:
        return self

    def __exit__(self, exc_type: Any, *_: Any) -> None:
        if exc_type is None:
            self.finish()
        else:
            self.abort()


def make_writer(destination: Path, tmp: Path, names: list[str]) -> Writer:
    suffix = destination.suffix.lower()
    if suffix == ".npy":
        if len(names) != 1:
            raise UsageError(
                f"an .npy file holds one output but the model gives {names}; write an .npz, or "
                "pick one with --output-name"
            )
        return _NpyWriter(tmp, names)
    if suffix == ".npz":
        return _NpyWriter(tmp, names, archive=True)
    if suffix == ".json":
        return _JsonWriter(tmp)
    require("pandas", "io")
    if suffix == ".parquet":
        require("pyarrow", "io")
    return _TableWriter(tmp, suffix)


class _Spill:
    """One output's rows appended as raw bytes to a temporary file (strings stay in memory)."""

    def __init__(self, name: str, directory: Path) -> None:
        self.name = name
        self.dtype: np.dtype[Any] | None = None
        self.row_shape: tuple[int, ...] | None = None
        self.rows = 0
        # Closed by close(); lives across chunks, so no with-block fits.
        self.file: IO[bytes] = tempfile.TemporaryFile(  # noqa: SIM115
            dir=directory, prefix=".modelport-spill-"
        )
        self.strings: list[np.ndarray] = []

    def append(self, array: np.ndarray) -> None:
        if self.row_shape is None:
            self.row_shape = tuple(array.shape[1:])
            self.dtype = array.dtype
        elif tuple(array.shape[1:]) != self.row_shape:
            raise InputError(
                f"output {self.name!r} changed shape between chunks ({list(self.row_shape)} then "
                f"{list(array.shape[1:])}); use a file format with one column per value"
            )
        self.rows += array.shape[0]
        if array.dtype.kind in "OUS":
            self.strings.append(np.asarray(array).astype(str))
        else:
            self.file.write(np.ascontiguousarray(array, dtype=self.dtype).tobytes())

    def write_npy(self, fh: IO[bytes]) -> None:
        from numpy.lib import format as npformat

        if self.strings:  # a fixed-width unicode array: no pickles in our outputs
            np.save(fh, np.concatenate(self.strings), allow_pickle=False)
            return
        assert self.dtype is not None and self.row_shape is not None
        header = {
            "descr": npformat.dtype_to_descr(self.dtype),
            "fortran_order": False,
            "shape": (self.rows, *self.row_shape),
        }
        try:
            npformat.write_array_header_1_0(fh, header)
        except ValueError:  # header too large for format 1.0 (very many dimensions)
            npformat.write_array_header_2_0(fh, header)
        self.file.seek(0)
        shutil.copyfileobj(self.file, fh, length=1 << 20)

    def close(self) -> None:
        self.file.close()


class _NpyWriter(Writer):
    def __init__(self, tmp: Path, names: list[str], archive: bool = False) -> None:
        self.tmp = tmp
        self.archive = archive
        self.spills = {name: _Spill(name, tmp.parent) for name in names}

    def write(self, outputs: dict[str, np.ndarray]) -> None:
        for name, array in outputs.items():
            self.spills[name].append(array)

    def finish(self) -> None:
        try:
            if self.archive:
                import zipfile

                # Stored (not deflated) members, like np.savez: np.load reads them as usual.
                with zipfile.ZipFile(self.tmp, "w", zipfile.ZIP_STORED, allowZip64=True) as zf:
                    for name, spill in self.spills.items():
                        with zf.open(f"{name}.npy", "w", force_zip64=True) as member:
                            spill.write_npy(member)  # type: ignore[arg-type]
            else:
                with open(self.tmp, "wb") as fh:
                    next(iter(self.spills.values())).write_npy(fh)
        finally:
            self.abort()

    def abort(self) -> None:
        for spill in self.spills.values():
            spill.close()


class _JsonWriter(Writer):
    """``{"output": [[...], ...]}``; JSON is built whole, so it is for modest outputs."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.parts: dict[str, list[np.ndarray]] = {}

    def write(self, outputs: dict[str, np.ndarray]) -> None:
        for name, array in outputs.items():
            self.parts.setdefault(name, []).append(array)

    def finish(self) -> None:
        data = {name: _jsonable(np.concatenate(parts)) for name, parts in self.parts.items()}
        with open(self.tmp, "w", encoding="utf-8") as fh:
            json.dump(data, fh)


def _jsonable(array: np.ndarray) -> Any:
    if array.dtype.kind in "OSU":
        return array.astype(str).tolist()
    return array.tolist()


class _TableWriter(Writer):
    """CSV, JSON lines or Parquet with a column per output value, appended chunk by chunk."""

    def __init__(self, tmp: Path, suffix: str) -> None:
        self.tmp = tmp
        self.suffix = suffix
        self.first = True
        self.fh: IO[str] | None = None
        self.parquet: Any = None

    def write(self, outputs: dict[str, np.ndarray]) -> None:
        frame = _frame(outputs)
        if self.suffix == ".parquet":
            pa = require("pyarrow", "io")
            table = pa.Table.from_pandas(frame, preserve_index=False)
            if self.parquet is None:
                self.parquet = require("pyarrow.parquet", "io").ParquetWriter(
                    str(self.tmp), table.schema
                )
            self.parquet.write_table(table)
            return
        if self.fh is None:
            self.fh = open(self.tmp, "w", encoding="utf-8", newline="")  # noqa: SIM115
        if self.suffix == ".csv":
            frame.to_csv(self.fh, header=self.first, index=False)
        else:  # .jsonl
            text = frame.to_json(orient="records", lines=True)
            self.fh.write(text if text.endswith("\n") else text + "\n")
        self.first = False

    def finish(self) -> None:
        self.abort()

    def abort(self) -> None:
        if self.parquet is not None:
            self.parquet.close()
            self.parquet = None
        if self.fh is not None:
            self.fh.close()
            self.fh = None


def _frame(outputs: dict[str, np.ndarray]) -> pd.DataFrame:
    pd = require("pandas", "io")
    columns: dict[str, np.ndarray] = {}
    for name, array in outputs.items():
        flat = array.reshape(array.shape[0], -1)
        if flat.shape[1] == 1:  # [N] or [N, 1] (a regressor's usual output): one plain column
            columns[name] = flat[:, 0]
        else:
            for i in range(flat.shape[1]):
                columns[f"{name}_{i}"] = flat[:, i]
    for key, values in columns.items():
        if values.dtype.kind in "OSU":
            columns[key] = values.astype(str).astype(object)
    return pd.DataFrame(columns)
