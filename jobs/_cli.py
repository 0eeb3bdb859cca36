"""The one error path of every entry point: our errors, and the Spark errors we know, become
one line on stderr (``error: ...``) and an exit code (2 for bad input, 1 for a failed check);
anything else is a bug of ours, and its traceback is the report.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable, Sequence
from typing import NoReturn

from formats import errors
from formats.errors import InputError, ModelportError, UsageError, VerificationFailedError

__all__ = ["Parser", "guarded", "spark_error"]


class Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line through :func:`guarded` (exit 2)."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see --help)")


def guarded(run: Callable[[list[str]], int], argv: Sequence[str] | None) -> int:
    """``run(argv)`` as an entry point: our errors and the Spark errors :func:`spark_error`
    knows become one line on stderr and their exit code (2 for bad input); ``--help`` (argparse's
    SystemExit) is its exit code."""
    try:
        return run(list(sys.argv[1:] if argv is None else argv))
    except SystemExit as exc:  # --help, or a step that chose its exit code or message
        if isinstance(exc.code, str):
            print(exc.code, file=sys.stderr)
        return exc.code if isinstance(exc.code, int) else 0 if exc.code is None else 1
    except ModelportError as exc:
        return _fail(exc)
    except Exception as exc:
        translated = spark_error(exc)
        if translated is None:
            raise  # a bug of ours: its traceback is the report
        return _fail(translated)


def _fail(exc: ModelportError) -> int:
    print(f"error: {exc}", file=sys.stderr)
    return exc.exit_code


_OURS = {name: getattr(errors, name) for name in errors.__all__}
_LINE = re.compile(r"^\s*(?:[\w.]+\.)?(\w+Error): (.+)$")
_CLASS = re.compile(r"\[([A-Z][A-Z0-9_.]+)\] (.+?)(?: SQLSTATE: \w+)?\s*$")


def spark_error(exc: BaseException) -> ModelportError | None:
    """A Spark or Py4J failure as one of our one-line errors; None if it is not one."""
    from py4j.protocol import Py4JError
    from pyspark.errors import PySparkException

    if not isinstance(exc, PySparkException | Py4JError):
        return None
    lines = [line for line in str(exc).splitlines() if line.strip()]
    for line in reversed(lines):  # ours, raised in a Python worker: its class and message
        match = _LINE.match(line)
        if match and match.group(1) in _OURS:
            cls = _OURS[match.group(1)]
            return cls(match.group(2)) if cls is not VerificationFailedError else cls(line)
    for line in lines:  # Spark's error classes: "[PATH_NOT_FOUND] Path does not exist: ..."
        match = _CLASS.search(line)
        if match and match.group(1) == "USER_RAISED_EXCEPTION":  # ours: jobs.scoring.rules
            return InputError(match.group(2).strip())
        if match:
            detail = _read_fix(match.group(1), match.group(2).strip(), lines)
            return InputError(f"spark: [{match.group(1)}] {detail}")
    useful = [ln.strip(" :") for ln in lines if not ln.startswith("An error occurred while")]
    return ModelportError(f"spark: {useful[0] if useful else type(exc).__name__}"[:500])


_CAUSE = re.compile(r"^Caused by: [\w.$]+: (.+)$")


def _read_fix(error_class: str, detail: str, lines: Sequence[str]) -> str:
    """For a file Spark could not read (on a cluster filesystem, which the driver does not
    check beforehand): the cause Spark nests under its class ("is not a Parquet file") and
    what to do."""
    if not error_class.startswith("FAILED_READ_FILE"):
        return detail
    if error_class.endswith("DATA_TYPE_MISMATCH"):
        return (f"{detail.rstrip('.')}; the input's files disagree on that column's type: "
                "rewrite them with one type, or score them apart")  # fmt: skip
    cause = next((m.group(1).strip() for m in map(_CAUSE.match, lines) if m), "")
    return f"{detail.rstrip('.')}{': ' + cause if cause else ''}; remove or replace that file"
