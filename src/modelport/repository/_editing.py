"""Changing what exists: aliases, tags and descriptions, deleting versions, sweeping leftovers.

Every change runs under the index's write lock, after checking that the model (and version)
exist, so that a mistake names what the repository does have.
"""

from __future__ import annotations

import contextlib

from modelport.errors import ConflictError, NotFoundError, RepositoryError
from modelport.repository._base import RepositoryBase, check_description
from modelport.repository.index import MODEL_LEVEL
from modelport.repository.names import validate_alias, validate_name, validate_tag, validate_version

__all__ = ["Editing"]


class Editing(RepositoryBase):
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
        text = check_description(text) or None
        with self._index.write() as tx:
            level = self._level(tx, name, version)
            self._index.set_description(tx, name, level, text)

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
