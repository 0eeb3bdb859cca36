"""The data files of a local input, glob patterns included, found on the driver before Spark
starts.

``spark.read.parquet`` takes Hadoop glob patterns (``data/dt=2026-12-0*``,
``data/{2025,2026}/*.parquet``): users pass them to pick a day's partitions or a set of
directories, so the job's checks must take them too. Hadoop's patterns are Python's ``glob``
with two differences, handled here: ``{a,b}`` alternatives (expanded first, nested ones too)
and ``[^...]`` for a negated class (Python's ``[!...]``); a backslash escapes the next
character in both. Like Spark's file index, names starting with ``_`` or ``.`` under a matched
directory are not data (``_SUCCESS``, ``.crc`` files, ``_temporary``).

:func:`check_not_input` keeps an ``overwrite`` from deleting the data it is about to score.
Spark's own writer does not refuse it: ``df.write.mode("overwrite").parquet(p)`` deletes
``p`` before a task reads it when ``df`` reads ``p``, a directory under ``p`` or a pattern
that matches either (seen here: the input gone, the job failing on a missing file).
"""

from __future__ import annotations

import glob
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from formats._files import local_path as _local_path
from formats.errors import InputError, UsageError

__all__ = ["arrow_dataset", "check_footers", "check_input", "check_not_input", "check_output",
           "data_files", "is_glob", "local_path", "matches"]  # fmt: skip

_SPECIAL = frozenset("*?[{")


def local_path(location: str) -> Path | None:
    """The absolute local path of a local or ``file:`` location (:func:`formats._files.local_path`'s
    rule); None for a cluster filesystem's (Spark's own one-line errors report those)."""
    path = _local_path(location)
    return path.absolute() if path is not None else None


def check_output(location: str, mode: str) -> None:
    """A local output that exists refused in the ``error`` mode, as Spark's writer refuses it,
    before anything runs."""
    path = local_path(location)
    if mode in ("error", "errorifexists") and path is not None and path.exists():
        raise UsageError(f"output {location!r} exists and output.mode is {mode}; remove it, "
                         "or pass --set output.mode=overwrite (or append)")  # fmt: skip


def check_input(location: str, columns: Sequence[str] = ()) -> int | None:
    """A local input (a path or a Hadoop glob pattern) must exist and hold data files, each
    of them Parquet, and agree on whether the model's ``columns`` hold strings or numbers.
    Returns the rows its files hold; None for a cluster filesystem's input (Spark reads it)."""
    roots = matches(location)
    if roots is None:
        return None
    if not roots and is_glob(location):
        raise InputError(f"input {location!r} matches nothing; check the pattern")
    if not roots:
        raise InputError(f"input {location!r} does not exist; pass a Parquet file or directory")
    files = data_files(roots)
    if not files:
        raise InputError(f"input {location!r} holds no data files; it is empty")
    return check_footers(location, files, columns)


def is_glob(location: str) -> bool:
    """Whether Hadoop would read ``location`` as a pattern (an unescaped ``* ? [ {``)."""
    escaped = False
    for char in location:
        if escaped:
            escaped = False
        elif char == "\\":
            escaped = True
        elif char in _SPECIAL:
            return True
    return False


def matches(location: str) -> list[Path] | None:
    """The local paths ``location`` names (one, or a pattern's matches, sorted, without those
    Spark's file index skips; none when nothing is there); None for a cluster filesystem's
    location, which Spark checks itself."""
    path = local_path(location)
    if path is None:
        return None
    if not is_glob(location):  # Spark globs every path: a backslash still escapes
        path = Path(re.sub(r"\\(.)", r"\1", str(path)))
        return [path] if path.exists() else []
    found = {Path(p) for pattern in _alternatives(str(path)) for p in glob.glob(_python(pattern))}
    return sorted(p for p in found if not _hidden(p.name))  # Spark skips them: data/*'s _SUCCESS


def data_files(roots: list[Path]) -> list[Path]:
    """The data files Spark would read under ``roots`` (:func:`matches`), sorted."""
    files: set[Path] = set()
    for root in roots:
        if root.is_file():
            files.add(root)
        elif root.is_dir():
            files.update(
                p for p in root.rglob("*")
                if p.is_file() and not any(_hidden(part) for part in p.relative_to(root).parts)
            )  # fmt: skip
    return sorted(files)


def arrow_dataset(location: str) -> Any:
    """``location`` as pyarrow reads what ``spark.read.parquet`` reads: a pattern's matched
    files (pyarrow has no Hadoop globs, and Spark finds no partition columns under a pattern
    either), or a directory with its Hive partition directories as columns, typed as Spark
    types them (``year=2007``: an int)."""
    import pyarrow.dataset as ds

    roots = matches(location)
    if roots is not None and is_glob(location):
        return ds.dataset([str(p) for p in data_files(roots)], format="parquet")
    source = str(roots[0]) if roots else location
    return ds.dataset(source, format="parquet", partitioning="hive")


def check_footers(location: str, files: Sequence[Path], columns: Sequence[str]) -> int:
    """Every data file's footer, read on the driver; returns the rows they hold. A damaged file,
    or a model column that holds strings in one file and numbers in another, is one line before
    Spark starts. Spark takes one file's schema and fails the task that reads the odd file,
    after the parity gate, with an error class that names no fix. Names match in any case, as
    Spark's do; a file without the column is left to the invalid-row rules (Spark reads null)."""
    import pyarrow.parquet as pq

    wanted = {c.lower(): c for c in columns}
    kinds: dict[str, dict[str, Path]] = {}  # the model's column -> kind -> the first file
    rows = 0
    for f in files:
        try:
            footer = pq.read_metadata(f)
            schema = footer.schema.to_arrow_schema()
        except Exception as exc:  # pyarrow: ArrowInvalid for a file that is not Parquet
            first = " ".join(str(exc).split())[:200]
            raise InputError(
                f"input {location!r} is not Parquet: {f.name}: {first}; remove or replace "
                "that file"
            ) from None
        rows += footer.num_rows
        for field in schema:
            name, kind = wanted.get(field.name.lower()), _kind(field.type)
            if name is not None and kind is not None:
                kinds.setdefault(name, {}).setdefault(kind, f)
    for name, seen in kinds.items():
        if len(seen) > 1:
            where = ", ".join(f"{kind} in {f}" for kind, f in seen.items())
            raise InputError(
                f"input {location!r}: its files disagree on column {name!r} ({where}); Spark "
                "reads one file's type and fails on the others: rewrite them with one type, "
                "or score them apart"
            )
    return rows


def _kind(typ: Any) -> str | None:
    """Strings or numbers: the kinds Spark never reads one as the other (a dictionary is its
    values' kind; int32 and int64, float and double, Spark widens)."""
    import pyarrow as pa

    if pa.types.is_dictionary(typ):
        typ = typ.value_type
    if pa.types.is_string(typ) or pa.types.is_large_string(typ):
        return "strings"
    numeric = pa.types.is_integer(typ) or pa.types.is_floating(typ) or pa.types.is_decimal(typ)
    return "numbers" if numeric or pa.types.is_boolean(typ) else None


def _hidden(name: str) -> bool:
    """Spark's file index skips it (``shouldFilterOutPathName``): ``.crc`` and other dot
    files, ``_SUCCESS``, ``_temporary``; not a partition directory such as ``_x=1``."""
    return name.startswith(".") or (name.startswith("_") and "=" not in name) or name.endswith(
        "._COPYING_")


def check_not_input(spark: Any, reads: dict[str, str], outputs: Sequence[str]) -> None:
    """Refuse to overwrite an output that is, or holds, what the run reads (``reads``: what
    it is, e.g. "the input", and its location): Hadoop's own globbing and qualified paths where
    the session has a JVM (any filesystem it has), the local paths on Spark Connect."""
    jvm = getattr(spark, "_jvm", None)
    for what, location in reads.items():
        if jvm is None:  # Spark Connect: no JVM here; local paths are what this client sees
            found = [str(p) for p in matches(location) or []]
            targets = {o: str(p) for o in outputs if (p := local_path(o)) is not None}
        else:
            found, targets = _qualified(spark, jvm, location, outputs)
        for output, target in targets.items():
            held = target.rstrip("/") + "/"
            if any(r == target or r.startswith(held) for r in found):
                raise UsageError(f"output {output!r} is (or holds) {what} and output.mode is "
                                 f"overwrite, which would delete {what}; write the scores "
                                 "elsewhere")  # fmt: skip


def _qualified(spark: Any, jvm: Any, location: str,
               outputs: Sequence[str]) -> tuple[list[str], dict[str, str]]:  # fmt: skip
    """(what ``location`` matches, each output), as Hadoop's qualified paths; nothing for a
    location on a filesystem this session has no client for (a bundle on s3a:// read by
    pyarrow: then Spark cannot write there either)."""
    conf = spark._jsc.hadoopConfiguration()
    path = jvm.org.apache.hadoop.fs.Path(location)
    try:
        fs = path.getFileSystem(conf)
    except Exception:  # py4j's error for Hadoop's UnsupportedFileSystemException
        return [], {}
    found = [str(s.getPath()) for s in fs.globStatus(path) or []]  # None: nothing there
    targets = {}
    for output in outputs:
        out = jvm.org.apache.hadoop.fs.Path(output)
        targets[output] = str(out.getFileSystem(conf).makeQualified(out))
    return found, targets


def _alternatives(pattern: str) -> list[str]:
    """``pattern`` with its first unescaped ``{a,b,...}`` expanded, recursively (Hadoop's
    alternatives may nest and may hold ``/``)."""
    start, depth, i = -1, 0, 0
    commas: list[int] = []
    while i < len(pattern):
        char = pattern[i]
        if char == "\\":
            i += 2
            continue
        if char == "{":
            if depth == 0:
                start = i
            depth += 1
        elif char == "}" and depth:
            depth -= 1
            if depth == 0:
                head, tail = pattern[:start], pattern[i + 1 :]
                bounds = [start, *commas, i]
                return [
                    expanded
                    for a, b in zip(bounds, bounds[1:], strict=False)
                    for expanded in _alternatives(head + pattern[a + 1 : b] + tail)
                ]
        elif char == "," and depth == 1:
            commas.append(i)
        i += 1
    return [pattern]  # no (complete) alternatives: Hadoop reads an unmatched brace as is


def _python(pattern: str) -> str:
    """A Hadoop pattern without alternatives as Python's ``glob`` reads it."""
    out, i = [], 0
    while i < len(pattern):
        char = pattern[i]
        if char == "\\" and i + 1 < len(pattern):
            out.append(glob.escape(pattern[i + 1]))
            i += 2
            continue
        if char == "[" and pattern[i + 1 : i + 2] == "^":
            out.append("[!")
            i += 2
            continue
        out.append(char)
        i += 1
    return "".join(out)
