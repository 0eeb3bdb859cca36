"""Helpers for the tests that run real Spark processes: a Spark Connect server, a driver's REST
API, and the executors and Python workers of one application (found by its app id, never by a
process name alone, so another Spark on this machine is never touched)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import pyarrow.parquet as pq

from jobs.localcluster import procs as _procs
from jobs.localcluster.cluster import spark_env

ROOT = Path(__file__).resolve().parents[1]
EXECUTOR = "org.apache.spark.executor.CoarseGrainedExecutorBackend"
T = TypeVar("T")


def wait_for(what: str, probe: Callable[[], T | None], timeout: float, every: float = 0.25) -> T:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = probe()
        if got is not None:
            return got
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def rest(port: int, path: str) -> Any:
    """The driver UI's REST API (``/api/v1/...``); None while it does not answer."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/{path}", timeout=2) as r:
            return json.load(r)
    except (OSError, ValueError):
        return None


def write_job(port: int, min_tasks: int) -> tuple[str, dict[str, Any]] | None:
    """(app id, the running job of at least ``min_tasks`` tasks: the scoring write)."""
    apps = rest(port, "applications")
    if not apps:
        return None
    app = apps[0]["id"]
    jobs = rest(port, f"applications/{app}/jobs") or []
    running = [j for j in jobs if j["status"] == "RUNNING" and j["numTasks"] >= min_tasks]
    return (app, running[0]) if running else None


def executors(app_id: str) -> list[int]:
    """The executor JVMs of ``app_id`` (their command line names it: ``--app-id``).

    A process the JVM forks (the Python daemon, a shell for an archive's untar) carries the
    JVM's command line until it execs: a CI run once counted three executors of two that way.
    Only a match whose parent is not itself a match is an executor."""
    found = {pid for pid in _procs.pids()
             if {EXECUTOR, app_id} <= set(_procs.cmdline(pid))}  # fmt: skip
    return sorted(pid for pid in found if _procs.parent(pid) not in found)


def python_workers(executor: int) -> list[int]:
    """The forked Python workers (pyspark.daemon's children) below an executor."""
    below = _procs.descendants(executor)
    daemons = {p for p in below if "pyspark.daemon" in _procs.cmdline(p)}
    return [p for p in below if p in daemons and _procs.parent(p) in daemons]


def row_ids(output: Path) -> list[int]:
    """The row ids of a complete output (what Spark and pyarrow read: not _temporary)."""
    ids: list[int] = pq.read_table(output, columns=["row_id"]).column(0).to_pylist()
    return ids


def data_files(output: Path) -> list[Path]:
    """Parquet files outside Spark's ``_temporary``: what a reader of ``output`` would see."""
    return [p for p in output.rglob("*.parquet") if "_temporary" not in p.parts]


@contextmanager
def connect_server(tmp: Path, port: int) -> Iterator[subprocess.Popen[bytes]]:
    """pyspark's own Spark Connect server on 127.0.0.1:``port`` (local[2]), its Python
    workers on this interpreter; stopped with everything it started."""
    log = tmp / "connect-server.log"
    env = {**spark_env(), "PYSPARK_PYTHON": sys.executable}  # Connect UDFs read the env
    submit = Path(sys.executable).parent / "spark-submit"
    cmd = [
        str(submit), "--class", "org.apache.spark.sql.connect.service.SparkConnectServer",
        "--master", "local[2]", "--conf", "spark.connect.grpc.binding.address=127.0.0.1",
        "--conf", f"spark.connect.grpc.binding.port={port}",
        "--conf", f"spark.pyspark.python={sys.executable}", "--conf", "spark.ui.enabled=false",
        "--conf", "spark.python.worker.reuse=true", "spark-internal",
    ]  # fmt: skip
    with open(log, "wb") as fh:
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env, cwd=tmp)
    try:
        wait_for(
            "the Spark Connect server",
            lambda: True if "Spark Connect server started" in log.read_text() else (
                _died(proc, log)
            ),
            timeout=120,
        )  # fmt: skip
        yield proc
    finally:
        _procs.stop([proc.pid, *_procs.descendants(proc.pid)])
        proc.wait(timeout=30)


def _died(proc: subprocess.Popen[bytes], log: Path) -> None:
    if proc.poll() is not None:
        raise AssertionError(f"the Connect server exited {proc.returncode}: {log.read_text()[-2000:]}")
