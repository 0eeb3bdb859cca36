"""``Repository``: named models with numbered, immutable, checksummed versions.

A repository is a directory::

    modelport.db                 the SQLite index (models, versions, aliases, tags, descriptions)
    packages/<name>/<version>/   one immutable package per version: model.onnx (+ external
                                 data), manifest.json, input_example.npz; nothing executable
    tmp/                         staging and trash; leftovers of crashed processes are swept

This module opens (or creates) one; its methods come in three groups: reading
(``_queries.py``), adding versions (``_registration.py``, which explains how a registration
stays whole when a process dies) and changing what exists (``_editing.py``).
"""

from __future__ import annotations

import os
from pathlib import Path

from modelport.errors import NotFoundError, RepositoryError
from modelport.repository._editing import Editing
from modelport.repository._registration import Registration
from modelport.repository.index import INDEX_FILE, Index
from modelport.repository.store import LocalStore, os_error
from modelport.repository.version import ModelInfo, ModelVersion

__all__ = ["ModelInfo", "ModelVersion", "Repository", "default_root"]


def default_root() -> Path:
    """``$MODELPORT_HOME``, else ``$XDG_DATA_HOME/modelport``, else ``~/.local/share/modelport``."""
    home = os.environ.get("MODELPORT_HOME")
    if home:
        return Path(home).expanduser()
    data = os.environ.get("XDG_DATA_HOME")
    base = Path(data).expanduser() if data else Path.home() / ".local" / "share"
    return base / "modelport"


class Repository(Registration, Editing):
    """The model repository at ``root`` (default: :func:`default_root`), created if missing.

    A directory that exists, is not empty and has no index is refused, as is one the process
    cannot write to. Instances are safe to share between threads; any number of processes may
    use one repository at once.

    Reading: :meth:`resolve`, :meth:`load`, :meth:`list_models`, :meth:`model`,
    :meth:`list_versions`, :meth:`check`. Adding: :meth:`register`, :meth:`import_archive`
    (and :meth:`export_version`). Changing: :meth:`set_alias`, :meth:`remove_alias`,
    :meth:`set_tag`, :meth:`remove_tag`, :meth:`set_description`, :meth:`delete_version`,
    :meth:`gc`.
    """

    def __init__(self, root: str | Path | None = None, *, create: bool = True) -> None:
        """Open the repository at ``root``; ``create=False`` refuses to start a new one, so that
        reading from a mistyped path is an error rather than an empty repository."""
        self.root = Path(root).expanduser().absolute() if root else default_root().absolute()
        label = repr(str(self.root))
        if self.root.exists() and not self.root.is_dir():
            raise RepositoryError(f"{label} is not a modelport repository (it is a file)")
        db = self.root / INDEX_FILE
        if not create and not db.is_file():
            raise NotFoundError(
                f"{label} is not a modelport repository (no {INDEX_FILE}); check --repo or "
                "MODELPORT_HOME, or register a model there first"
            )
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
        self.store = LocalStore(self.root)
        self.store.prepare()
        self._manifests = {}

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
