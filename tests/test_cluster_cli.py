"""``python -m jobs.cluster``'s quick paths: busy ports, the one-line errors, and a cluster that
does not come up in time leaving nothing behind (the full cluster is tests/test_cluster.py)."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

from formats.errors import UsageError
from jobs.localcluster import procs as _procs
from jobs.localcluster.cluster import Cluster, _pick, processes, submit_command

ROOT = Path(__file__).resolve().parents[1]


def _cli(*args: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "jobs.cluster", *map(str, args)],
        cwd=ROOT, capture_output=True, text=True, timeout=180,
    )  # fmt: skip


def test_a_busy_port_is_replaced_and_said(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert not _procs.port_free(port)
        picked = _pick(port, set(), "master")
    assert picked != port and _procs.port_free(picked)
    assert f"port {port} (master) is busy; using {picked}" in capsys.readouterr().out


def test_no_cluster_is_one_line(tmp_path: Path) -> None:
    for verb in ("status", "url", "submit"):
        done = _cli(verb, "--dir", tmp_path)
        assert done.returncode == 2
        assert done.stderr.strip().splitlines() == [
            f"error: no cluster is running in {tmp_path}; start one with make cluster-up"
        ]
    done = _cli("down", "--dir", tmp_path)
    assert done.returncode == 0 and "nothing was running" in done.stdout


def test_submit_without_package_says_make_package(tmp_path: Path) -> None:
    cluster = Cluster(str(tmp_path), 7077, 8080, 0, 1, "1g")
    with pytest.raises(UsageError, match="modelport-code.zip does not exist; build it with make package"):
        submit_command(cluster, [], tmp_path / "dist")


def test_up_that_times_out_is_one_line_and_leaves_nothing(tmp_path: Path) -> None:
    # two workers in 1 s cannot happen (a JVM alone takes longer): the timeout path, for real
    done = _cli("up", "--dir", tmp_path, "--port", 0, "--ui-port", 0, "--timeout", 1)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: the cluster did not come up in 1 s")
    assert str(tmp_path / "logs") in lines[0]
    assert processes(tmp_path) == []
    assert not (tmp_path / "cluster.json").exists()
