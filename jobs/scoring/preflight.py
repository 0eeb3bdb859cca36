"""What the score job checks before a JVM starts, so a mistake there is one line within seconds.

Without these a user sees something else: no Java makes pyspark's launcher print a shell error
and ``JAVA_GATEWAY_EXITED``; a master URL that is not one makes spark-submit print a JVM stack
trace; an unreachable ``spark://`` master blocks the SparkContext for a minute (three 20-second
registration attempts, not configurable) before failing with "Cannot call methods on a stopped
SparkContext". An output whose parent is a file or a read-only filesystem is refused before
reading any data, not after scoring it all.
"""

from __future__ import annotations

import os
import re
import socket
import tempfile

from formats.errors import UsageError
from jobs.scoring.checks import local_path
from jobs.scoring.settings import Settings

__all__ = ["check_master", "check_writable", "preflight"]

CONNECT_TIMEOUT_S = 5.0
_MASTER = re.compile(
    r"^(local(\[(\*|\d+)(,\s*\d+)?\])?|local-cluster\[\d+,\s*\d+,\s*\d+\]|yarn"
    r"|spark://[^/\s]+|k8s://\S+)$"
)
_HINT = "use local[N], spark://host:port, yarn or k8s://https://host:port"


def preflight(settings: Settings) -> None:
    """Java, and the master of the session about to be built (when this process builds it)."""
    from pyspark.sql import SparkSession

    if settings.spark.remote or os.environ.get("SPARK_REMOTE"):
        return  # Spark Connect: no JVM here, and the server has its own master
    if SparkSession.getActiveSession() is not None:
        return  # a session exists (tests, notebooks): its JVM and master are already there
    if "PYSPARK_GATEWAY_PORT" in os.environ:
        master = _submitted_master()  # spark-submit checked Java and the URL's syntax
    else:
        from formats.java import java_version

        java_version()
        master = _planned_master(settings)
    if master:
        check_master(master)


def _planned_master(settings: Settings) -> str:
    """The master :func:`jobs.scoring.session.build_session` will use under ``python -m``."""
    from jobs.scoring.session import read_properties

    path = settings.spark.properties
    return (read_properties(path) if path else {}).get("spark.master", "")


def _submitted_master() -> str:
    from pyspark import SparkConf, SparkContext

    SparkContext._ensure_initialized()  # spark-submit's JVM; creates no context
    return str(SparkConf().get("spark.master", "") or "")


def check_master(master: str) -> None:
    """A master URL Spark knows, and for ``spark://`` one whose host answers on its port."""
    if not _MASTER.match(master):
        raise UsageError(f"spark.master {master!r} is not a Spark master URL; {_HINT}")
    if not master.startswith("spark://"):
        return
    errors = []
    for address in master.removeprefix("spark://").split(","):  # standby masters: any one
        host, _, port = address.rpartition(":")
        if not host or not port.isdigit():
            raise UsageError(f"spark.master {master!r}: {address!r} is not host:port; {_HINT}")
        try:
            with socket.create_connection((host.strip("[]"), int(port)), CONNECT_TIMEOUT_S):
                return
        except OSError as exc:
            errors.append(f"{address}: {exc.strerror or exc}")
    raise UsageError(
        f"spark.master {master!r} does not answer ({'; '.join(errors)}); start the master or "
        "fix the URL"
    )


def check_writable(location: str) -> None:
    """A local output (or quarantine) directory can be created where it is named."""
    path = local_path(location)
    if path is None:
        return  # a cluster filesystem: Spark's own errors report it
    parent = path.parent if not path.exists() else path
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise UsageError(f"output {location!r} cannot be written: {str(parent)!r} is a file")
    try:  # a probe, not os.access: root passes access checks that the filesystem still refuses
        fd, probe = tempfile.mkstemp(prefix=".modelport-probe-", dir=parent)
    except OSError as exc:
        raise UsageError(
            f"output {location!r} cannot be written in {str(parent)!r}: {exc.strerror or exc}"
        ) from None
    os.close(fd)
    os.unlink(probe)
