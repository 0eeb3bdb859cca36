"""A bundle: one directory holding the same model in every format, and its manifest.

Reading works on any path pyarrow's filesystems read (a local path, ``file://``, ``s3://`` or
``s3a://``, ``hdfs://``, ``gs://``), so a Spark driver reads the bundle where the cluster keeps
it. Every file is checked against the manifest's sha256 when it is read: a tampered or truncated
file is an error, not a wrong prediction. Writing is local and atomic (see :mod:`formats.save`).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from formats._files import local_path, pyarrow_filesystem
from formats.errors import IntegrityError, NotFoundError
from formats.manifest import FORMATS, Manifest

__all__ = ["Bundle", "sha256_bytes", "sha256_file"]

MANIFEST = "manifest.json"


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _split_uri(location: str) -> tuple[Any, str]:
    """(pyarrow filesystem or None for local, path within it)."""
    try:
        return pyarrow_filesystem(location)
    except Exception as exc:  # pyarrow raises ArrowInvalid, OSError, ... per scheme
        raise NotFoundError(f"cannot open bundle location {location!r}: {exc}") from exc


@dataclass
class Bundle:
    """An opened bundle: its location and manifest; files are read (and checked) on demand."""

    location: str

    @classmethod
    def open(cls, location: str | Path) -> Bundle:
        bundle = cls(str(location))
        bundle.manifest  # noqa: B018 - read now: a missing or damaged bundle fails here
        return bundle

    @property
    def local_path(self) -> Path | None:
        return local_path(self.location)

    def _read_raw(self, name: str) -> bytes:
        filesystem, root = _split_uri(self.location)
        path = f"{root.rstrip('/')}/{name}"
        try:
            if filesystem is None:
                return Path(path).read_bytes()
            with filesystem.open_input_stream(path) as fh:
                return bytes(fh.read())
        except FileNotFoundError:
            if name == MANIFEST:
                raise NotFoundError(
                    f"{self.location!r} is not a bundle (no {MANIFEST}); create one with "
                    "'python -m formats save' or 'make export'"
                ) from None
            raise NotFoundError(
                f"the bundle {self.location!r} has no {name}; re-create the bundle"
            ) from None
        except IsADirectoryError:
            raise NotFoundError(f"{path!r} is a directory, not a bundle file") from None
        except NotADirectoryError:
            raise NotFoundError(
                f"{self.location!r} is a file, not a bundle directory; pass the directory "
                "that holds manifest.json"
            ) from None
        except OSError as exc:
            raise NotFoundError(f"cannot read {path!r}: {exc}") from exc

    @cached_property
    def manifest(self) -> Manifest:
        return Manifest.from_json(self._read_raw(MANIFEST))

    def read(self, name: str) -> bytes:
        """A bundle file's bytes, checked against the manifest's sha256."""
        entry = self.manifest.files.get(name)
        if entry is None:
            raise NotFoundError(
                f"the bundle {self.location!r} lists no file {name}; it has "
                f"{sorted(self.manifest.files)}"
            )
        data = self._read_raw(name)
        if sha256_bytes(data) != entry["sha256"]:
            raise IntegrityError(
                f"{name} in {self.location!r} does not match the sha256 in manifest.json: the "
                "file was changed or damaged after saving; re-create the bundle"
            )
        return data

    def file_of(self, fmt: str) -> str:
        """The file that holds format ``fmt``, or an error saying why the format is absent."""
        if fmt not in FORMATS:
            raise NotFoundError(f"unknown format {fmt!r}; use one of {', '.join(FORMATS)}")
        entry = self.manifest.formats.get(fmt)
        if entry is None:
            raise NotFoundError(f"the bundle {self.location!r} has no {fmt} format (not saved)")
        if not entry.saved:
            raise NotFoundError(f"the bundle has no {fmt} model: {entry.why_not()}")
        return entry.file or FORMATS[fmt]

    def checked_path(self, fmt: str) -> Path:
        """A local path to format ``fmt``'s file after checking its sha256 (for engines that
        open files themselves: pypmml, jpmml_evaluator, skops)."""
        name = self.file_of(fmt)
        local = self.local_path
        if local is None:
            raise NotFoundError(
                f"the {fmt} engine reads local files; copy the bundle {self.location!r} to a "
                "local directory first"
            )
        self.read(name)
        return local / name
