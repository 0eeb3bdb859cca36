"""The SQLite index: which models and versions exist, their aliases, tags and descriptions.

The index is the single source of truth for visibility: a version exists when its row does, and
a row is committed only after its package directory is in place. Writers serialize on
``BEGIN IMMEDIATE`` (SQLite's write lock, shared by every process on the machine and released by
the kernel when a process dies); readers use WAL snapshots and never wait for writers.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from modelport.errors import RepositoryError

__all__ = ["INDEX_FILE", "Index", "MODEL_LEVEL"]

INDEX_FILE = "modelport.db"
SCHEMA_VERSION = 1
# Tags and descriptions are per version; version 0 stands for the model itself.
MODEL_LEVEL = 0
_BUSY_TIMEOUT_S = 60.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS models (
    name TEXT PRIMARY KEY,
    created TEXT NOT NULL,
    description TEXT,
    -- highest version number ever handed out: numbers are never reused after a delete, so a
    -- cached "x:3" can never silently mean a different model
    last_version INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS versions (
    name TEXT NOT NULL REFERENCES models(name),
    version INTEGER NOT NULL,
    created TEXT NOT NULL,
    framework TEXT NOT NULL,
    description TEXT,
    manifest_sha256 TEXT NOT NULL,
    forced INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (name, version)
);
CREATE TABLE IF NOT EXISTS aliases (
    name TEXT NOT NULL,
    alias TEXT NOT NULL,
    version INTEGER NOT NULL,
    PRIMARY KEY (name, alias),
    FOREIGN KEY (name, version) REFERENCES versions(name, version)
);
CREATE TABLE IF NOT EXISTS tags (
    name TEXT NOT NULL,
    version INTEGER NOT NULL,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (name, version, key)
);
"""


def _sqlite_error(exc: sqlite3.Error, path: Path) -> RepositoryError:
    text = str(exc)
    if "readonly" in text or "read-only" in text or "unable to open" in text:
        return RepositoryError(
            f"cannot write the repository index {str(path)!r}: {text}; use a writable directory "
            "with --repo or MODELPORT_HOME"
        )
    if "locked" in text or "busy" in text:
        return RepositoryError(
            f"the repository index {str(path)!r} stayed locked by another process for "
            f"{_BUSY_TIMEOUT_S:.0f} s; try again"
        )
    if "not a database" in text or "malformed" in text:
        return RepositoryError(
            f"the repository index {str(path)!r} is corrupt ({text}); restore it from a backup"
        )
    return RepositoryError(f"repository index {str(path)!r}: {text}")


class Index:
    """One connection per process, shared by its threads under a lock."""

    def __init__(self, path: Path, *, create: bool) -> None:
        self.path = path
        self._lock = threading.RLock()
        self._conn: sqlite3.Connection | None = None
        self._pid = -1
        if create:
            self._create()
        else:
            self._check()

    # -- connection ----------------------------------------------------------------------------

    def _connection(self) -> sqlite3.Connection:
        # A forked child must not share its parent's SQLite connection.
        if self._conn is None or self._pid != os.getpid():
            try:
                conn = sqlite3.connect(
                    self.path,
                    timeout=_BUSY_TIMEOUT_S,
                    isolation_level=None,  # we issue BEGIN/COMMIT ourselves
                    check_same_thread=False,
                )
                conn.execute(f"PRAGMA busy_timeout = {int(_BUSY_TIMEOUT_S * 1000)}")
                conn.execute("PRAGMA foreign_keys = ON")
                conn.execute("PRAGMA synchronous = FULL")
            except sqlite3.Error as exc:
                raise _sqlite_error(exc, self.path) from exc
            conn.row_factory = sqlite3.Row
            self._conn, self._pid = conn, os.getpid()
        return self._conn

    def close(self) -> None:
        with self._lock:
            if self._conn is not None and self._pid == os.getpid():
                self._conn.close()
            self._conn = None

    @contextlib.contextmanager
    def read(self) -> Iterator[sqlite3.Connection]:
        """A consistent snapshot for several queries."""
        with self._lock:
            conn = self._connection()
            try:
                conn.execute("BEGIN")
                try:
                    yield conn
                finally:
                    conn.execute("COMMIT")
            except sqlite3.Error as exc:
                raise _sqlite_error(exc, self.path) from exc

    @contextlib.contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """The repository-wide write lock: committed on success, rolled back on any error."""
        with self._lock:
            conn = self._connection()
            try:
                conn.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise _sqlite_error(exc, self.path) from exc
            try:
                yield conn
            except BaseException:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
                raise
            try:
                conn.execute("COMMIT")
            except sqlite3.Error as exc:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
                raise _sqlite_error(exc, self.path) from exc

    def _create(self) -> None:
        conn = self._connection()
        # Switching to WAL needs a moment alone with the file; several processes opening a new
        # repository at once may collide, so retry briefly.
        for attempt in range(100):
            try:
                conn.execute("PRAGMA journal_mode = WAL")
                break
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or attempt == 99:
                    raise _sqlite_error(exc, self.path) from exc
                time.sleep(0.05)
            except sqlite3.Error as exc:
                raise _sqlite_error(exc, self.path) from exc
        with self.write() as tx:
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    tx.execute(statement)
            tx.execute(
                "INSERT OR IGNORE INTO meta (key, value) VALUES ('format', 'modelport'), "
                "('schema_version', ?)",
                (str(SCHEMA_VERSION),),
            )

    def _check(self) -> None:
        try:
            with self.read() as conn:
                tables = conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
        except RepositoryError as exc:
            raise RepositoryError(
                f"{str(self.path.parent)!r} is not a modelport repository ({exc})"
            ) from exc
        if tables == 0:
            # An empty database: another process is creating the repository this instant, or
            # one was interrupted doing so. Creating is idempotent, so finish the job.
            self._create()
            return
        try:
            with self.read() as conn:
                row = conn.execute("SELECT value FROM meta WHERE key = 'format'").fetchone()
        except RepositoryError as exc:
            raise RepositoryError(
                f"{str(self.path.parent)!r} is not a modelport repository ({exc})"
            ) from exc
        if row is None or row["value"] != "modelport":
            raise RepositoryError(
                f"{str(self.path.parent)!r} is not a modelport repository ({INDEX_FILE} belongs "
                "to something else); choose another directory"
            )
        with self.read() as conn:
            row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        if row is not None and int(row["value"]) > SCHEMA_VERSION:
            raise RepositoryError(
                f"the repository {str(self.path.parent)!r} was written by a newer modelport "
                f"(index schema {row['value']}); upgrade modelport to use it"
            )

    # -- queries (take a connection from read() or write()) -------------------------------------

    @staticmethod
    def model(conn: sqlite3.Connection, name: str) -> sqlite3.Row | None:
        row: sqlite3.Row | None = conn.execute(
            "SELECT * FROM models WHERE name = ?", (name,)
        ).fetchone()
        return row

    @staticmethod
    def version(conn: sqlite3.Connection, name: str, version: int) -> sqlite3.Row | None:
        row: sqlite3.Row | None = conn.execute(
            "SELECT * FROM versions WHERE name = ? AND version = ?", (name, version)
        ).fetchone()
        return row

    @staticmethod
    def latest(conn: sqlite3.Connection, name: str) -> sqlite3.Row | None:
        row: sqlite3.Row | None = conn.execute(
            "SELECT * FROM versions WHERE name = ? ORDER BY version DESC LIMIT 1", (name,)
        ).fetchone()
        return row

    @staticmethod
    def versions(conn: sqlite3.Connection, name: str) -> list[sqlite3.Row]:
        return list(
            conn.execute("SELECT * FROM versions WHERE name = ? ORDER BY version", (name,))
        )

    @staticmethod
    def models(conn: sqlite3.Connection) -> list[sqlite3.Row]:
        return list(
            conn.execute(
                "SELECT m.*, (SELECT MAX(v.version) FROM versions v WHERE v.name = m.name) "
                "AS latest, (SELECT COUNT(*) FROM versions v WHERE v.name = m.name) AS count "
                "FROM models m ORDER BY m.name"
            )
        )

    @staticmethod
    def alias(conn: sqlite3.Connection, name: str, alias: str) -> int | None:
        row = conn.execute(
            "SELECT version FROM aliases WHERE name = ? AND alias = ?", (name, alias)
        ).fetchone()
        return None if row is None else int(row["version"])

    @staticmethod
    def aliases(conn: sqlite3.Connection, name: str) -> dict[str, int]:
        return {
            row["alias"]: int(row["version"])
            for row in conn.execute(
                "SELECT alias, version FROM aliases WHERE name = ? ORDER BY alias", (name,)
            )
        }

    @staticmethod
    def tags(conn: sqlite3.Connection, name: str, version: int) -> dict[str, str]:
        return {
            row["key"]: row["value"]
            for row in conn.execute(
                "SELECT key, value FROM tags WHERE name = ? AND version = ? ORDER BY key",
                (name, version),
            )
        }

    # -- writes (take a connection from write()) ------------------------------------------------

    @staticmethod
    def allocate(conn: sqlite3.Connection, name: str, created: str) -> int:
        """Create the model if needed and hand out its next version number."""
        conn.execute(
            "INSERT OR IGNORE INTO models (name, created) VALUES (?, ?)", (name, created)
        )
        row = conn.execute("SELECT last_version FROM models WHERE name = ?", (name,)).fetchone()
        version = int(row["last_version"]) + 1
        conn.execute("UPDATE models SET last_version = ? WHERE name = ?", (version, name))
        return version

    @staticmethod
    def insert_version(
        conn: sqlite3.Connection,
        *,
        name: str,
        version: int,
        created: str,
        framework: str,
        description: str | None,
        manifest_sha256: str,
        forced: bool,
        tags: dict[str, str],
    ) -> None:
        conn.execute(
            "INSERT INTO versions (name, version, created, framework, description, "
            "manifest_sha256, forced) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (name, version, created, framework, description, manifest_sha256, int(forced)),
        )
        for key, value in tags.items():
            Index.set_tag(conn, name, version, key, value)

    @staticmethod
    def set_tag(conn: sqlite3.Connection, name: str, version: int, key: str, value: str) -> None:
        conn.execute(
            "INSERT INTO tags (name, version, key, value) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (name, version, key) DO UPDATE SET value = excluded.value",
            (name, version, key, value),
        )

    @staticmethod
    def remove_tag(conn: sqlite3.Connection, name: str, version: int, key: str) -> bool:
        cursor = conn.execute(
            "DELETE FROM tags WHERE name = ? AND version = ? AND key = ?", (name, version, key)
        )
        return cursor.rowcount > 0

    @staticmethod
    def set_alias(conn: sqlite3.Connection, name: str, alias: str, version: int) -> None:
        conn.execute(
            "INSERT INTO aliases (name, alias, version) VALUES (?, ?, ?) "
            "ON CONFLICT (name, alias) DO UPDATE SET version = excluded.version",
            (name, alias, version),
        )

    @staticmethod
    def remove_alias(conn: sqlite3.Connection, name: str, alias: str) -> bool:
        cursor = conn.execute(
            "DELETE FROM aliases WHERE name = ? AND alias = ?", (name, alias)
        )
        return cursor.rowcount > 0

    @staticmethod
    def set_description(
        conn: sqlite3.Connection, name: str, version: int, text: str | None
    ) -> None:
        if version == MODEL_LEVEL:
            conn.execute("UPDATE models SET description = ? WHERE name = ?", (text, name))
        else:
            conn.execute(
                "UPDATE versions SET description = ? WHERE name = ? AND version = ?",
                (text, name, version),
            )

    @staticmethod
    def delete_version(conn: sqlite3.Connection, name: str, version: int) -> None:
        conn.execute("DELETE FROM tags WHERE name = ? AND version = ?", (name, version))
        conn.execute("DELETE FROM versions WHERE name = ? AND version = ?", (name, version))

