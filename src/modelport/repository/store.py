"""Version packages on disk: staged privately, published by one atomic rename, checked by sha256.

The repository talks to packages only through :class:`PackageStore`, so that blobs could later
live in an object store: stage a package in a private local directory, publish it under a name
and version, locate it, remove it, list what exists, sweep what was abandoned.

:class:`LocalStore` keeps packages in ``<root>/packages/<name>/<version>/`` and stages them in
``<root>/tmp/``. Each staging directory ``stage-<id>/`` has a lock file ``stage-<id>.lock``
beside it that its owner holds with ``flock`` for as long as it lives; the lock dies with the
process, so a sweep can tell an abandoned staging directory (lock free) from one in use.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import os
import shutil
import signal
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping
from pathlib import Path

from modelport.errors import IntegrityError, RepositoryError

__all__ = [
    "CRASH_ENV",
    "LocalStore",
    "PackageStore",
    "checksum_files",
    "crash_point",
    "fsync_dir",
    "fsync_tree",
    "os_error",
    "sha256_file",
    "verify_files",
]

# Test hook: names a point of registration at which the process kills itself with SIGKILL, so
# that the tests can prove a crash anywhere leaves the repository consistent.
CRASH_ENV = "MODELPORT_TEST_CRASH_AT"
_CHUNK = 1 << 20
_STALE_NEW_LOCK_S = 3600.0


def crash_point(point: str) -> None:
    if os.environ.get(CRASH_ENV) == point:
        os.kill(os.getpid(), signal.SIGKILL)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def checksum_files(directory: Path, exclude: tuple[str, ...] = ()) -> dict[str, str]:
    """sha256 of every regular file directly in ``directory`` (packages are flat)."""
    return {
        entry.name: sha256_file(entry)
        for entry in sorted(directory.iterdir())
        if entry.name not in exclude and entry.is_file()
    }


def verify_files(
    directory: Path, files: Mapping[str, str], where: str, allowed_extra: tuple[str, ...] = ()
) -> None:
    """Raise IntegrityError unless ``directory`` holds exactly ``files`` with those checksums."""
    for name, expected in files.items():
        path = directory / name
        if not path.is_file():
            raise IntegrityError(
                f"{where} file {name} is missing; re-register or import it again"
            )
        if sha256_file(path) != expected:
            raise IntegrityError(
                f"{where} file {name} is corrupt (checksum mismatch); re-register or import it "
                "again"
            )
    extra = sorted(
        entry.name
        for entry in directory.iterdir()
        if entry.name not in files and entry.name not in allowed_extra
    )
    if extra:
        # A package holds only what its manifest lists: nothing can be slipped in beside it.
        raise IntegrityError(
            f"{where} has unexpected file(s) {', '.join(extra)}; remove them or import it again"
        )


def fsync_dir(directory: Path) -> None:
    """Make a rename or a new entry in ``directory`` durable."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_tree(directory: Path) -> None:
    for entry in directory.iterdir():
        if entry.is_file():
            with open(entry, "rb") as fh:
                os.fsync(fh.fileno())
    fsync_dir(directory)


def os_error(exc: OSError, what: str) -> RepositoryError:
    """One line for a filesystem failure: a read-only repository is the common one."""
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return RepositoryError(
            f"cannot {what}: the repository is read-only ({exc.strerror}); use a writable "
            "directory with --repo or MODELPORT_HOME"
        )
    return RepositoryError(f"cannot {what}: {exc.strerror or exc}")


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return time.time()


class PackageStore(ABC):
    """Where version packages live; the index decides which of them are visible."""

    @abstractmethod
    def prepare(self) -> None:
        """Create whatever the store needs before its first use (idempotent)."""

    @abstractmethod
    def staging(self) -> contextlib.AbstractContextManager[Path]:
        """A private, empty local directory to build a package in; removed on exit unless
        :meth:`publish` took it."""

    @abstractmethod
    def publish(self, staged: Path, name: str, version: int) -> Path:
        """Make ``staged`` the package ``name``/``version`` in one atomic step.

        The caller holds the index's write lock and has checked that the index has no row for
        this version, so whatever is already there is a leftover of a crash and is replaced.
        """

    @abstractmethod
    def locate(self, name: str, version: int) -> Path:
        """The local directory of a published package (no I/O)."""

    @abstractmethod
    def remove(self, name: str, version: int) -> None:
        """Remove a package; removing one that is not there is not an error."""

    @abstractmethod
    def packages(self) -> Iterator[tuple[str, int]]:
        """Every (name, version) that has a package, visible or not."""

    @abstractmethod
    def sweep(self) -> int:
        """Remove abandoned staging directories; returns how many were removed."""


class LocalStore(PackageStore):
    def __init__(self, root: Path) -> None:
        self.root = root
        self.packages_dir = root / "packages"
        self.tmp_dir = root / "tmp"

    def prepare(self) -> None:
        self._ensure_dirs()

    def _ensure_dirs(self) -> None:
        try:
            self.packages_dir.mkdir(exist_ok=True)
            self.tmp_dir.mkdir(exist_ok=True)
        except OSError as exc:
            raise os_error(exc, f"write to {str(self.root)!r}") from exc

    @contextlib.contextmanager
    def staging(self) -> Iterator[Path]:
        self._ensure_dirs()
        token = uuid.uuid4().hex
        lock_path = self.tmp_dir / f"stage-{token}.lock"
        path = self.tmp_dir / f"stage-{token}"
        new_lock = self.tmp_dir / f"stage-{token}.new"
        try:
            # The lock is taken before it gets its ".lock" name (a sweep must never find it free
            # while its owner lives) and exists before the directory, so a staging directory
            # without a lock is abandoned.
            fd = os.open(new_lock, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
        except OSError as exc:
            raise os_error(exc, f"write to {str(self.tmp_dir)!r}") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            os.rename(new_lock, lock_path)
            path.mkdir()
            yield path
        except OSError as exc:
            raise os_error(exc, f"write to {str(self.tmp_dir)!r}") from exc
        finally:
            shutil.rmtree(path, ignore_errors=True)  # gone already when it was published
            lock_path.unlink(missing_ok=True)
            new_lock.unlink(missing_ok=True)
            os.close(fd)

    def publish(self, staged: Path, name: str, version: int) -> Path:
        final = self.locate(name, version)
        try:
            fsync_tree(staged)
            parent = final.parent
            if not parent.is_dir():
                parent.mkdir(parents=True, exist_ok=True)
                fsync_dir(self.packages_dir)
            if final.exists():
                self._discard(final)
            os.rename(staged, final)
            fsync_dir(parent)
        except OSError as exc:
            raise os_error(exc, f"publish {name}:{version}") from exc
        return final

    def locate(self, name: str, version: int) -> Path:
        return self.packages_dir / name / str(version)

    def remove(self, name: str, version: int) -> None:
        path = self.locate(name, version)
        if path.exists():
            try:
                self._discard(path)
            except OSError as exc:
                raise os_error(exc, f"remove {name}:{version}") from exc

    def _discard(self, path: Path) -> None:
        # Rename first: a crash mid-delete leaves a whole package or a trash dir, never half one.
        self._ensure_dirs()
        trash = self.tmp_dir / f"trash-{uuid.uuid4().hex}"
        os.rename(path, trash)
        shutil.rmtree(trash, ignore_errors=True)

    def packages(self) -> Iterator[tuple[str, int]]:
        if not self.packages_dir.is_dir():
            return
        for model_dir in sorted(self.packages_dir.iterdir()):
            if not model_dir.is_dir():
                continue
            for version_dir in model_dir.iterdir():
                if version_dir.is_dir() and version_dir.name.isdigit():
                    yield model_dir.name, int(version_dir.name)

    def sweep(self) -> int:
        if not self.tmp_dir.is_dir():
            return 0
        removed = 0
        for entry in list(self.tmp_dir.iterdir()):
            if entry.suffix == ".lock":
                if self._abandoned(entry):
                    shutil.rmtree(entry.with_suffix(""), ignore_errors=True)
                    entry.unlink(missing_ok=True)
                    removed += 1
            elif entry.is_dir() and not entry.with_name(entry.name + ".lock").exists():
                # trash-* from deletes, or a staging directory whose owner is gone
                shutil.rmtree(entry, ignore_errors=True)
                removed += 1
            elif entry.suffix == ".new" and time.time() - _mtime(entry) > _STALE_NEW_LOCK_S:
                # a lock file whose owner died in the instant between creating and naming it
                entry.unlink(missing_ok=True)
        return removed

    @staticmethod
    def _abandoned(lock_path: Path) -> bool:
        try:
            fd = os.open(lock_path, os.O_RDWR)
        except OSError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return False  # held by a live process
        finally:
            os.close(fd)  # closing releases the lock if we got it
        return True
