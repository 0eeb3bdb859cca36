"""Export of one version as a portable ``.tar.gz``, and its safe import.

An archive is flat: ``archive.json`` (what it is, the version's current tags and description,
the checksum of the manifest), then the package's ``manifest.json`` and the files the manifest
lists. Import never calls ``tarfile.extract``: every member is checked first (a regular file,
a plain name from the expected set, no duplicates), then copied by name into a staging
directory while its sha256 is compared with the manifest. Anything else refuses the whole
archive before the repository is touched.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import tarfile
import time
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from modelport._files import atomic_path
from modelport._text import one_line
from modelport.errors import IntegrityError, NotFoundError, RepositoryError, UsageError
from modelport.repository.manifest import MANIFEST_FILE, Manifest
from modelport.repository.names import validate_tag
from modelport.repository.store import os_error

__all__ = ["ARCHIVE_FILE", "ArchiveContents", "read_archive", "write_archive"]

ARCHIVE_FILE = "archive.json"
ARCHIVE_FORMAT = "modelport-archive"
_FILE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_MAX_JSON = 16 << 20  # a manifest with a large verification report still fits easily
_CHUNK = 1 << 20


@dataclass
class ArchiveContents:
    meta: dict[str, Any]  # archive.json
    manifest: Manifest  # the manifest as exported (name and version of the source repository)
    # the version's and the model's tags and descriptions when exported, already validated
    tags: dict[str, str] = field(default_factory=dict)
    description: str | None = None
    model_tags: dict[str, str] = field(default_factory=dict)
    model_description: str | None = None


def write_archive(
    package: Path, manifest: Manifest, meta: Mapping[str, Any], destination: Path
) -> Path:
    """Write ``package`` (already verified by the caller) to ``destination`` atomically."""
    manifest_bytes = (package / MANIFEST_FILE).read_bytes()
    header = {
        "format": ARCHIVE_FORMAT,
        "format_version": 1,
        **meta,
        "manifest_sha256": hashlib.sha256(manifest_bytes).hexdigest(),
    }
    with atomic_path(destination) as tmp, tarfile.open(tmp, "w:gz") as tar:
        _add_bytes(tar, ARCHIVE_FILE, json.dumps(header, indent=2).encode())
        _add_bytes(tar, MANIFEST_FILE, manifest_bytes)
        for name in sorted(manifest.files):
            path = package / name
            info = _info(name, path.stat().st_size)
            with open(path, "rb") as fh:
                tar.addfile(info, fh)
    return destination


def _info(name: str, size: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size = size
    info.mode = 0o644  # nothing executable, whatever the source file's mode was
    info.mtime = int(time.time())
    return info


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    tar.addfile(_info(name, len(data)), io.BytesIO(data))


def read_archive(archive: Path, staging: Path) -> ArchiveContents:
    """Check ``archive`` and copy its data files into ``staging`` (which must be empty).

    Raises RepositoryError for anything wrong with the archive; on error ``staging`` may hold
    partial files, which its owner discards.
    """
    label = f"archive {str(archive)!r}"
    if archive.is_dir():
        raise UsageError(f"{label} is a directory; give the .tar.gz file 'models export' wrote")
    if not archive.is_file():
        raise NotFoundError(f"{label} does not exist")
    try:
        with tarfile.open(archive, "r:*") as tar:
            members = _checked_members(tar, label)
            meta = _json_member(tar, members, ARCHIVE_FILE, label)
            if meta.get("format") != ARCHIVE_FORMAT:
                raise RepositoryError(f"{label} is not a modelport archive (no {ARCHIVE_FILE})")
            manifest_bytes = _read_small(tar, members[MANIFEST_FILE], label)
            if hashlib.sha256(manifest_bytes).hexdigest() != meta.get("manifest_sha256"):
                raise RepositoryError(
                    f"{label} is corrupt: {MANIFEST_FILE} does not match its checksum"
                )
            try:
                manifest = Manifest.from_json(manifest_bytes, label)
            except IntegrityError as exc:
                raise RepositoryError(str(exc)) from exc
            expected = _expected_files(manifest, label)
            unexpected = sorted(set(members) - expected - {ARCHIVE_FILE, MANIFEST_FILE})
            if unexpected:
                raise RepositoryError(
                    f"{label} has member(s) its manifest does not list: {', '.join(unexpected)}; "
                    "refusing to import it"
                )
            missing = sorted(expected - set(members))
            if missing:
                raise RepositoryError(f"{label} is incomplete: missing {', '.join(missing)}")
            for name in sorted(expected):
                _copy_checked(tar, members[name], staging / name, manifest.files[name], label)
    except (tarfile.TarError, EOFError, zlib.error, OSError) as exc:
        raise RepositoryError(
            f"{label} is corrupt or not a modelport archive ({one_line(exc)})"
        ) from exc
    model = meta.get("model") if meta.get("model") is not None else {}
    if not isinstance(model, dict):
        raise RepositoryError(f"{label} has an unreadable {ARCHIVE_FILE} (bad 'model' entry)")
    return ArchiveContents(
        meta=meta,
        manifest=manifest,
        tags=_tags(meta.get("tags"), label),
        description=_text(meta.get("description"), label),
        model_tags=_tags(model.get("tags"), label),
        model_description=_text(model.get("description"), label),
    )


def _tags(value: Any, label: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise RepositoryError(f"{label} has an unreadable {ARCHIVE_FILE} (tags are not a mapping)")
    try:
        return dict(validate_tag(k, v) for k, v in value.items())
    except UsageError as exc:
        raise RepositoryError(f"{label} carries an invalid tag: {exc}") from exc


def _text(value: Any, label: str) -> str | None:
    if value is None or (isinstance(value, str) and "\x00" not in value):
        return value
    raise RepositoryError(f"{label} has an unreadable {ARCHIVE_FILE} (bad description)")


def _checked_members(tar: tarfile.TarFile, label: str) -> dict[str, tarfile.TarInfo]:
    members: dict[str, tarfile.TarInfo] = {}
    for member in tar.getmembers():
        name = member.name
        # Archives are flat: a plain file name, never a path, a link or a device.
        if _FILE_NAME.fullmatch(name) is None or ".." in name:
            raise RepositoryError(
                f"{label} has a member with an unsafe name {name!r}; refusing to import it"
            )
        if not member.isreg():
            raise RepositoryError(
                f"{label} member {name!r} is not a regular file (a link, directory or device); "
                "refusing to import it"
            )
        if name in members:
            raise RepositoryError(f"{label} has member {name!r} twice; refusing to import it")
        members[name] = member
    for required in (ARCHIVE_FILE, MANIFEST_FILE):
        if required not in members:
            raise RepositoryError(f"{label} is not a modelport archive (no {required})")
    return members


def _expected_files(manifest: Manifest, label: str) -> set[str]:
    names = set(manifest.files)
    for name in names:
        if (
            _FILE_NAME.fullmatch(name) is None
            or ".." in name
            or name in (ARCHIVE_FILE, MANIFEST_FILE)
        ):
            raise RepositoryError(f"{label} manifest lists an unsafe file name {name!r}")
    return names


def _read_small(tar: tarfile.TarFile, member: tarfile.TarInfo, label: str) -> bytes:
    if member.size > _MAX_JSON:
        raise RepositoryError(f"{label} member {member.name!r} is implausibly large")
    handle = tar.extractfile(member)
    if handle is None:  # only for non-regular members, which were refused already
        raise RepositoryError(f"{label} member {member.name!r} cannot be read")
    with handle:
        return handle.read()


def _json_member(
    tar: tarfile.TarFile, members: Mapping[str, tarfile.TarInfo], name: str, label: str
) -> dict[str, Any]:
    try:
        data = json.loads(_read_small(tar, members[name], label))
    except ValueError as exc:
        raise RepositoryError(f"{label} has an unreadable {name} ({exc})") from exc
    if not isinstance(data, dict):
        raise RepositoryError(f"{label} has an unreadable {name} (not a JSON object)")
    return data


def _copy_checked(
    tar: tarfile.TarFile, member: tarfile.TarInfo, target: Path, expected: str, label: str
) -> None:
    handle = tar.extractfile(member)
    if handle is None:
        raise RepositoryError(f"{label} member {member.name!r} cannot be read")
    digest = hashlib.sha256()
    try:
        out = open(target, "xb")  # noqa: SIM115 (closed below; errors here are ours, not the archive's)
    except OSError as exc:
        raise os_error(exc, f"write {target.name} into the repository") from exc
    with handle, out:
        _copy(handle, out, digest)
    if digest.hexdigest() != expected:
        raise RepositoryError(
            f"{label} file {member.name} is corrupt (checksum mismatch); export it again"
        )


def _copy(source: IO[bytes], target: IO[bytes], digest: Any) -> None:
    while chunk := source.read(_CHUNK):
        digest.update(chunk)
        target.write(chunk)
