"""Spark's byte limit on an Arrow batch bound for Python, and when the job skips its check.

Spark 4 cuts the batches it sends to a Python worker at ``maxRecordsPerBatch`` rows or
``spark.sql.execution.arrow.maxBytesPerBatch`` bytes (64 MB by default), whichever comes first.
To apply the byte limit it asks the Arrow writer for the batch's size after *every row*
(``BatchedPythonArrowInput.writeSizedBatch``), and that walks the struct vector's children each
time, a large share of the JVM's time (docs/benchmarks.md). Spark skips the check only when the
limit is ``Int.MaxValue``.

When every column the job sends has a fixed width, a batch can never be larger than
``rows x row width``; if that is far below the limit, the limit can never cut a batch, and
skipping its check changes no batch. :func:`skipping_size_check` then sets the limit to
``Int.MaxValue`` for the job's own action and puts the session's value back after it. A column
of variable width (strings fed as strings, a string or binary pass-through column, the reason
column of ``on_invalid = "null"``) keeps Spark's check: there the limit is what stops one batch
of long values from filling a worker's memory.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pyspark.sql.types import DataType, StructType

__all__ = ["MAX_BYTES", "row_bytes", "skipping_size_check"]

MAX_BYTES = "spark.sql.execution.arrow.maxBytesPerBatch"
MAX_ROWS = "spark.sql.execution.arrow.maxRecordsPerBatch"
_UNCHECKED = 2**31 - 1  # Int.MaxValue: the value at which Spark skips the check
# the batch's most bytes must stay this many times below the limit (validity and offset
# buffers, and Arrow's own rounding, are counted generously, but a margin costs nothing)
_MARGIN = 4
_UNITS = {"": 1, "b": 1, "k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40, "p": 2**50}


def _width(dt: DataType) -> int | None:
    """Bytes per row of a column of this type in Arrow (with its validity bit rounded up to a
    byte), None for a variable width."""
    from pyspark.sql import types as T

    fixed = {
        T.BooleanType: 1, T.ByteType: 1, T.ShortType: 2, T.IntegerType: 4, T.DateType: 4,
        T.FloatType: 4, T.LongType: 8, T.DoubleType: 8, T.TimestampType: 8,
        T.TimestampNTZType: 8, T.DecimalType: 16, T.NullType: 0,
    }  # fmt: skip
    for kind, width in fixed.items():
        if isinstance(dt, kind):
            return width + 1
    if isinstance(dt, T.StructType):
        widths = [_width(f.dataType) for f in dt.fields]
        return None if None in widths else sum(w for w in widths if w is not None) + 1
    return None  # strings, binary, arrays, maps, variants, intervals: not bounded here


def row_bytes(schema: StructType) -> tuple[int | None, str]:
    """The most bytes a row of ``schema`` takes in an Arrow batch, or None and the first column
    of variable width."""
    total = 1  # mapInArrow wraps the row in a struct: its validity
    for f in schema.fields:
        width = _width(f.dataType)
        if width is None:
            return None, f.name
        total += width
    return total, ""


def _bytes(text: str) -> int | None:
    """A Spark size ("67108864b", "64m", "1g") in bytes; None if it is not one."""
    match = re.fullmatch(r"\s*(\d+)\s*([bkmgtp]?)b?\s*", text.lower())
    return int(match.group(1)) * _UNITS[match.group(2)] if match else None


@contextmanager
def skipping_size_check(spark: Any, row_width: int | None, why: str = "") -> Iterator[str]:
    """Within the block, Spark's per-row batch size check is off where the job's batches
    (``row_width`` bytes a row at most, None: not bounded, ``why`` names the column) can never
    reach the session's byte limit; the session's setting is back after it. Yields what was
    done, one line for the run summary."""
    limit = _bytes(str(spark.conf.get(MAX_BYTES)))
    rows = int(str(spark.conf.get(MAX_ROWS)))
    if limit is None:  # Spark refuses such values itself; keep its check rather than guess
        yield f"sized by Spark's byte limit (its value {spark.conf.get(MAX_BYTES)!r} is not read here)"
        return
    if limit >= _UNCHECKED:
        yield "Spark's byte limit is off in this session"
        return
    if row_width is None:
        yield f"sized by Spark's byte limit (column {why!r} has no fixed width)"
        return
    if rows <= 0 or rows * row_width * _MARGIN > limit:
        yield f"sized by Spark's byte limit ({rows} rows of {row_width} bytes may reach it)"
        return
    before = spark.conf.get(MAX_BYTES, None)  # None: Spark's default, not set in the session
    spark.conf.set(MAX_BYTES, str(_UNCHECKED))
    try:
        yield (
            f"{rows:,} rows ({rows * row_width / 2**20:.1f} MiB at most: fixed-width columns), "
            "Spark's per-row size check skipped"
        )
    finally:
        if before is None:
            spark.conf.unset(MAX_BYTES)
        else:
            spark.conf.set(MAX_BYTES, before)
