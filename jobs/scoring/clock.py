"""A run's time as its user sees it: from the start of the process they launched, in phases.

``spark-submit`` of a Python job starts a JVM that starts the Python driver, so the user's
clock starts with that JVM (the driver's parent); ``python -m jobs.score`` starts with itself.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

__all__ = ["Phases", "process_started"]


def _started(pid: int) -> float | None:
    """Epoch seconds at which ``pid`` started (Linux /proc), or None where that is unknown."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        boot = next(float(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines()
                    if line.startswith("btime "))  # fmt: skip
        return boot + int(fields[19]) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, StopIteration):
        return None


def _launched_by_spark_submit(pid: int) -> bool:
    """Whether ``pid`` is spark-submit's JVM (an inherited gateway variable alone is not)."""
    try:
        return b"org.apache.spark.deploy.SparkSubmit" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def process_started() -> float:
    """Epoch seconds at which the run's first process started: the JVM of ``spark-submit``
    where it launched this driver (it passes the driver its gateway), else this process; now
    where /proc cannot tell."""
    pid = os.getpid()
    if "PYSPARK_GATEWAY_PORT" in os.environ and _launched_by_spark_submit(os.getppid()):
        pid = os.getppid()
    started = _started(pid)
    return started if started is not None else time.time()


class Phases:
    """Seconds per phase of a run, each phase from the end of the one before."""

    def __init__(self, since: float | None = None) -> None:
        self.seconds: dict[str, float] = {}
        self._last = time.time() if since is None else since

    def mark(self, name: str) -> float:
        """Ends the phase ``name`` now; returns its seconds."""
        now = time.time()
        took = round(now - self._last, 3)
        self.seconds[name] = round(self.seconds.get(name, 0.0) + took, 3)
        self._last = now
        return took
