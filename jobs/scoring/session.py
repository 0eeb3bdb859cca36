"""The SparkSession the jobs run in, built from settings and a spark-submit properties file.

Under ``spark-submit`` the JVM already holds the properties given on its command line; the file
then only fills in what is not set, so ``--master`` or ``--conf`` always win. Under
``python -m`` the file's properties are the session's. Either way the Python workers run the
driver's own python (the project's venv) unless told otherwise: a worker on another python
would miss onnxruntime.

:func:`share_bytes` is the one place that touches ``sparkContext`` (a broadcast). On Spark
Connect (``[spark] remote`` or SPARK_REMOTE: an ``sc://`` session, no SparkContext and so no
broadcast) it ships the bytes as a session artifact, ``spark.addArtifacts(path, file=True)``,
which every executor reads with ``SparkFiles.get``: sent once per session, not inside every
task's closure (what pickling the bytes into the function would do).
"""

from __future__ import annotations

import hashlib
import os
import re
import sys
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from formats.errors import UsageError
from jobs.scoring.settings import Settings

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

__all__ = ["build_session", "is_connect", "master_of", "read_properties", "share_bytes"]

BATCH_ROWS = "spark.sql.execution.arrow.maxRecordsPerBatch"
_LOG4J = re.compile(r"(-Dlog4j2?\.configurationFile=|-XX:SharedArchiveFile=)(\S+)")


def read_properties(path: str | Path) -> dict[str, str]:
    """A spark-submit properties file: ``key value`` (or ``key=value``) lines, ``#`` comments."""
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise UsageError(f"cannot read Spark properties file {str(path)!r}: {exc}") from None
    props: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", "!")):
            continue
        match = re.match(r"([^\s=:]+)\s*[\s=:]\s*(.*)", line)
        if match is None:
            props[line] = ""
        else:
            props[match.group(1)] = match.group(2).strip()
    return props


def _absolute_log4j(value: str, props_file: Path) -> str:
    """A relative log4j2 (or JVM class archive) path is relative to the repository root (where
    spark-submit is run); ``python -m`` may run elsewhere, so it is resolved against the conf's
    project too."""

    def fix(m: re.Match[str]) -> str:
        path = Path(m.group(2).removeprefix("file:"))
        if path.is_absolute() or path.exists():
            return m.group(0)
        for base in (props_file.parent, *props_file.parents):
            if (base / path).exists():
                return m.group(1) + str((base / path).resolve())
        return m.group(0)

    return _LOG4J.sub(fix, value)


def worker_python(settings: Settings, submitted: dict[str, str], props: dict[str, str]) -> str:
    """settings > spark-submit's spark.pyspark.python > the file's > PYSPARK_PYTHON > this one."""
    return (
        settings.spark.python
        or submitted.get("spark.pyspark.python")
        or props.get("spark.pyspark.python")
        or os.environ.get("PYSPARK_PYTHON")
        or sys.executable
    )


@dataclass(frozen=True)
class Built:
    spark: SparkSession
    created: bool  # False: an active session was reused (tests, notebooks); do not stop it


def build_session(settings: Settings) -> Built:
    from pyspark import SparkConf
    from pyspark.sql import SparkSession

    _quiet_query_context_log()

    batch = str(settings.execution.max_records_per_batch)
    remote = settings.spark.remote or os.environ.get("SPARK_REMOTE", "")
    if remote:  # before the active session: a test's local session must not stand in for it
        if not remote.startswith("sc://"):
            raise UsageError(f"spark.remote is {remote!r}; a Spark Connect URL is sc://host:port")
        spark = SparkSession.builder.remote(remote).getOrCreate()
        spark.conf.set(BATCH_ROWS, batch)
        return Built(spark, created=True)
    active = SparkSession.getActiveSession()
    if active is not None:
        active.conf.set(BATCH_ROWS, batch)  # a runtime SQL conf: takes effect on a live session
        return Built(active, created=False)
    path = settings.spark.properties
    props = read_properties(path) if path else {}
    submitted = _submitted(SparkConf)
    python = worker_python(settings, submitted, props)
    # The Python SparkContext reads PYSPARK_PYTHON for the workers' interpreter.
    os.environ["PYSPARK_PYTHON"] = python
    wanted: dict[str, str] = {"spark.app.name": settings.spark.app_name, **props}
    wanted["spark.pyspark.python"] = python
    wanted[BATCH_ROWS] = batch
    if "spark.driver.extraJavaOptions" in wanted and path:
        wanted["spark.driver.extraJavaOptions"] = _absolute_log4j(
            wanted["spark.driver.extraJavaOptions"], Path(path)
        )
    wanted.setdefault("spark.master", "local[*]")
    builder: Any = SparkSession.builder
    for key, value in wanted.items():
        if key not in submitted or key in (BATCH_ROWS, "spark.pyspark.python"):
            builder = builder.config(key, value)
    return Built(builder.getOrCreate(), created=True)


QUERY_CONTEXT_LOGGER = "DataFrameQueryContextLogger"


def _quiet_query_context_log() -> None:
    """PySpark logs a failed query's whole JVM trace as a JSON line on stderr before it raises
    (seen in make compare: an engine's unresolved column, 8 KB of trace before the report);
    the jobs turn the error into their one line (jobs._cli.guarded), make compare into the
    engine's cell."""
    import logging

    logging.getLogger(QUERY_CONTEXT_LOGGER).setLevel(logging.CRITICAL)


def _submitted(conf_class: Any) -> dict[str, str]:
    """What spark-submit already set; empty under ``python -m`` (no JVM yet, and starting one
    here would start it without the properties file's JVM options)."""
    if "PYSPARK_GATEWAY_PORT" not in os.environ:  # set by spark-submit for its python driver
        return {}
    from pyspark import SparkContext

    SparkContext._ensure_initialized()  # connect to spark-submit's JVM; creates no context
    return dict(conf_class().getAll())


def is_connect(spark: SparkSession) -> bool:
    try:
        from pyspark.sql.utils import is_remote
    except ImportError:  # pragma: no cover - every pyspark >= 3.4 has it
        return False
    return bool(is_remote()) or type(spark).__module__.startswith("pyspark.sql.connect")


def master_of(spark: SparkSession) -> str:
    """spark.master through the session conf (works on Spark Connect too)."""
    try:
        return str(spark.conf.get("spark.master", "") or "")
    except Exception:  # Connect servers may refuse to show static confs
        return ""


class _Broadcasted:
    """Picklable loader of a broadcast's value (read once per worker: the session cache)."""

    def __init__(self, broadcast: Any) -> None:
        self.broadcast = broadcast

    def __call__(self) -> bytes:
        return bytes(self.broadcast.value)


class _SparkFile:
    """Picklable loader of a file shipped with ``addArtifacts(file=True)`` (Spark Connect)."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __call__(self) -> bytes:
        from pyspark import SparkFiles

        # on an executor: the session's own artifact directory (Connect isolates sessions)
        return Path(SparkFiles.get(self.name)).read_bytes()


_ADDED: set[tuple[str, str]] = set()  # (Connect session id, artifact name) already shipped
_ADDED_LOCK = threading.Lock()


def _artifact(spark: Any, data: bytes) -> _SparkFile:
    # Named by content: the same model shipped twice in a session is one artifact, and a
    # server refuses a second, different file under a name it already has.
    name = f"modelport-{hashlib.sha256(data).hexdigest()[:24]}.bin"
    key = (str(spark.session_id), name)
    with _ADDED_LOCK:
        if key not in _ADDED:
            with tempfile.TemporaryDirectory(prefix="modelport-") as tmp:
                path = Path(tmp) / name
                path.write_bytes(data)
                spark.addArtifacts(str(path), file=True)
            _ADDED.add(key)
    return _SparkFile(name)


def share_bytes(spark: SparkSession, data: bytes) -> Callable[[], bytes]:
    """``data`` made available to every executor; call the result there to get it."""
    if is_connect(spark):
        return _artifact(spark, data)
    return _Broadcasted(spark.sparkContext.broadcast(data))
