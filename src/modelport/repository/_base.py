"""What every part of :class:`~modelport.repository.Repository` relies on.

The repository's methods are grouped by what they do (``_queries.py``, ``_registration.py``,
``_editing.py``); this base holds the state they share and the checks and messages all of them
use: unknown models and versions, and descriptions.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from modelport.errors import NotFoundError, UsageError
from modelport.repository.index import MODEL_LEVEL, Index
from modelport.repository.manifest import Manifest
from modelport.repository.names import validate_version
from modelport.repository.store import PackageStore

__all__ = ["MAX_DESCRIPTION", "RepositoryBase", "check_description", "now"]

MAX_DESCRIPTION = 64 * 1024


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def check_description(text: Any) -> str | None:
    if text is None:
        return None
    if not isinstance(text, str):
        raise UsageError(f"a description is text, not {type(text).__name__}")
    if "\x00" in text:
        raise UsageError("a description cannot contain NUL characters")
    if len(text) > MAX_DESCRIPTION:
        raise UsageError(f"a description is limited to {MAX_DESCRIPTION} characters")
    return text


class RepositoryBase:
    """The state set up by ``Repository.__init__``, and lookups that fail with a helpful list."""

    root: Path
    store: PackageStore
    _index: Index
    # Packages are immutable and version numbers never reused: manifests can be cached.
    _manifests: dict[tuple[str, int], Manifest]

    def _unknown_model(self, name: str, conn: Any = None) -> NotFoundError:
        if conn is None:
            with self._index.read() as conn:
                return self._unknown_model(name, conn)
        names = [row["name"] for row in self._index.models(conn)]
        known = ", ".join(names[:10]) + (", ..." if len(names) > 10 else "")
        hint = f"known models: {known}" if names else "the repository has no models yet"
        return NotFoundError(f"model {name!r} not found in {str(self.root)!r}; {hint}")

    def _unknown_version(self, conn: Any, name: str, version: int) -> NotFoundError:
        versions = [str(row["version"]) for row in self._index.versions(conn, name)]
        have = ", ".join(versions) if versions else "none"
        return NotFoundError(f"model {name!r} has no version {version}; its versions: {have}")

    def _require_model(self, conn: Any, name: str) -> None:
        if self._index.model(conn, name) is None:
            raise self._unknown_model(name, conn)

    def _require_version(self, conn: Any, name: str, version: int) -> None:
        self._require_model(conn, name)
        if self._index.version(conn, name, version) is None:
            raise self._unknown_version(conn, name, version)

    def _level(self, conn: Any, name: str, version: int | None) -> int:
        """Where a tag or description goes: the model (``version=None``) or one version."""
        if version is None:
            self._require_model(conn, name)
            return MODEL_LEVEL
        version = validate_version(version)
        self._require_version(conn, name, version)
        return version
