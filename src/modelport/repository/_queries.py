"""Reading the repository: resolving references, listing models and versions, checksums."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from modelport.errors import IntegrityError, NotFoundError
from modelport.repository._base import RepositoryBase
from modelport.repository.index import MODEL_LEVEL
from modelport.repository.manifest import MANIFEST_FILE, Manifest
from modelport.repository.names import Ref, parse_ref, validate_name
from modelport.repository.store import verify_files
from modelport.repository.version import ModelInfo, ModelVersion

__all__ = ["Queries"]


class Queries(RepositoryBase):
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
        data = _manifest_bytes(found.path, where)
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
            self._require_model(conn, name)
            rows = self._index.versions(conn, name)
            aliases = self._index.aliases(conn, name)
            tags = {
                int(r["version"]): self._index.tags(conn, name, int(r["version"])) for r in rows
            }
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

    def _version_row(self, conn: Any, ref: Ref) -> Any:
        self._require_model(conn, ref.name)
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
        manifest = Manifest.from_json(_manifest_bytes(path, where), where)
        if manifest.name != name or manifest.version != version:
            raise IntegrityError(
                f"{where} has the manifest of {manifest.name}:{manifest.version}; re-register "
                "or import it again"
            )
        self._manifests[(name, version)] = manifest
        return manifest


def _manifest_bytes(package: Path, where: str) -> bytes:
    try:
        return (package / MANIFEST_FILE).read_bytes()
    except OSError as exc:
        raise IntegrityError(
            f"{where} file {MANIFEST_FILE} is missing; re-register or import it again"
        ) from exc
