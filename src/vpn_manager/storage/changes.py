"""Whether anything was committed to the database since a moment: `CommitMarks.current()` gives a
mark that is the same between two calls only if no connection (this process's or another's)
committed in between, so that a cache of what was read can be kept exactly as long as it is true.

- SQLite: `PRAGMA data_version` on a connection of its own, kept open (the standard library's
  sqlite3: some 40 µs, no thread, no transaction). Its value changes whenever another connection
  commits; with the file's device and inode, so that a database replaced under the same name
  (a restore) counts as a change too.
- PostgreSQL: the server's current snapshot (`pg_current_snapshot()`, one query): a transaction
  that writes takes a new id (`xmax` grows) and leaves the in-progress list when it ends, so two
  equal snapshots saw the same commits. Any database of the server counts: a write elsewhere
  only costs a reread.

A mark that cannot be read is a fresh object, equal to nothing: the caller rereads.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Hashable
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote

from vpn_manager.errors import StorageError

if TYPE_CHECKING:
    from vpn_manager.storage.db import Database


class CommitMarks:
    """Commit marks of one database. Close it when done (SQLite keeps a connection open)."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._conn: sqlite3.Connection | None = None
        self._file: tuple[int, int] | None = None
        self._opened = 0  # connections opened so far: a new one counts its versions anew

    async def current(self) -> Hashable:
        if self.db.sqlite_file is None:
            return await self._postgres()
        return self._sqlite(self.db.sqlite_file)

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _sqlite(self, file: Path) -> Hashable:
        try:
            stat = os.stat(file)
        except OSError:
            self.close()
            return object()
        identity = (stat.st_dev, stat.st_ino)
        if identity != self._file:
            self.close()  # another file under the name (or the first): watch that one
        try:
            if self._conn is None:
                # Never `immutable` (as a one-off read of a file this process cannot write
                # may be): the point is to see other connections' commits.
                self._conn = sqlite3.connect(
                    f"file:{quote(str(file))}?mode=ro",
                    uri=True,
                    timeout=self.db.busy_timeout_ms / 1000,
                    isolation_level=None,
                    check_same_thread=False,
                )
                self._file = identity
                self._opened += 1
            row = self._conn.execute("PRAGMA data_version").fetchone()
        except sqlite3.Error:
            self.close()
            return object()
        return (self._opened, row[0])

    async def _postgres(self) -> Hashable:
        from sqlalchemy import text

        try:
            async with self.db.reading() as session:
                result = await session.execute(text("SELECT pg_current_snapshot()::text"))
                snapshot = result.scalar()
        except StorageError:
            return object()
        return str(snapshot)
