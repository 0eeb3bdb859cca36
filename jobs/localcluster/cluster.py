"""A Spark standalone cluster on this machine (``python -m jobs.cluster`` is its command line).

:func:`up` starts a master and the workers with pyspark's own launcher (``spark-class``) bound
to 127.0.0.1, in the background, with pid files, logs and the workers' work dirs under a
directory, and returns once the master's JSON lists every worker ALIVE. Busy default ports
(7077, 8080, 8081...) are replaced by free ones and said so. :func:`down` stops the master, the
workers and everything they started (executors, Python workers), found by ancestry and by
working directory, never by name. :func:`submit_command` is ``spark-submit jobs/score.py``
against the cluster with what :mod:`jobs.localcluster.package` built.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from formats.errors import ModelportError, UsageError
from jobs.localcluster import procs as _procs

__all__ = [
    "Cluster",
    "ClusterError",
    "down",
    "running",
    "status_lines",
    "master_json",
    "spark_env",
    "start_worker",
    "submit_command",
    "up",
]

ROOT = Path(__file__).resolve().parents[2]
HOST = "127.0.0.1"
STATE = "cluster.json"
MASTER = "org.apache.spark.deploy.master.Master"
WORKER = "org.apache.spark.deploy.worker.Worker"


class ClusterError(ModelportError):
    """The cluster did not start, is not running, or a process of it failed."""


@dataclass
class Cluster:
    """What ``up`` started (saved as ``<dir>/cluster.json``)."""

    directory: str
    master_port: int
    ui_port: int
    master_pid: int
    cores: int
    memory: str
    workers: dict[str, int] = field(default_factory=dict)  # worker name -> pid
    worker_ui_ports: dict[str, int] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"spark://{HOST}:{self.master_port}"

    @property
    def ui(self) -> str:
        return f"http://{HOST}:{self.ui_port}"

    @property
    def path(self) -> Path:
        return Path(self.directory)

    def save(self) -> None:
        tmp = self.path / f".{STATE}.tmp"
        tmp.write_text(json.dumps(asdict(self), indent=2) + "\n")
        tmp.replace(self.path / STATE)

    @classmethod
    def load(cls, directory: str | Path) -> Cluster | None:
        try:
            data = json.loads((Path(directory) / STATE).read_text())
        except (OSError, ValueError):
            return None
        return cls(**data)


def _say(text: str) -> None:
    print(f"==> {text}", flush=True)


def _bin(name: str) -> Path:
    """pyspark's launcher scripts: pip puts them in the venv's bin/ beside this python."""
    here = Path(sys.executable).parent / name
    if here.exists():
        return here
    import pyspark

    return Path(pyspark.__file__).parent / "bin" / name


def spark_env() -> dict[str, str]:
    """This environment, with SPARK_HOME and SPARK_LOCAL_IP set for pyspark's launchers."""
    import pyspark

    env = dict(os.environ)
    # spark-class finds SPARK_HOME by importing pyspark with `python3` (or PYSPARK_PYTHON),
    # which need not be this venv's python: name it.
    env["SPARK_HOME"] = str(Path(pyspark.__file__).parent)
    # Spark binds its UIs to 0.0.0.0 and advertises the host's name otherwise.
    env["SPARK_LOCAL_IP"] = HOST
    return env


def daemon_env() -> dict[str, str]:
    """The environment of the master, workers and (inherited) executors."""
    env = spark_env()
    # The daemons' JVM heap (default 1g each); executors get spark.executor.memory instead.
    env.setdefault("SPARK_DAEMON_MEMORY", "512m")
    # The executors must run the shipped environment and code, not whatever this shell has:
    # a leaked PYTHONPATH or PYSPARK_PYTHON would let a job pass with nothing shipped.
    for key in ("PYTHONPATH", "PYSPARK_PYTHON", "PYSPARK_DRIVER_PYTHON", "VIRTUAL_ENV"):
        env.pop(key, None)
    return env


def master_json(cluster: Cluster, timeout: float = 2.0) -> dict[str, Any] | None:
    """The master's status (workers, their state, apps); None when it does not answer."""
    try:
        with urllib.request.urlopen(f"{cluster.ui}/json/", timeout=timeout) as response:
            data: dict[str, Any] = json.load(response)
            return data
    except (OSError, ValueError, urllib.error.URLError):
        return None


def alive_workers(cluster: Cluster) -> int:
    status = master_json(cluster)
    if status is None:
        return -1
    return sum(1 for w in status.get("workers", []) if w.get("state") == "ALIVE")


def _launch(cluster: Cluster, name: str, args: list[str]) -> int:
    logs = cluster.path / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    cmd = [str(_bin("spark-class")), *args]
    _say(f"SPARK_LOCAL_IP={HOST} {' '.join(cmd)} > {logs / name}.log")
    with open(logs / f"{name}.log", "ab") as log:
        # A session of its own: the daemons outlive this command and a Ctrl-C in its terminal.
        proc = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            env=daemon_env(), cwd=cluster.path, start_new_session=True,
        )  # fmt: skip
    (cluster.path / f"{name}.pid").write_text(f"{proc.pid}\n")  # spark-class execs the JVM
    return proc.pid


def start_worker(cluster: Cluster, name: str) -> int:
    """Start (or restart, after a kill) worker ``name``; returns its pid."""
    port = cluster.worker_ui_ports.get(name) or 0
    taken = {cluster.master_port, cluster.ui_port, *cluster.worker_ui_ports.values()} - {port}
    ui = _procs.free_port(port or 8081, HOST, taken)
    work = cluster.path / "work" / name
    work.mkdir(parents=True, exist_ok=True)
    pid = _launch(cluster, name, [
        WORKER, cluster.url, "--host", HOST, "--cores", str(cluster.cores),
        "--memory", cluster.memory, "--webui-port", str(ui), "--work-dir", str(work),
    ])  # fmt: skip
    cluster.workers[name] = pid
    cluster.worker_ui_ports[name] = ui
    cluster.save()
    return pid


def wait_for_workers(cluster: Cluster, count: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    seen = -1
    while time.monotonic() < deadline:
        seen = alive_workers(cluster)
        if seen >= count:
            return
        dead = [n for n, pid in {"master": cluster.master_pid, **cluster.workers}.items()
                if not _procs.alive(pid)]  # fmt: skip
        if dead:
            raise ClusterError(
                f"{dead[0]} exited while starting; see {cluster.path / 'logs' / dead[0]}.log"
            )
        time.sleep(0.5)
    said = "did not answer" if seen < 0 else f"lists {seen} of {count} workers ALIVE"
    raise ClusterError(
        f"the cluster did not come up in {timeout:g} s: the master at {cluster.ui}/json/ {said};"
        f" see {cluster.path / 'logs'}"
    )


def _pick(preferred: int, taken: set[int], what: str) -> int:
    port = _procs.free_port(preferred, HOST, taken)
    if preferred and port != preferred:
        _say(f"port {preferred} ({what}) is busy; using {port}")
    taken.add(port)
    return port


def up(
    directory: str | Path = ".cluster",
    workers: int = 2,
    cores: int = 1,
    memory: str = "1g",
    port: int = 7077,
    ui_port: int = 8080,
    timeout: float = 90.0,
) -> Cluster:
    """Start the cluster (or return the one already running in ``directory``)."""
    path = Path(directory).resolve()
    running = Cluster.load(path)
    if running is not None and _procs.alive(running.master_pid):
        if alive_workers(running) >= workers:
            _say(f"already up: {running.url} (UI {running.ui})")
            return running
        down(path)  # a half-dead cluster of ours: start afresh
    path.mkdir(parents=True, exist_ok=True)
    taken: set[int] = set()
    master_port = _pick(port, taken, "master")
    master_ui = _pick(ui_port, taken, "master UI")
    cluster = Cluster(str(path), master_port, master_ui, 0, cores, memory)
    try:
        cluster.master_pid = _launch(cluster, "master", [
            MASTER, "--host", HOST, "--port", str(master_port), "--webui-port", str(master_ui),
        ])  # fmt: skip
        cluster.save()
        # workers that start before the master answers back off for seconds between retries
        wait_for_workers(cluster, 0, timeout)
        for i in range(1, workers + 1):
            name = f"worker-{i}"
            preferred = ui_port + i if ui_port else 0  # 0: any free port (tests)
            cluster.worker_ui_ports[name] = _pick(preferred, taken, f"{name} UI")
            start_worker(cluster, name)
        wait_for_workers(cluster, workers, timeout)
    except BaseException:
        down(path)  # nothing half-started stays behind
        raise
    _say(f"up: {cluster.url}, {workers} worker(s) of {cores} core(s) and {memory} (UI {cluster.ui})")
    return cluster


def processes(path: Path) -> list[int]:
    """Every live process of the cluster in ``path``: the daemons, their descendants, and
    whatever runs in the work dirs (executors orphaned by a killed worker, their Python)."""
    pids = []
    for pid_file in sorted(path.glob("*.pid")):
        try:
            pid = int(pid_file.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            continue
        if _procs.alive(pid) and _started_here(pid, path):
            pids += [pid, *_procs.descendants(pid)]
    work = path / "work"
    if work.is_dir():
        for pid in _procs.under(work):
            pids += [pid, *_procs.descendants(pid)]
    return list(dict.fromkeys(pids))


def _started_here(pid: int, path: Path) -> bool:
    """A pid file may outlive its process and the pid be reused: check it is ours."""
    where = _procs.cwd(pid)
    return where is not None and where == path and any(
        part in (MASTER, WORKER) for part in _procs.cmdline(pid)
    )


def down(directory: str | Path = ".cluster", keep_work: bool = False) -> list[int]:
    """Stop everything the cluster in ``directory`` runs; returns the pids that were running."""
    path = Path(directory).resolve()
    pids = processes(path)
    # workers (and their executors) first: a worker that loses its master first spends its
    # shutdown retrying to reach it
    state = Cluster.load(path)
    master = [state.master_pid] if state is not None else []
    _procs.stop([p for p in pids if p not in master])
    _procs.stop(master)
    left = [p for p in processes(path) if _procs.alive(p)]
    if left:
        raise ClusterError(f"processes {left} of the cluster in {path} did not stop")
    for pid_file in path.glob("*.pid"):
        pid_file.unlink()
    (path / STATE).unlink(missing_ok=True)
    if not keep_work:
        # each executor unpacked the shipped env (hundreds of MB) in here
        shutil.rmtree(path / "work", ignore_errors=True)
    _say(f"down: stopped {len(pids)} process(es)" if pids else "down: nothing was running")
    return pids


def running(directory: str | Path) -> Cluster:
    cluster = Cluster.load(Path(directory).resolve())
    if cluster is None or not _procs.alive(cluster.master_pid):
        raise ClusterError(f"no cluster is running in {directory}; start one with make cluster-up")
    return cluster


def submit_command(
    cluster: Cluster, job_args: Sequence[str], dist: str | Path = "dist",
    spark_conf: Sequence[str] = (),
) -> list[str]:  # fmt: skip
    """``spark-submit`` of jobs/score.py to ``cluster`` with the packaged code and env.

    The driver (client mode, on this machine) runs this venv's python; the executors run the
    archive's ``./environment/bin/python`` (conf/spark/cluster.conf). Run it from the
    repository root (relative paths in the conf files)."""
    dist = Path(dist).resolve()
    code, env = dist / "modelport-code.zip", dist / "env.tar.gz"
    for f in (code, env):
        if not f.is_file():
            raise UsageError(f"{f} does not exist; build it with make package")
    extra = [arg for item in spark_conf for arg in ("--conf", item)]
    return [
        str(_bin("spark-submit")), "--master", cluster.url,
        "--properties-file", "conf/spark/cluster.conf",
        # conf's spark.pyspark.python is the executors' (archive) python; not the driver's
        "--conf", f"spark.pyspark.driver.python={sys.executable}",
        "--py-files", str(code), "--archives", f"{env}#environment", *extra,
        "jobs/score.py", "--conf", "conf/cluster.toml", *job_args,
    ]  # fmt: skip


def status_lines(directory: str | Path) -> list[str]:
    """The cluster's master URL and UI, its ALIVE workers and running apps, a line each."""
    cluster = running(directory)
    status = master_json(cluster) or {}
    workers = [w for w in status.get("workers", []) if w.get("state") == "ALIVE"]
    apps = [a.get("name", "?") for a in status.get("activeapps", [])]
    return [
        f"{cluster.url}  UI {cluster.ui}  master pid {cluster.master_pid}",
        f"{len(workers)} ALIVE worker(s): " + ", ".join(
            f"{w['host']}:{w['port']} {w['coresused']}/{w['cores']} cores" for w in workers),
        f"running apps: {', '.join(apps) or 'none'}",
    ]  # fmt: skip
