"""Processes and ports for the local cluster, read straight from ``/proc`` (Linux).

No psutil: the cluster needs parent links, command lines and working directories only, and
``/proc`` has them. Everything here works on pids that the caller found by ancestry or by working
directory, never by a process name, so a cluster of ours never touches anyone else's Spark.
"""

from __future__ import annotations

import os
import signal
import socket
import time
from collections.abc import Iterable
from contextlib import closing, suppress
from pathlib import Path

__all__ = [
    "alive",
    "cpu_seconds",
    "cmdline",
    "cwd",
    "descendants",
    "under",
    "free_port",
    "pids",
    "port_free",
    "stop",
]


def _fields(pid: int) -> list[str] | None:
    """/proc/<pid>/stat after the command name (state, ppid, ...); None when it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # "pid (comm) state ppid ...": comm may hold spaces and parentheses, so split after the last ')'
    return text[text.rindex(")") + 2 :].split()


def _stat(pid: int) -> tuple[str, int] | None:
    """(state, parent pid) of ``pid``; None when it is gone."""
    fields = _fields(pid)
    return None if fields is None else (fields[0], int(fields[1]))


def cpu_seconds(pid: int, reaped: bool = True) -> float:
    """CPU seconds (user + system) of ``pid`` and (``reaped``) of the children it has reaped;
    0 when gone."""
    fields = _fields(pid)
    if fields is None:
        return 0.0
    end = 15 if reaped else 13  # utime, stime[, cutime, cstime]
    return sum(int(x) for x in fields[11:end]) / os.sysconf("SC_CLK_TCK")


def parent(pid: int) -> int | None:
    """The parent's pid; None when ``pid`` is gone."""
    stat = _stat(pid)
    return None if stat is None else stat[1]


def alive(pid: int) -> bool:
    """True while ``pid`` runs; a zombie (exited, not yet reaped) counts as gone."""
    stat = _stat(pid)
    return stat is not None and stat[0] not in ("Z", "X")


def pids() -> list[int]:
    """Every process id on this machine."""
    return [int(p) for p in os.listdir("/proc") if p.isdigit()]


def descendants(pid: int) -> list[int]:
    """Every live process below ``pid`` (children first level first)."""
    children: dict[int, list[int]] = {}
    for p in pids():
        stat = _stat(p)
        if stat is not None and stat[0] not in ("Z", "X"):
            children.setdefault(stat[1], []).append(p)
    out: list[int] = []
    todo = list(children.get(pid, []))
    while todo:
        p = todo.pop(0)
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def cwd(pid: int) -> Path | None:
    try:
        return Path(os.readlink(f"/proc/{pid}/cwd"))
    except OSError:
        return None


def under(directory: Path) -> list[int]:
    """Live processes whose working directory is ``directory`` or below it (a Spark executor
    runs in its worker's work dir: this finds executors orphaned by a killed worker)."""
    root = directory.resolve()
    found = []
    for p in pids():
        where = cwd(p)
        if where is not None and where.is_relative_to(root) and alive(p):
            found.append(p)
    return found


def stop(pids: Iterable[int], grace: float = 10.0) -> list[int]:
    """SIGTERM, then SIGKILL whatever still runs after ``grace`` seconds; returns those that
    had to be killed. Spark's daemons exit cleanly on SIGTERM (shutdown hooks)."""
    todo = [p for p in dict.fromkeys(pids) if alive(p)]
    for p in todo:
        _signal(p, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(alive(p) for p in todo):
        time.sleep(0.2)
    killed = [p for p in todo if alive(p)]
    for p in killed:
        _signal(p, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and any(alive(p) for p in killed):
        time.sleep(0.1)
    return killed


def _signal(pid: int, sig: signal.Signals) -> None:
    with suppress(ProcessLookupError):  # it exited meanwhile
        os.kill(pid, sig)


def port_free(port: int, host: str = "127.0.0.1") -> bool:
    """Nothing listens on ``host:port`` and it can be bound (0.0.0.0 too: Spark's UIs bind
    every interface unless SPARK_LOCAL_IP says otherwise)."""
    for addr in (host, "0.0.0.0"):
        with closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind((addr, port))
            except OSError:
                return False
    return True


def free_port(preferred: int = 0, host: str = "127.0.0.1", taken: Iterable[int] = ()) -> int:
    """``preferred`` when it is free (and not in ``taken``), else a port the kernel picks."""
    skip = set(taken)
    if preferred and preferred not in skip and port_free(preferred, host):
        return preferred
    while True:
        with closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as s:
            s.bind((host, 0))
            port = int(s.getsockname()[1])
        if port not in skip:
            return port
