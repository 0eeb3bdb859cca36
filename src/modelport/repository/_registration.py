"""Adding versions: registering a model, importing an archive; and exporting one.

Registration builds the package in ``tmp/``, then, holding the index's write lock, hands out the
next version number, writes the manifest, renames the package into place and commits its row
(:meth:`Registration._publish`, shared with imports). A process killed at any moment leaves the
version either whole and visible or invisible: a package without a row is never shown and is
replaced or swept later.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from modelport.errors import ConflictError, UsageError
from modelport.repository import package as pkg
from modelport.repository._base import check_description, now
from modelport.repository._queries import Queries
from modelport.repository.archive import read_archive, write_archive
from modelport.repository.index import MODEL_LEVEL
from modelport.repository.manifest import MANIFEST_FILE, Manifest
from modelport.repository.names import Ref, validate_name, validate_tag
from modelport.repository.store import checksum_files, crash_point, fsync_tree, os_error
from modelport.repository.version import ModelVersion

__all__ = ["Registration"]

# Builds the manifest once the version number and creation time are known.
ManifestFor = Callable[[int, str], Manifest]


class Registration(Queries):
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
        description = check_description(description)
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
        manifest_for: ManifestFor,
        tags: dict[str, str],
        description: str | None,
        model_meta: Mapping[str, Any] | None = None,
    ) -> int:
        """Under the write lock: number, manifest, rename, row, commit. Returns the version."""
        with self._index.write() as tx:
            created = now()  # under the lock, so that later versions are never older
            self._check_case(tx, name)
            new_model = self._index.model(tx, name) is None
            version = self._index.allocate(tx, name, created)
            manifest = manifest_for(version, created)
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

    def export_version(self, ref: str | Ref, archive_path: str | Path) -> Path:
        """Write one version (checked first) to a ``.tar.gz`` archive; a directory gets
        ``<name>-<version>.tar.gz`` inside it."""
        found = self.load(ref)
        destination = Path(archive_path).expanduser()
        if destination.is_dir():
            destination = destination / f"{found.name}-{found.version}.tar.gz"
        root = self.root.resolve()
        if root in destination.resolve().parents:
            # It could replace a stored file (a package's model.onnx) or the index itself.
            raise UsageError(
                f"refusing to write the archive inside the repository {str(root)!r}; "
                "choose a path outside it"
            )
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
            tags, description = contents.tags, check_description(contents.description)
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
                "description": check_description(contents.model_description),
                "tags": contents.model_tags,
            }
            version = self._publish(staged, target, manifest_for, tags, description, model_meta)
        return self.resolve(Ref(target, version=version))
