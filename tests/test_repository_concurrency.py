"""Several processes at once, and processes killed mid-registration, on a real repository."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from modelport.errors import NotFoundError
from modelport.repository import Repository
from modelport.repository.store import CRASH_ENV
from modelport.runtime.session import Session
from tests.onnx_models import doubler

ROOT = Path(__file__).resolve().parent.parent

# Registers one version of "double" (from an .onnx file, or from an exported archive when given
# one) after waiting for the go file, so that all workers hit the repository at the same time.
WORKER = """
import os, sys, time
from pathlib import Path
import numpy as np
import onnx
from modelport.repository import Repository
root, worker, go = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3])
archive = sys.argv[4] if len(sys.argv) > 4 else None
sys.path.insert(0, os.environ["MODELPORT_TESTS_ROOT"])
from tests.onnx_models import doubler
repo = Repository(root)
model = doubler()
sample = {"x": np.full((2, 3), float(worker), np.float32)}
(go.parent / f"ready-{worker}").touch()
while not go.exists():
    time.sleep(0.005)
if archive:
    found = repo.import_archive(archive)
else:
    found = repo.register(model, "double", sample=sample, tags={"worker": worker})
print(found.version)
"""


def _spawn(root: Path, worker: str, go: Path, archive: Path | None = None,
           crash_at: str | None = None) -> subprocess.Popen[str]:
    env = dict(os.environ, MODELPORT_TESTS_ROOT=str(ROOT))
    env.pop(CRASH_ENV, None)
    if crash_at:
        env[CRASH_ENV] = crash_at
    args = [sys.executable, "-c", WORKER, str(root), worker, str(go)]
    if archive is not None:
        args.append(str(archive))
    return subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def test_eight_processes_register_concurrently(tmp_path: Path) -> None:
    root = tmp_path / "repo"  # not created yet: the workers race to create it, too
    go = tmp_path / "go"
    workers = [_spawn(root, str(i), go) for i in range(8)]
    deadline = time.monotonic() + 120
    # Start them all at once: every worker has imported everything and opened the repository.
    while len(list(tmp_path.glob("ready-*"))) < 8:
        assert time.monotonic() < deadline, "workers did not start"
        assert all(p.poll() is None for p in workers), [p.communicate() for p in workers]
        time.sleep(0.02)
    go.touch()
    versions = []
    for proc in workers:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        versions.append(int(out.strip()))
    assert sorted(versions) == list(range(1, 9))  # distinct, consecutive, none lost
    with Repository(root) as repo:
        found = repo.list_versions("double")
        assert [v.version for v in found] == list(range(1, 9))
        # Each worker's version holds that worker's own data: nothing crossed over.
        assert sorted(v.tags["worker"] for v in found) == [str(i) for i in range(8)]
        for v in found:
            loaded = repo.load(v.ref)
            example = loaded.input_example()
            assert example is not None
            assert float(example["x"][0, 0]) == float(v.tags["worker"])
            out = Session(loaded.model_path).run(example)
            np.testing.assert_allclose(out["y"], example["x"] * 2)
        assert list((root / "tmp").iterdir()) == []


def test_threads_creating_and_registering_at_once(tmp_path: Path) -> None:
    """Eight threads, each with its own Repository on a directory that does not exist yet."""
    root = tmp_path / "repo"
    barrier = threading.Barrier(8)
    errors: list[BaseException] = []
    versions: list[int] = []

    def work() -> None:
        try:
            barrier.wait()
            with Repository(root) as repo:
                versions.append(repo.register(doubler(), "double").version)
        except BaseException as exc:  # collected and re-raised in the test thread
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    assert sorted(versions) == list(range(1, 9))


CRASH_POINTS = ["staged", "manifest", "renamed", "committed"]


@pytest.mark.parametrize("point", CRASH_POINTS)
def test_sigkill_during_registration_leaves_repository_consistent(
    tmp_path: Path, point: str
) -> None:
    root = tmp_path / "repo"
    with Repository(root) as repo:
        repo.register(doubler(), "double", sample={"x": np.ones((2, 3), np.float32)})
    go = tmp_path / "go"
    go.touch()
    proc = _spawn(root, "7", go, crash_at=point)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL, err

    with Repository(root) as repo:
        visible = [v.version for v in repo.list_versions("double")]
        # Killed before the commit: the version does not exist. After it: it exists, whole.
        expected = [1, 2] if point == "committed" else [1]
        assert visible == expected
        for version in visible:
            assert repo.load(f"double:{version}").version == version
        if point != "committed":
            with pytest.raises(NotFoundError):
                repo.resolve("double:2")
        assert repo.resolve("double").version == expected[-1]
        # The repository stays usable: the next registration gets the next free number and a
        # half-written package in its place (killed after the rename) is replaced.
        nxt = repo.register(doubler(), "double", sample={"x": np.ones((2, 3), np.float32)})
        assert nxt.version == expected[-1] + 1
        assert repo.load(nxt.ref).manifest.version == nxt.version
        # The crashed process's staging directory was swept by that registration.
        assert list((root / "tmp").iterdir()) == []
        repo.gc()
        on_disk = sorted(int(p.name) for p in (root / "packages" / "double").iterdir())
        assert on_disk == [v.version for v in repo.list_versions("double")]
        assert repo.check() == []


def test_sigkill_during_import_leaves_repository_unchanged(tmp_path: Path) -> None:
    source = Repository(tmp_path / "source")
    source.register(doubler(), "double", sample={"x": np.ones((2, 3), np.float32)})
    archive = source.export_version("double:1", tmp_path / "double.tar.gz")
    root = tmp_path / "repo"
    Repository(root).close()
    go = tmp_path / "go"
    go.touch()
    proc = _spawn(root, "0", go, archive=archive, crash_at="renamed")
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL, err
    with Repository(root) as repo:
        assert repo.list_models() == []
        assert repo.import_archive(archive).version == 1
        repo.gc()
        assert [p.name for p in (root / "packages" / "double").iterdir()] == ["1"]
