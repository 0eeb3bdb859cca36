"""The score job on a real Spark standalone cluster (a master and two workers of 1 core and
1 GB on 127.0.0.1), shipped as spark-submit ships it: our code as --py-files, a venv-packed
environment as --archives. Then faults against the same cluster: a Python worker and an executor
JVM killed mid-job, the driver killed mid-write, two jobs at once. Every run must leave each
input row in the output exactly once, or (the killed driver) nothing that reads as complete.

All of it is real processes, so slow (about 5 minutes on 2 busy cores); one cluster serves the
module, and the last test takes it down and checks that nothing of it runs any more.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tarfile
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from jobs.datagen import generate
from jobs.localcluster import procs as _procs
from jobs.localcluster.cluster import (
    Cluster,
    down,
    master_json,
    processes,
    spark_env,
    submit_command,
)
from jobs.scoring.output.summary import SUMMARY_NAME
from tests.spark_procs import (
    data_files,
    executors,
    python_workers,
    rest,
    row_ids,
    wait_for,
    write_job,
)
from tests.test_score_job import assert_matches_pickle, summary_of

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow
BIG = 600_000  # 12 row groups of 50k rows: 12 scoring tasks, ~15 s on the two executors
# one task per Parquet row group (the default 128 MB splits would give one per file)
SPLITS = ["spark.sql.files.maxPartitionBytes=524288", "spark.sql.files.openCostInBytes=1"]


def _cli(*args: Any, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """``python -m jobs.cluster ...``: what the make targets run."""
    return subprocess.run(
        [sys.executable, "-m", "jobs.cluster", *map(str, args)],
        cwd=ROOT, capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    where = tmp_path_factory.mktemp("cluster")
    # port 0: any free ports, so a `make cluster-up` of someone else's is never in the way
    done = _cli("up", "--dir", where, "--port", 0, "--ui-port", 0)
    assert done.returncode == 0, done.stdout + done.stderr
    started = Cluster.load(where)
    assert started is not None
    yield started
    down(where)  # idempotent: the last test has already done it and checked


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # the slim venv itself is cached in build/cluster-env (built once, ~30 s), the archive is not
    where = tmp_path_factory.mktemp("dist")
    done = _cli("package", "--dist", where)
    assert done.returncode == 0, done.stdout + done.stderr
    return where


@pytest.fixture(scope="module")
def big_input(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("big") / "penguins"
    generate(BIG, path)
    return path


def _input_ids(source: Path) -> list[int]:
    return sorted(pq.read_table(source, columns=["row_id"]).column(0).to_pylist())


def assert_each_row_once(output: Path, source: Path) -> None:
    assert (output / "_SUCCESS").exists() and (output / SUMMARY_NAME).exists()
    got = row_ids(output)
    want = _input_ids(source)
    assert len(got) == len(want), (len(got), len(want))
    assert sorted(got) == want  # no row lost, none twice


class Run:
    """One spark-submit of the job to the cluster, in the background."""

    def __init__(
        self, cluster: Cluster, dist: Path, bundle: Path, source: Path, output: Path,
        *conf: str, sets: tuple[str, ...] = ("job.parity_gate=false",),
    ) -> None:  # fmt: skip
        self.ui = _procs.free_port()
        self.output = output
        spark_conf = [f"spark.ui.port={self.ui}", "spark.ui.showConsoleProgress=false", *conf]
        job = ["--bundle", str(bundle), "--input", str(source), "--output", str(output)]
        for item in sets:
            job += ["--set", item]
        self.log = output.parent / f"{output.name}.driver.log"
        with open(self.log, "wb") as fh:
            self.proc = subprocess.Popen(
                submit_command(cluster, job, dist, spark_conf), cwd=ROOT, env=spark_env(),
                stdout=fh, stderr=subprocess.STDOUT,
            )  # fmt: skip

    def part_way(self, min_tasks: int = 8) -> tuple[str, dict[str, Any]]:
        """(app id, job) once the scoring write has finished some tasks but far from all."""

        def probe() -> tuple[str, dict[str, Any]] | None:
            if self.proc.poll() is not None:
                raise AssertionError(f"the job ended first: {self.tail()}")
            # the driver creates _temporary as the write job starts: the running job is it,
            # not one of the jobs before it (schema, emptiness check, parity sample)
            if not (self.output / "_temporary").is_dir():
                return None
            got = write_job(self.ui, min_tasks)
            if got is None:
                return None
            done, total = got[1]["numCompletedTasks"], got[1]["numTasks"]
            return got if 2 <= done <= total - 4 and got[1]["numActiveTasks"] >= 1 else None

        return wait_for("the scoring job to be part-way", probe, timeout=300, every=0.2)

    def finish(self, timeout: float = 400) -> int:
        return self.proc.wait(timeout=timeout)

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:]


def _app_dirs(cluster: Cluster, app: str) -> list[Path]:
    """The app's executor directories in the workers' work dirs (one per executor started)."""
    return sorted(Path(cluster.directory, "work").glob(f"worker-*/{app}/*"))


def _wait_idle(cluster: Cluster) -> None:
    """No application holds the cluster's cores (a killed driver's executors are gone too)."""

    def idle() -> bool | None:
        status = master_json(cluster) or {}
        return True if not status.get("activeapps") and status.get("coresused") == 0 else None

    wait_for("the cluster to be idle", idle, timeout=120)


# --- A: up, package, submit, every row once ------------------------------------------------
def test_up_package_submit_scores_every_row_once(
    cluster: Cluster, dist: Path, tmp_path: Path, penguins_bundle: Path, penguins_parquet: Path
) -> None:
    status = master_json(cluster)
    assert status is not None
    alive = [w for w in status["workers"] if w["state"] == "ALIVE"]
    assert len(alive) == 2 and all(w["cores"] == 1 and w["memory"] == 1024 for w in alive)
    assert all(w["host"] == "127.0.0.1" for w in alive)

    names = zipfile.ZipFile(dist / "modelport-code.zip").namelist()
    assert {"jobs/score.py", "jobs/scoring/worker.py", "formats/onnx/scorer.py"} <= set(names)
    assert all(n.startswith(("jobs/", "formats/")) and "__pycache__" not in n for n in names)
    with tarfile.open(dist / "env.tar.gz") as tar:
        members = tar.getnames()
    packages = {m.split("/")[3] for m in members if m.count("/") > 3 and "site-packages" in m}
    assert {"onnxruntime", "numpy", "pandas", "pyarrow", "onnx"} <= packages
    # what must not travel: our code (the zip carries it), Spark (the workers have it), an
    # editable install pointing back at this checkout
    assert not {"pyspark", "formats", "jobs", "torch", "tensorflow"} & packages
    assert not any("__editable__" in m or "modelport" in m for m in members)

    out = tmp_path / "scores"
    done = _cli(
        "submit", "--dir", cluster.directory, "--dist", dist,
        "--spark-conf", "spark.ui.enabled=false", "--",
        "--bundle", penguins_bundle, "--input", penguins_parquet, "--output", out,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    assert f"spark-submit --master {cluster.url} --properties-file conf/spark/cluster.conf" in (
        done.stdout
    )
    assert_matches_pickle(out, penguins_parquet, penguins_bundle, 6000)
    summary = summary_of(out)
    assert summary["rows_in"] == summary["rows_scored"] == 6000
    assert summary["provider"] == "CPUExecutionProvider" and summary["parity"]["rows"] == 1000
    # scored by the cluster's executors, in the shipped environment
    apps = {p.parts[-2] for p in Path(cluster.directory, "work").glob("worker-*/app-*/*")}
    assert len(apps) == 1
    assert list(Path(cluster.directory, "work").glob("worker-*/app-*/*/environment/bin/python"))


# --- C: faults ---------------------------------------------------------------------------
def test_python_worker_killed_mid_job(
    cluster: Cluster, dist: Path, tmp_path: Path, penguins_bundle: Path, big_input: Path
) -> None:
    run = Run(cluster, dist, penguins_bundle, big_input, tmp_path / "scores", *SPLITS)
    app, _job = run.part_way()
    backend = executors(app)
    assert len(backend) == 2, backend

    def busy_workers() -> list[int]:
        # a worker that burns CPU runs a task; a reused one idle between tasks does not, and a
        # kill of it hits nothing (3 of 7 runs here). Waiting for one on each executor instead
        # timed out in CI: near its end the job runs on one executor only.
        found = {p: _procs.cmdline(p) for e in executors(app) for p in python_workers(e)}
        # the executors run the archive's python, not this venv's
        assert all(argv[0] == "./environment/bin/python" for argv in found.values() if argv)
        before = {p: _procs.cpu_seconds(p, reaped=False) for p in found}
        time.sleep(0.3)
        return [p for p in found if _procs.cpu_seconds(p, reaped=False) > before[p]]

    def failed_tasks() -> int:  # task attempts the driver has seen fail (0 once it is gone)
        return sum(j["numFailedTasks"] for j in rest(run.ui, f"applications/{app}/jobs") or [])

    hit = 0
    deadline = time.monotonic() + 120
    while not hit and run.proc.poll() is None and time.monotonic() < deadline:
        workers = busy_workers()
        if not workers:  # sample again at once (the sample itself waits 0.3 s)
            continue
        for pid in workers:
            with contextlib.suppress(ProcessLookupError):  # it may end between sample and kill
                os.kill(pid, signal.SIGKILL)
        # a hit shows in the driver's counts within ~0.7 s here; a kill that lands as its task
        # ends hits nothing (the worker is idle by then), so sample again soon: waiting 5 s
        # let the rest of the job (~6 s past part_way) end with no second try
        until = time.monotonic() + 2
        while not hit and run.proc.poll() is None and time.monotonic() < until:
            hit = failed_tasks()
            time.sleep(0.2)
    assert hit >= 1, "no kill hit a running task"
    assert run.finish() == 0, run.tail()
    assert_each_row_once(run.output, big_input)


def test_executor_jvm_killed_mid_job(
    cluster: Cluster, dist: Path, tmp_path: Path, penguins_bundle: Path, big_input: Path
) -> None:
    _wait_idle(cluster)
    run = Run(cluster, dist, penguins_bundle, big_input, tmp_path / "scores", *SPLITS)
    app, _job = run.part_way()
    backend = executors(app)
    assert len(backend) == 2, backend
    os.kill(backend[0], signal.SIGKILL)
    assert run.finish() == 0, run.tail()
    assert_each_row_once(run.output, big_input)
    # the worker whose executor died started a replacement for the app
    assert len(_app_dirs(cluster, app)) >= 3, _app_dirs(cluster, app)


def test_driver_killed_mid_write_then_rerun(
    cluster: Cluster, dist: Path, tmp_path: Path, penguins_bundle: Path, big_input: Path
) -> None:
    _wait_idle(cluster)
    out = tmp_path / "scores"
    run = Run(cluster, dist, penguins_bundle, big_input, out, *SPLITS)
    run.part_way()
    python_driver = [p for p in _procs.descendants(run.proc.pid)
                     if any(a.endswith("jobs/score.py") for a in _procs.cmdline(p))]  # fmt: skip
    assert python_driver, "no Python driver below spark-submit"
    os.kill(run.proc.pid, signal.SIGKILL)  # spark-submit execs the driver JVM
    run.finish(timeout=30)
    # the Python driver does not hang on a dead JVM, and the master frees the app's cores
    wait_for("the Python driver to exit",
             lambda: True if not any(_procs.alive(p) for p in python_driver) else None, 60)  # fmt: skip
    _wait_idle(cluster)
    # the write had begun (part_way saw its _temporary): the finished tasks' files sat there,
    # where no reader sees them, and the Python driver, left without its JVM, removed them
    # and the output directory it had made (jobs.scoring.output.arrow)
    assert not out.exists() or [p.name for p in out.iterdir()] == ["_temporary"]
    if out.exists():
        assert data_files(out) == []

    rerun = Run(cluster, dist, penguins_bundle, big_input, out, *SPLITS,
                sets=("job.parity_gate=false", "output.mode=overwrite"))  # fmt: skip
    assert rerun.finish() == 0, rerun.tail()
    assert_each_row_once(out, big_input)
    assert not (out / "_temporary").exists()
    assert summary_of(out)["rows_scored"] == BIG


def test_two_jobs_at_once_do_not_interfere(
    cluster: Cluster, dist: Path, tmp_path: Path, penguins_bundle: Path, penguins_parquet: Path
) -> None:
    _wait_idle(cluster)
    # one core each, so that both hold an executor at the same time
    runs = [
        Run(cluster, dist, penguins_bundle, penguins_parquet, tmp_path / f"scores-{i}",
            "spark.cores.max=1")
        for i in (1, 2)
    ]  # fmt: skip

    def both_running() -> bool | None:
        if any(r.proc.poll() is not None for r in runs):
            raise AssertionError("a job ended before both ran: " + runs[0].tail() + runs[1].tail())
        apps = (master_json(cluster) or {}).get("activeapps", [])
        return True if len(apps) == 2 and all(a["cores"] == 1 for a in apps) else None

    wait_for("both jobs to hold an executor", both_running, timeout=240)
    for r in runs:
        assert r.finish() == 0, r.tail()
        assert_matches_pickle(r.output, penguins_parquet, penguins_bundle, 6000)
        assert summary_of(r.output)["output"] == str(r.output)


def test_cluster_down_leaves_nothing_running(cluster: Cluster) -> None:
    where = Path(cluster.directory)
    before = processes(where)
    assert cluster.master_pid in before and set(cluster.workers.values()) <= set(before)
    done = _cli("down", "--dir", where)
    assert done.returncode == 0, done.stderr
    assert "down: stopped" in done.stdout
    assert not any(_procs.alive(p) for p in before)
    assert processes(where) == []
    assert _procs.port_free(cluster.master_port) and _procs.port_free(cluster.ui_port)
    assert _cli("status", "--dir", where).returncode == 2  # "no cluster is running"
