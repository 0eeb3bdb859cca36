"""``Repository``: named models with numbered, immutable, checksummed versions.

A repository is a directory::

    modelport.db                 the SQLite index (models, versions, aliases, tags, descriptions)
    packages/<name>/<version>/   one immutable package per version: model.onnx (+ external
                                 data), manifest.json, input_example.npz; nothing executable
    tmp/                         staging and trash; leftovers of crashed processes are swept

Registration builds the package in ``tmp/``, then, holding the index's write lock, hands out the
next version number, writes the manifest, renames the package into place and commits its row.
A process killed at any moment leaves the version either whole and visible or invisible: a
package without a row is never shown and is replaced or swept later.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from modelport.errors import (
    ConflictError,
    IntegrityError,
    NotFoundError,
    RepositoryError,
    UsageError,
)
from modelport.repository import package as pkg
from modelport.repository.archive import read_archive, write_archive
from modelport.repository.index import INDEX_FILE, MODEL_LEVEL, Index
from modelport.repository.manifest import MANIFEST_FILE, Manifest
from modelport.repository.names import (
    Ref,
    parse_ref,
    validate_alias,
    validate_name,
    validate_tag,
    validate_version,
)
from modelport.repository.store import (
    LocalStore,
    PackageStore,
    checksum_files,
    crash_point,
    fsync_tree,
    os_error,
    verify_files,
)
from modelport.signature import Signature

__all__ = ["ModelInfo", "ModelVersion", "Repository", "default_root"]

MAX_DESCRIPTION = 64 * 1024


def default_root() -> Path:
    """``$MODELPORT_HOME``, else ``$XDG_DATA_HOME/modelport``, else ``~/.local/share/modelport``."""
    home = os.environ.get("MODELPORT_HOME")
    if home:
        return Path(home).expanduser()
    data = os.environ.get("XDG_DATA_HOME")
    base = Path(data).expanduser() if data else Path.home() / ".local" / "share"
    return base / "modelport"


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass
class ModelVersion:
    """One registered version. ``tags``, ``aliases`` and ``description`` are the current ones
    from the index; the manifest keeps what was given at registration."""

    name: str
    version: int
    path: Path  # the immutable package directory
    manifest: Manifest
    aliases: list[str] = field(default_factory=list)
    tags: dict[str, str] = field(default_factory=dict)
    description: str | None = None
    created: str = ""

    @property
    def ref(self) -> str:
        return f"{self.name}:{self.version}"

    @property
    def model_path(self) -> Path:
        return self.path / pkg.MODEL_FILE

    @property
    def signature(self) -> Signature:
        return self.manifest.signature

    @property
    def framework(self) -> str:
        return self.manifest.framework

    def input_example(self) -> dict[str, np.ndarray] | None:
        """The stored input example (a few rows), loaded without pickle; None if there is none."""
        if not self.manifest.input_example:
            return None
        return pkg.read_example(self.path / self.manifest.input_example, self.signature)


@dataclass
class ModelInfo:
    name: str
    description: str | None
    latest_version: int | None  # None once every version was deleted
    versions: int
    aliases: dict[str, int]
    tags: dict[str, str]
    created: str


class Repository:
    """The model repository at ``root`` (default: :func:`default_root`), created if missing.

    A directory that exists, is not empty and has no index is refused, as is one the process
    cannot write to. Instances are safe to share between threads; any number of processes may
    use one repository at once.
    """

    def __init__(self, root: str | Path | None = None) -> None:
        self.root = Path(root).expanduser().absolute() if root else default_root().absolute()
        label = repr(str(self.root))
        if self.root.exists() and not self.root.is_dir():
            raise RepositoryError(f"{label} is not a modelport repository (it is a file)")
        db = self.root / INDEX_FILE
        if db.is_file():
            self._check_writable(label)
            self._index = Index(db, create=False)
        else:
            self._refuse_foreign(label)
            try:
                self.root.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise os_error(exc, f"create the repository {label}") from exc
            self._check_writable(label)
            self._index = Index(db, create=True)
        self.store: PackageStore = LocalStore(self.root)
        self.store.prepare()
        # Packages are immutable and version numbers never reused: manifests can be cached.
        self._manifests: dict[tuple[str, int], Manifest] = {}

    def _refuse_foreign(self, label: str) -> None:
        """No index yet: fine for a new or empty directory, or one another process is turning
        into a repository this instant (only our own entries in it); anything else is not ours.
        Packages without an index are refused too: a fresh index would hide them, and gc would
        remove them."""
        if not self.root.is_dir():
            return
        own = {INDEX_FILE + suffix for suffix in ("", "-wal", "-shm", "-journal")} | {"tmp"}
        packages = self.root / "packages"
        for entry in self.root.iterdir():
            if entry == packages and entry.is_dir() and not any(entry.iterdir()):
                continue
            if entry.name not in own:
                what = (
                    "it holds packages but no index; restore its " + INDEX_FILE
                    if entry == packages
                    else f"it holds other files and no {INDEX_FILE}; choose an empty or new "
                    "directory"
                )
                raise RepositoryError(f"{label} is not a modelport repository ({what})")

    def _check_writable(self, label: str) -> None:
        if not os.access(self.root, os.W_OK | os.X_OK):
            raise RepositoryError(
                f"the repository {label} is read-only; use a writable directory with --repo or "
                "MODELPORT_HOME"
            )

    def close(self) -> None:
        self._index.close()

    def __enter__(self) -> Repository:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Repository({str(self.root)!r})"

    # -- reading ---------------------------------------------------------------------------------

    def resolve(self, ref: str | Ref) -> ModelVersion:
        """The version ``ref`` names (``name`` = latest); cheap: no file is hashed."""
        parsed = parse_ref(ref)
        with self._index.read() as conn:
            row = self._version_row(conn, parsed)
            aliases = self._index.aliases(conn, parsed.name)
            tags = self._index.tags(conn, parsed.name, int(row["version"]))
        version = int(row["version"])
        return self._version(
            parsed.name,
            version,
            row,
            aliases=[alias for alias, target in aliases.items() if target == version],
            tags=tags,
        )

    def load(self, ref: str | Ref) -> ModelVersion:
        """Resolve ``ref`` and check the sha256 of every file of the package."""
        found = self.resolve(ref)
        where = f"model {found.ref!r}"
        manifest_path = found.path / MANIFEST_FILE
        try:
            data = manifest_path.read_bytes()
        except OSError as exc:
            raise IntegrityError(
                f"{where} file {MANIFEST_FILE} is missing; re-register or import it again"
            ) from exc
        with self._index.read() as conn:
            row = self._index.version(conn, found.name, found.version)
        if row is None:  # deleted since resolve
            raise NotFoundError(f"model {found.name!r} has no version {found.version}")
        if hashlib.sha256(data).hexdigest() != row["manifest_sha256"]:
            raise IntegrityError(
                f"{where} file {MANIFEST_FILE} is corrupt (checksum mismatch); re-register or "
                "import it again"
            )
        manifest = Manifest.from_json(data, where)
        verify_files(found.path, manifest.files, where, allowed_extra=(MANIFEST_FILE,))
        found.manifest = manifest
        return found

    def list_models(self) -> list[ModelInfo]:
        with self._index.read() as conn:
            rows = self._index.models(conn)
            infos = [
                ModelInfo(
                    name=row["name"],
                    description=row["description"],
                    latest_version=None if row["latest"] is None else int(row["latest"]),
                    versions=int(row["count"]),
                    aliases=self._index.aliases(conn, row["name"]),
                    tags=self._index.tags(conn, row["name"], MODEL_LEVEL),
                    created=row["created"],
                )
                for row in rows
            ]
        return infos

    def model(self, name: str) -> ModelInfo:
        """One model's summary (NotFoundError if unknown)."""
        name = validate_name(name)
        for info in self.list_models():
            if info.name == name:
                return info
        raise self._unknown_model(name)

    def list_versions(self, name: str) -> list[ModelVersion]:
        name = validate_name(name)
        with self._index.read() as conn:
            if self._index.model(conn, name) is None:
                raise self._unknown_model(name, conn)
            rows = self._index.versions(conn, name)
            aliases = self._index.aliases(conn, name)
            tags = {int(r["version"]): self._index.tags(conn, name, int(r["version"])) for r in rows}
        return [
            self._version(
                name,
                int(row["version"]),
                row,
                aliases=[a for a, v in aliases.items() if v == int(row["version"])],
                tags=tags[int(row["version"])],
            )
            for row in rows
        ]

    def _version_row(self, conn: Any, ref: Ref) -> Any:
        model = self._index.model(conn, ref.name)
        if model is None:
            raise self._unknown_model(ref.name, conn)
        if ref.version is not None:
            row = self._index.version(conn, ref.name, ref.version)
            if row is None:
                raise self._unknown_version(conn, ref.name, ref.version)
            return row
        if ref.alias is not None:
            target = self._index.alias(conn, ref.name, ref.alias)
            if target is None:
                known = ", ".join(self._index.aliases(conn, ref.name)) or "none"
                raise NotFoundError(
                    f"model {ref.name!r} has no alias {ref.alias!r}; its aliases: {known}"
                )
            row = self._index.version(conn, ref.name, target)
            if row is None:  # the foreign key makes this impossible; say so plainly if not
                raise IntegrityError(f"alias {ref.alias!r} of {ref.name!r} points at nothing")
            return row
        row = self._index.latest(conn, ref.name)
        if row is None:
            raise NotFoundError(
                f"model {ref.name!r} has no versions (all were deleted); register one"
            )
        return row

    def _version(
        self, name: str, version: int, row: Any, *, aliases: list[str], tags: dict[str, str]
    ) -> ModelVersion:
        path = self.store.locate(name, version)
        return ModelVersion(
            name=name,
            version=version,
            path=path,
            manifest=self._manifest(name, version, path),
            aliases=aliases,
            tags=tags,
            description=row["description"],
            created=row["created"],
        )

    def _manifest(self, name: str, version: int, path: Path) -> Manifest:
        cached = self._manifests.get((name, version))
        if cached is not None:
            return cached
        where = f"model '{name}:{version}'"
        try:
            data = (path / MANIFEST_FILE).read_bytes()
        except OSError as exc:
            raise IntegrityError(
                f"{where} file {MANIFEST_FILE} is missing; re-register or import it again"
            ) from exc
        manifest = Manifest.from_json(data, where)
        if manifest.name != name or manifest.version != version:
            raise IntegrityError(
                f"{where} has the manifest of {manifest.name}:{manifest.version}; re-register "
                "or import it again"
            )
        self._manifests[(name, version)] = manifest
        return manifest

    def _unknown_model(self, name: str, conn: Any = None) -> NotFoundError:
        if conn is None:
            names = [info.name for info in self.list_models()]
        else:
            names = [row["name"] for row in self._index.models(conn)]
        known = ", ".join(names[:10]) + (", ..." if len(names) > 10 else "")
        hint = f"known models: {known}" if names else "the repository has no models yet"
        return NotFoundError(f"model {name!r} not found in {str(self.root)!r}; {hint}")

    def _unknown_version(self, conn: Any, name: str, version: int) -> NotFoundError:
        versions = [str(row["version"]) for row in self._index.versions(conn, name)]
        have = ", ".join(versions) if versions else "none"
        return NotFoundError(f"model {name!r} has no version {version}; its versions: {have}")

    # -- registering -----------------------------------------------------------------------------

    def register(
        self,
        source: Any,
        name: str,
        *,
        sample: Any = None,
        framework: str | None = None,
        force: bool = False,
        description: str | None = None,
        tags: Mapping[str, str] | None = None,
        verification: Mapping[str, Any] | None = None,
        source_info: Mapping[str, Any] | None = None,
        **convert_kwargs: Any,
    ) -> ModelVersion:
        """Register ``source`` as the next version of ``name``.

        ``source`` is a path to an ``.onnx`` file or to a framework model, a framework object,
        a ``ConversionResult``, or an ``onnx.ModelProto`` (then ``sample`` is its input example
        and ``verification`` a report dict to store). Paths and objects are converted and
        verified with ``modelport.convert.convert(**convert_kwargs)``; a failed verification
        raises VerificationFailedError unless ``force``, which is recorded in the manifest.
        ``description`` and ``tags`` belong to the version; the description also becomes the
        model's description when the model has none yet.
        """
        name = validate_name(name)
        version_tags = dict(validate_tag(k, v) for k, v in (tags or {}).items())
        description = _check_description(description)
        prepared = pkg.prepare(
            source,
            name=name,
            sample=sample,
            framework=framework,
            force=force,
            verification=verification,
            source_info=source_info,
            convert_kwargs=convert_kwargs,
        )
        self.store.sweep()
        with self.store.staging() as staged:
            pkg.write_model(prepared.model, staged)
            example = None
            if prepared.sample:
                example = pkg.write_example(prepared.sample, prepared.signature, staged)
            files = checksum_files(staged)
            fsync_tree(staged)  # the slow part of durability, done before taking the lock
            crash_point("staged")

            def manifest_for(version: int, created: str) -> Manifest:
                return Manifest(
                    name=name,
                    version=version,
                    created=created,
                    framework=prepared.framework,
                    signature=prepared.signature,
                    source=prepared.source,
                    verification=prepared.verification,
                    forced=bool(force and prepared.passed is False),
                    runtime=pkg.runtime_requirements(prepared.model, prepared.verification),
                    files=files,
                    tags=version_tags,
                    description=description,
                    input_example=example,
                )

            version = self._publish(staged, name, manifest_for, version_tags, description)
        return self.resolve(Ref(name, version=version))

    def _publish(
        self,
        staged: Path,
        name: str,
        manifest_for: Any,
        tags: dict[str, str],
        description: str | None,
        model_meta: Mapping[str, Any] | None = None,
    ) -> int:
        """Under the write lock: number, manifest, rename, row, commit. Returns the version."""
        with self._index.write() as tx:
            created = _now()  # under the lock, so that later versions are never older
            self._check_case(tx, name)
            new_model = self._index.model(tx, name) is None
            version = self._index.allocate(tx, name, created)
            manifest: Manifest = manifest_for(version, created)
            data = manifest.to_json()
            try:
                with open(staged / MANIFEST_FILE, "wb") as fh:
                    fh.write(data)
            except OSError as exc:
                raise os_error(exc, "write the manifest") from exc
            crash_point("manifest")
            self.store.publish(staged, name, version)
            crash_point("renamed")
            self._index.insert_version(
                tx,
                name=name,
                version=version,
                created=created,
                framework=manifest.framework,
                description=description,
                manifest_sha256=hashlib.sha256(data).hexdigest(),
                forced=manifest.forced,
                tags=tags,
            )
            if new_model and model_meta:
                for key, value in model_meta["tags"].items():
                    self._index.set_tag(tx, name, MODEL_LEVEL, key, value)
            model_description = (model_meta or {}).get("description") or description
            row = self._index.model(tx, name)
            if model_description and row is not None and not row["description"]:
                self._index.set_description(tx, name, MODEL_LEVEL, model_description)
        crash_point("committed")
        return version

    def _check_case(self, conn: Any, name: str) -> None:
        # Package directories are named after models: on a case-insensitive filesystem "Net"
        # and "net" would share one, so the index refuses names that differ only by case.
        row = conn.execute(
            "SELECT name FROM models WHERE name = ? COLLATE NOCASE AND name != ?", (name, name)
        ).fetchone()
        if row is not None:
            raise ConflictError(
                f"model name {name!r} differs from the existing {row['name']!r} only by case; "
                f"use {row['name']!r} or another name"
            )

    # -- aliases, tags, descriptions ------------------------------------------------------------

    def set_alias(self, name: str, alias: str, version: int, *, move: bool = True) -> int | None:
        """Point ``alias`` at ``name:version``; returns the version it pointed at before.

        An existing alias is moved, unless ``move=False``: then an alias that already points
        at another version is a ConflictError (the CLI's ``alias set --no-move``).
        """
        name, alias, version = validate_name(name), validate_alias(alias), validate_version(version)
        with self._index.write() as tx:
            self._require_version(tx, name, version)
            previous = self._index.alias(tx, name, alias)
            if previous is not None and previous != version and not move:
                raise ConflictError(
                    f"alias {alias!r} already points at {name}:{previous}; move it explicitly "
                    "(without --no-move) or pick another alias"
                )
            self._index.set_alias(tx, name, alias, version)
        return previous

    def remove_alias(self, name: str, alias: str) -> None:
        name, alias = validate_name(name), validate_alias(alias)
        with self._index.write() as tx:
            self._require_model(tx, name)
            if not self._index.remove_alias(tx, name, alias):
                known = ", ".join(self._index.aliases(tx, name)) or "none"
                raise NotFoundError(f"model {name!r} has no alias {alias!r}; its aliases: {known}")

    def set_tag(self, name: str, key: str, value: str, version: int | None = None) -> None:
        """Tag the model (``version=None``) or one of its versions; an existing key is replaced."""
        name = validate_name(name)
        key, value = validate_tag(key, value)
        with self._index.write() as tx:
            level = self._level(tx, name, version)
            self._index.set_tag(tx, name, level, key, value)

    def remove_tag(self, name: str, key: str, version: int | None = None) -> None:
        name = validate_name(name)
        key, _ = validate_tag(key)
        with self._index.write() as tx:
            level = self._level(tx, name, version)
            if not self._index.remove_tag(tx, name, level, key):
                what = name if level == MODEL_LEVEL else f"{name}:{level}"
                raise NotFoundError(f"{what} has no tag {key!r}")

    def set_description(self, name: str, text: str | None, version: int | None = None) -> None:
        """Set (or with None/"" clear) the Markdown description of the model or a version."""
        name = validate_name(name)
        text = _check_description(text) or None
        with self._index.write() as tx:
            level = self._level(tx, name, version)
            self._index.set_description(tx, name, level, text)

    def _level(self, conn: Any, name: str, version: int | None) -> int:
        if version is None:
            self._require_model(conn, name)
            return MODEL_LEVEL
        version = validate_version(version)
        self._require_version(conn, name, version)
        return version

    def _require_model(self, conn: Any, name: str) -> None:
        if self._index.model(conn, name) is None:
            raise self._unknown_model(name, conn)

    def _require_version(self, conn: Any, name: str, version: int) -> None:
        self._require_model(conn, name)
        if self._index.version(conn, name, version) is None:
            raise self._unknown_version(conn, name, version)

    # -- deleting and housekeeping ---------------------------------------------------------------

    def delete_version(self, name: str, version: int) -> None:
        """Delete one version; refused while an alias points at it. Its number is not reused."""
        name, version = validate_name(name), validate_version(version)
        with self._index.write() as tx:
            self._require_version(tx, name, version)
            pointing = sorted(a for a, v in self._index.aliases(tx, name).items() if v == version)
            if pointing:
                raise ConflictError(
                    f"alias {pointing[0]!r} points at {name}:{version}; move or remove it first"
                )
            self._index.delete_version(tx, name, version)
        # The row is gone, so the package is invisible; removing it can now fail harmlessly.
        self._manifests.pop((name, version), None)
        with contextlib.suppress(RepositoryError):
            self.store.remove(name, version)

    def gc(self) -> int:
        """Remove packages without an index row and abandoned staging directories."""
        removed = self.store.sweep()
        with self._index.write() as tx:
            # Holding the write lock: no registration is between its rename and its commit.
            for name, version in list(self.store.packages()):
                if self._index.version(tx, name, version) is None:
                    self.store.remove(name, version)
                    removed += 1
        return removed

    def check(self) -> list[str]:
        """Verify every version's checksums; returns one line per problem (empty: all good)."""
        problems = []
        for info in self.list_models():
            for found in self.list_versions(info.name):
                try:
                    self.load(found.ref)
                except IntegrityError as exc:
                    problems.append(str(exc))
        return problems

    # -- export and import ------------------------------------------------------------------------

    def export_version(self, ref: str | Ref, archive_path: str | Path) -> Path:
        """Write one version (checked first) to a ``.tar.gz`` archive; a directory gets
        ``<name>-<version>.tar.gz`` inside it."""
        found = self.load(ref)
        destination = Path(archive_path).expanduser()
        if destination.is_dir():
            destination = destination / f"{found.name}-{found.version}.tar.gz"
        with self._index.read() as conn:
            model_row = self._index.model(conn, found.name)
            model_tags = self._index.tags(conn, found.name, MODEL_LEVEL)
        meta = {
            "name": found.name,
            "version": found.version,
            "tags": found.tags,
            "description": found.description,
            "model": {
                "description": model_row["description"] if model_row else None,
                "tags": model_tags,
            },
        }
        return write_archive(found.path, found.manifest, meta, destination)

    def import_archive(self, path: str | Path, name: str | None = None) -> ModelVersion:
        """Import an exported version as the next version of its model (or of ``name``).

        Checksums are verified, the original version is recorded in the manifest's
        ``imported_from``; the repository is unchanged when anything is wrong.
        """
        archive = Path(path).expanduser()
        new_name = validate_name(name) if name is not None else None
        self.store.sweep()
        with self.store.staging() as staged:
            contents = read_archive(archive, staged)
            original = contents.manifest
            target = new_name or validate_name(original.name)
            tags, description = contents.tags, _check_description(contents.description)
            fsync_tree(staged)
            crash_point("staged")

            def manifest_for(version: int, created: str) -> Manifest:
                data = original.to_dict()
                data.update(
                    name=target,
                    version=version,
                    created=created,
                    tags=tags,
                    description=description,
                    imported_from={
                        "name": original.name,
                        "version": original.version,
                        "created": original.created,
                        "archive": archive.name,
                    },
                )
                return Manifest.from_dict(data)

            model_meta = {
                "description": _check_description(contents.model_description),
                "tags": contents.model_tags,
            }
            version = self._publish(staged, target, manifest_for, tags, description, model_meta)
        return self.resolve(Ref(target, version=version))


def _check_description(text: Any) -> str | None:
    if text is None:
        return None
    if not isinstance(text, str):
        raise UsageError(f"a description is text, not {type(text).__name__}")
    if "\x00" in text:
        raise UsageError("a description cannot contain NUL characters")
    if len(text) > MAX_DESCRIPTION:
        raise UsageError(f"a description is limited to {MAX_DESCRIPTION} characters")
    return text

