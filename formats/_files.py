"""Files and locations: atomic writes (a crash mid-write never leaves a half file where the final
one goes), and the one rule for whether a location is a local path (:func:`local_path`).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from formats.errors import UsageError

if TYPE_CHECKING:
    import onnx

__all__ = [
    "apply_umask",
    "atomic_path",
    "atomic_write",
    "local_path",
    "pyarrow_filesystem",
    "save_onnx",
]


def local_path(location: str | Path) -> Path | None:
    """The local path that ``location`` names, or None where it names another filesystem.

    A location without ``://`` is a local path; a ``file:`` URI is its path (``file:///tmp/x``
    and Hadoop's ``file:/tmp/x`` are both ``/tmp/x``); any other scheme (``s3a://``,
    ``hdfs://``, ``gs://``) is None: only that filesystem's client reaches it. The path is
    returned as written (relative stays relative).
    """
    if isinstance(location, Path):
        return location
    if location.startswith("file:"):
        return Path(location.removeprefix("file:").removeprefix("//"))
    return None if "://" in location else Path(location)


def pyarrow_filesystem(location: str) -> tuple[Any, str]:
    """(pyarrow filesystem, path within it) for ``location``; (None, the local path) where
    :func:`local_path` finds one. ``s3a://`` (Hadoop's S3 client) is read as ``s3://``.
    Raises what pyarrow raises for a scheme it cannot open (ArrowInvalid, OSError, ...)."""
    local = local_path(location)
    if local is not None:
        return None, str(local)
    from pyarrow import fs

    uri = "s3://" + location[len("s3a://") :] if location.startswith("s3a://") else location
    filesystem, path = fs.FileSystem.from_uri(uri)
    return filesystem, str(path)


@contextlib.contextmanager
def atomic_path(destination: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``destination``; rename it into place only on success."""
    destination = Path(destination)
    if destination.is_dir():  # os.replace would fail only after all the work, with a traceback
        raise UsageError(f"{str(destination)!r} is a directory; give a file name to write")
    directory = destination.parent
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"cannot create directory {str(directory)!r}: {exc.strerror}") from exc
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{destination.name}.", suffix=".tmp", dir=directory)
    except OSError as exc:
        raise UsageError(f"cannot write to {str(directory)!r}: {exc.strerror}") from exc
    os.close(fd)
    tmp_path = Path(tmp)
    apply_umask(tmp_path)  # mkstemp makes 0600 files; outputs should be as open() makes them
    try:
        yield tmp_path
        with open(tmp_path, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp_path, destination)
    finally:
        tmp_path.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_write(destination: str | Path, mode: str = "wb") -> Iterator[IO[bytes]]:
    with atomic_path(destination) as tmp, open(tmp, mode) as fh:
        yield fh


def save_onnx(model: onnx.ModelProto, destination: str | Path) -> Path:
    import onnx

    destination = Path(destination)
    with atomic_path(destination) as tmp:
        if model.ByteSize() > 1_900_000_000:  # protobuf's 2 GiB limit: weights go beside it
            onnx.save_model(
                model,
                str(tmp),
                save_as_external_data=True,
                location=destination.name + ".data",
            )
        else:
            onnx.save_model(model, str(tmp))
    return destination


def apply_umask(path: str | Path, directory: bool = False) -> None:
    """Give a file made by ``atomic_path`` (mkstemp: 0600) or mkdtemp (0700) the permissions a
    plain ``open``/``mkdir`` would have had, so users' outputs are not private by accident."""
    mask = os.umask(0)
    os.umask(mask)
    os.chmod(path, (0o777 if directory else 0o666) & ~mask)

