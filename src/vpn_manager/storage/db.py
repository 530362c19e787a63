"""The database handle. Light on purpose: SQLAlchemy (slow to import) is loaded on the first
transaction, and SQLite reads that need no transaction use the standard library's sqlite3; the
two imports below that wait for their first use are this module's only ones."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from vpn_manager.paths import Paths, mask_url
from vpn_manager.storage.sqlite_file import sqlite_path

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

    from vpn_manager.models import User, UserFilter
    from vpn_manager.settings import Settings
    from vpn_manager.storage.sql import SqlBackend


class Database:
    """One database for one command or service.

    `async with Database(...) as db` connects and migrates at once; a Database used without `async
    with` connects on its first transaction (call `close()` when done), which lets a command whose
    reads the sqlite3 fast path can serve never load SQLAlchemy at all.
    """

    def __init__(
        self,
        url: str,
        *,
        sqlite_file: Path | None = None,
        busy_timeout_ms: int = 15000,
        connect_timeout_s: float = 5.0,
    ) -> None:
        self.url = url
        self.sqlite_file = sqlite_file if sqlite_file is not None else sqlite_path(url)
        self.busy_timeout_ms = busy_timeout_ms
        self.connect_timeout_s = connect_timeout_s
        self._backend: SqlBackend | None = None

    @classmethod
    def from_settings(cls, settings: Settings, paths: Paths) -> Database:
        db = settings.database
        return cls.of_home(paths, db.url, db.busy_timeout_ms, db.connect_timeout_s)

    @classmethod
    def of_home(
        cls, paths: Paths, url: str | None, busy_timeout_ms: int, connect_timeout_s: float
    ) -> Database:
        """The database at `url` (a validated settings URL), or SQLite in the home's data dir."""
        url = url or f"sqlite+aiosqlite:///{paths.database_file}"
        return cls(url, busy_timeout_ms=busy_timeout_ms, connect_timeout_s=connect_timeout_s)

    @property
    def is_sqlite(self) -> bool:
        return self.sqlite_file is not None

    @property
    def display_url(self) -> str:
        return str(self.sqlite_file) if self.sqlite_file else mask_url(self.url)

    async def __aenter__(self) -> Database:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def open(self) -> SqlBackend:
        """Connect and bring the schema up to date (done once, on first use)."""
        if self._backend is None:
            from vpn_manager.storage.sql import SqlBackend

            backend = SqlBackend(self)
            await backend.start()
            self._backend = backend
        return self._backend

    @property
    def engine(self) -> AsyncEngine:
        """The SQLAlchemy engine of an opened database (`async with` or `await db.open()`)."""
        if self._backend is None:
            raise RuntimeError("Database.engine used before the database was opened")
        return self._backend.engine

    async def close(self) -> None:
        if self._backend is not None:
            await self._backend.dispose()
            self._backend = None

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        """A session in one transaction: committed on success, rolled back on any error."""
        backend = await self.open()
        async with backend.session() as session:
            yield session

    @asynccontextmanager
    async def reading(self) -> AsyncIterator[AsyncSession]:
        """A session that only reads: it never waits for another process's write (SQLite WAL),
        and must not write."""
        backend = await self.open()
        async with backend.session(write=False) as session:
            yield session

    def read_users(self, where: UserFilter | None) -> list[User] | None:
        """List users straight from a current SQLite file; None means "ask SQLAlchemy"."""
        if self.sqlite_file is None or self._backend is not None:
            return None
        from vpn_manager.storage.sqlite_read import read_users

        return read_users(self.sqlite_file, where, self.busy_timeout_ms)
