"""The score job's settings: one TOML file (``conf/local.toml``) read into frozen dataclasses.

Precedence, lowest first: the defaults below, the TOML file, ``--set section.key=value``, the
dedicated flags (``--bundle``, ``--input``, ``--output``). Every key is typed; an unknown key is a
one-line error naming it and the nearest known key, so a typo never silently does nothing.
Spark's own properties live in a spark-submit properties file (``[spark] properties``), not here.
"""

from __future__ import annotations

import dataclasses
import difflib
import tomllib
import types
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from formats.errors import UsageError

__all__ = ["DEFAULT_CONF", "Settings", "load_settings", "parse_set"]

# The job's default settings file when --conf is not given (the repository's conf/).
DEFAULT_CONF = Path(__file__).resolve().parents[2] / "conf" / "local.toml"

WRITE_MODES = ("error", "errorifexists", "overwrite", "append")
WRITERS = ("auto", "spark", "arrow")
PROVIDERS = ("cpu", "cuda")
ON_INVALID = ("fail", "null", "quarantine")


@dataclass(frozen=True)
class JobSettings:
    bundle: str = ""
    input: str = ""
    output: str = ""
    # Score a sample with the ONNX model and with the bundle's pickle first; refuse on disagreement.
    parity_gate: bool = True
    parity_rows: int = 1000
    # An input with a schema and no rows: an error (an upstream step most likely failed), or
    # (true) a complete, empty output, as a scheduled run over a quiet hour's partition wants.
    allow_empty_input: bool = False


@dataclass(frozen=True)
class ExecutionSettings:
    provider: str = "cpu"
    # Run on CPU when CUDA was asked for but cannot run (otherwise that is an error).
    allow_cpu_fallback: bool = False
    # ONNX Runtime's intra-op threads per session; 0 follows spark.task.cpus.
    intra_op_threads: int = 0
    # CUDA device when Spark assigned the task no GPU address (local mode).
    gpu_device_id: int = 0
    # spark.sql.execution.arrow.maxRecordsPerBatch: rows per ONNX Runtime call.
    max_records_per_batch: int = 10000
    # Category (string) inputs as int32 codes computed in the JVM, the model's string ops as a
    # lookup table (formats.onnx.string_codes): the same scores, less work per row.
    string_codes: bool = True


@dataclass(frozen=True)
class OutputSettings:
    mode: str = "error"
    partition_by: tuple[str, ...] = ()
    # Passed through when the input has it (the usual join key back to the input).
    id_column: str = "row_id"
    # Passed through, and required: a missing one is an error.
    passthrough: tuple[str, ...] = ()
    # Add model_name, model_version, model_sha256 columns.
    model_columns: bool = False
    # Who writes the Parquet (jobs.scoring.output.arrow): "arrow" (pyarrow in the Python workers,
    # committed by the driver; local or file:// paths without partition_by), "spark" (Spark's
    # writer), "auto" (arrow where it can write, else spark).
    writer: str = "auto"


@dataclass(frozen=True)
class TensorSettings:
    # The array column that feeds a tensor model's input ("": the column named as the input).
    column: str = ""
    # Or numeric columns, in order, stacked into the input tensor.
    columns: tuple[str, ...] = ()


@dataclass(frozen=True)
class ValidationSettings:
    # A row the model cannot take (see docs/ARCHITECTURE.md, "Invalid rows"): stop the job
    # naming it (fail), score it as null with an `error` column (null), or write it to
    # <output>_quarantine/ with a `reason` column and score the rest (quarantine).
    on_invalid: str = "fail"


@dataclass(frozen=True)
class SparkSettings:
    # A spark-submit --properties-file, relative to the TOML file; applied by `python -m`.
    properties: str = ""
    # The workers' python; "": spark.pyspark.python if set, else the driver's own python.
    python: str = ""
    app_name: str = "modelport-score"
    # A Spark Connect server (sc://host:15002) to run on instead of a SparkContext; "" also
    # reads SPARK_REMOTE. The properties file and python above are then the server's business.
    remote: str = ""


@dataclass(frozen=True)
class Settings:
    job: JobSettings = field(default_factory=JobSettings)
    execution: ExecutionSettings = field(default_factory=ExecutionSettings)
    output: OutputSettings = field(default_factory=OutputSettings)
    tensor: TensorSettings = field(default_factory=TensorSettings)
    validation: ValidationSettings = field(default_factory=ValidationSettings)
    spark: SparkSettings = field(default_factory=SparkSettings)
    source: str = ""  # the TOML file read, for messages


_SECTIONS: dict[str, type[Any]] = {
    f.name: typing.get_type_hints(Settings)[f.name]
    for f in dataclasses.fields(Settings)
    if f.name != "source"
}


# each section's field types, once: typing.get_type_hints compiles them afresh on every call
_TYPES = {name: typing.get_type_hints(cls) for name, cls in _SECTIONS.items()}


def known_keys() -> list[str]:
    return [
        f"{section}.{f.name}" for section, cls in _SECTIONS.items() for f in dataclasses.fields(cls)
    ]


def parse_set(items: Iterable[str]) -> dict[str, tuple[str, Any]]:
    """``--set key=value`` items as {key: (text, value)}; a value is read as TOML (numbers,
    booleans, lists) when it parses, else kept as the plain string (``mode=overwrite``)."""
    out: dict[str, tuple[str, Any]] = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"--set takes section.key=value, got {item!r}")
        try:
            value: Any = tomllib.loads(f"v = {text}")["v"]
        except tomllib.TOMLDecodeError:
            value = text
        out[key.strip()] = (text, value)
    return out


def load_settings(
    path: str | Path | None = None,
    overrides: Iterable[str] = (),
    flags: Mapping[str, str | None] | None = None,
    values: Mapping[str, object] | None = None,
) -> Settings:
    """Settings from ``path`` (default :data:`DEFAULT_CONF` if it exists), then ``--set``
    overrides, then ``flags`` ({"job.bundle": ...}; None values are ignored), then ``values``
    (Python values by key, typed as a TOML file's are: ``jobs.udf.score_frame``'s settings)."""
    conf_path = Path(path) if path is not None else DEFAULT_CONF
    found: dict[str, tuple[str | None, Any]] = {}
    source = ""
    if path is not None or conf_path.exists():
        source = str(conf_path)
        for key, value in _read_toml(conf_path).items():
            if key == "spark.properties" and isinstance(value, str) and value:
                # named relative to the TOML file that names it (--set: relative to the cwd)
                value = str((conf_path.parent / value).resolve())
            found[key] = (None, value)
    found.update(parse_set(overrides))
    for key, flag in (flags or {}).items():
        if flag is not None:
            found[key] = (flag, flag)
    found.update((key, (None, value)) for key, value in (values or {}).items())
    sections: dict[str, dict[str, Any]] = {name: {} for name in _SECTIONS}
    for key, (text, value) in found.items():
        section, name = _known(key, source)
        sections[section][name] = _coerce(key, text, value, _TYPES[section][name])
    built = {name: _SECTIONS[name](**kw) for name, kw in sections.items()}
    settings = Settings(**built, source=source)
    _validate(settings)
    return settings


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise UsageError(f"conf file {str(path)!r} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read conf file {str(path)!r}: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"conf file {str(path)!r} is not valid TOML: {exc}") from None
    flat: dict[str, Any] = {}
    for section, body in data.items():
        if not isinstance(body, dict):  # a top-level key: still named section.key in messages
            flat[section] = body
            continue
        for key, value in body.items():
            flat[f"{section}.{key}"] = value
    return flat


def _known(key: str, source: str) -> tuple[str, str]:
    section, _, name = key.partition(".")
    cls = _SECTIONS.get(section)
    if cls is not None and name in {f.name for f in dataclasses.fields(cls)}:
        return section, name
    where = f" in {source}" if source else ""
    nearest = difflib.get_close_matches(key, known_keys(), n=1, cutoff=0.4)
    hint = f"; did you mean {nearest[0]!r}?" if nearest else f"; known keys: {known_keys()}"
    raise UsageError(f"unknown conf key {key!r}{where}{hint}")


def _coerce(key: str, text: str | None, value: Any, want: Any) -> Any:
    """``value`` as the field's type; ``text`` is the raw --set/flag text (a str field takes it
    even when it looks like a number: --set job.bundle=2024)."""
    if want is str:
        if isinstance(value, str):
            return value
        if text is not None:
            return text
    elif want is bool:
        if isinstance(value, bool):
            return value
    elif want is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif typing.get_origin(want) is tuple:
        if isinstance(value, list | tuple) and all(isinstance(v, str) for v in value):
            return tuple(value)
        if isinstance(value, str) and text is not None:  # --set output.partition_by=label
            return tuple(v.strip() for v in value.split(",") if v.strip())
    raise UsageError(f"conf key {key!r} takes {_type_name(want)}, got {value!r}")


def _type_name(tp: Any) -> str:
    if typing.get_origin(tp) is tuple or isinstance(tp, types.GenericAlias):
        return "a list of strings"
    return {str: "a string", bool: "true or false", int: "an integer"}.get(tp, str(tp))


def _validate(s: Settings) -> None:
    for key, value, choices in (
        ("output.mode", s.output.mode, WRITE_MODES),
        ("output.writer", s.output.writer, WRITERS),
        ("execution.provider", s.execution.provider, PROVIDERS),
        ("validation.on_invalid", s.validation.on_invalid, ON_INVALID),
    ):
        if value not in choices:
            raise UsageError(f"conf key {key!r} is {value!r}; use one of {', '.join(choices)}")
    for key, number, least in (
        ("job.parity_rows", s.job.parity_rows, 1),
        ("execution.max_records_per_batch", s.execution.max_records_per_batch, 1),
        ("execution.intra_op_threads", s.execution.intra_op_threads, 0),
        ("execution.gpu_device_id", s.execution.gpu_device_id, 0),
    ):
        if number < least:
            raise UsageError(f"conf key {key!r} must be {least} or more, got {number}")
    if s.tensor.column and s.tensor.columns:
        raise UsageError("set tensor.column or tensor.columns, not both")
