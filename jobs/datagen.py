"""The embedded default dataset, scaled to N rows of Parquet for the batch job.

The data are the Palmer penguins (palmerpenguins ships them: nothing is downloaded): 344 real
birds with numeric measurements, two categorical columns and real missing values. To make N
rows, birds are drawn with replacement (fixed seed) and each measurement moves by a small
fraction of its column's spread, rounded to the precision it was measured in; missing values
stay missing. Every row gets a unique ``row_id``, so a scored output can be checked row by row.

    python -m jobs.datagen --rows 1000000 --output data/penguins

writes several Parquet files (``part-00000.parquet`` ...), each of several row groups, into a
temporary directory that is renamed into place when complete.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from formats.errors import UsageError
from jobs._cli import Parser, guarded

__all__ = ["FEATURES", "TARGET", "generate", "load_penguins", "main"]

TARGET = "species"
NUMERIC = {  # column -> the step it was measured in
    "bill_length_mm": 0.1,
    "bill_depth_mm": 0.1,
    "flipper_length_mm": 1.0,
    "body_mass_g": 25.0,
}
CATEGORICAL = ["island", "sex"]
FEATURES = ["island", *NUMERIC, "sex", "year"]
JITTER = 0.05  # of a column's standard deviation
ROWS_PER_FILE = 250_000
ROW_GROUP = 50_000


def load_penguins() -> pd.DataFrame:
    """The 344 penguins as palmerpenguins ships them (features + species)."""
    from palmerpenguins import load_penguins as load

    frame: pd.DataFrame = load()
    return frame[[*FEATURES, TARGET]]


def _chunks(rows: int, seed: int, chunk: int) -> Iterator[pd.DataFrame]:
    base = load_penguins()
    spread = {c: float(base[c].std()) for c in NUMERIC}
    rng = np.random.default_rng(seed)
    for start in range(0, rows, chunk):
        n = min(chunk, rows - start)
        picked = base.iloc[rng.integers(0, len(base), n)].reset_index(drop=True)
        for column, step in NUMERIC.items():
            noise = rng.normal(0.0, JITTER * spread[column], n)
            picked[column] = np.round((picked[column] + noise) / step) * step
        picked.insert(0, "row_id", np.arange(start, start + n, dtype=np.int64))
        yield picked


def generate(
    rows: int, output: str | Path, *, seed: int = 42, rows_per_file: int = ROWS_PER_FILE
) -> list[Path]:
    """Write ``rows`` rows into the directory ``output`` (replaced if it exists)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    if rows < 1:
        raise ValueError("rows must be at least 1")
    destination = Path(output)
    destination.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{destination.name}.", dir=destination.parent))
    try:
        files = []
        for i, frame in enumerate(_chunks(rows, seed, rows_per_file)):
            path = tmp / f"part-{i:05d}.parquet"
            pq.write_table(
                pa.Table.from_pandas(frame, preserve_index=False), path, row_group_size=ROW_GROUP
            )
            files.append(destination / path.name)
        os.chmod(tmp, 0o755)
        if destination.exists():
            shutil.rmtree(destination)
        os.replace(tmp, destination)
        return files
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main(argv: Sequence[str] | None = None) -> int:
    return guarded(_main, argv)


def _main(argv: list[str]) -> int:
    parser = Parser(prog="python -m jobs.datagen", description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows to write")
    parser.add_argument("--output", default="data/penguins", help="directory to (re)write")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--rows-per-file", type=int, default=ROWS_PER_FILE)
    args = parser.parse_args(argv)
    if args.rows < 1 or args.rows_per_file < 1:
        raise UsageError("--rows and --rows-per-file must be at least 1")
    files = generate(args.rows, args.output, seed=args.seed, rows_per_file=args.rows_per_file)
    print(f"wrote {args.rows:,} rows in {len(files)} file(s) to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
