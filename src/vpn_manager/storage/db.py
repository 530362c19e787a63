"""The database handle: engine creation, SQLite pragmas, schema migrations and error translation."""

from __future__ import annotations

import asyncio
import fcntl
import os
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import event, inspect, text
from sqlalchemy.exc import DBAPIError, OperationalError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, create_async_engine
from sqlalchemy.pool import NullPool

from vpn_manager.errors import StorageError
from vpn_manager.settings import Paths, Settings, mask_url

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection

# The newest migration in storage/migrations/versions. A test checks it against Alembic's head, so
# the fast path below (compare, and only import Alembic when they differ) cannot drift.
SCHEMA_HEAD = "0001"
_MIGRATION_LOCK_KEY = 0x76706E6D  # "vpnm": the PostgreSQL advisory lock taken while migrating


class Database:
    """One database for one command or service. Use as `async with Database(...) as db`."""

    def __init__(
        self,
        url: str,
        *,
        sqlite_file: Path | None = None,
        busy_timeout_ms: int = 5000,
        connect_timeout_s: float = 5.0,
    ) -> None:
        self.url = url
        self.sqlite_file = sqlite_file
        self.busy_timeout_ms = busy_timeout_ms
        self.connect_timeout_s = connect_timeout_s
        self._engine: AsyncEngine | None = None

    @classmethod
    def from_settings(cls, settings: Settings, paths: Paths) -> Database:
        db = settings.database
        if db.url:
            file = _sqlite_file(db.url)
            return cls(
                db.url,
                sqlite_file=file,
                busy_timeout_ms=db.busy_timeout_ms,
                connect_timeout_s=db.connect_timeout_s,
            )
        file = paths.database_file
        return cls(
            f"sqlite+aiosqlite:///{file}",
            sqlite_file=file,
            busy_timeout_ms=db.busy_timeout_ms,
            connect_timeout_s=db.connect_timeout_s,
        )

    @property
    def is_sqlite(self) -> bool:
        return self.url.startswith("sqlite")

    @property
    def display_url(self) -> str:
        return str(self.sqlite_file) if self.sqlite_file else mask_url(self.url)

    @property
    def engine(self) -> AsyncEngine:
        if self._engine is None:
            raise RuntimeError("Database used before open()")
        return self._engine

    async def __aenter__(self) -> Database:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def open(self) -> None:
        if self.sqlite_file is not None:
            _create_private_file(self.sqlite_file)
            engine = create_async_engine(
                self.url,
                poolclass=NullPool,
                connect_args={"timeout": self.busy_timeout_ms / 1000},
            )
            event.listen(engine.sync_engine, "connect", self._sqlite_pragmas)
        else:
            engine = create_async_engine(
                self.url,
                pool_pre_ping=True,
                connect_args={"timeout": self.connect_timeout_s},
            )
        self._engine = engine
        await self.ensure_schema()

    async def close(self) -> None:
        if self._engine is not None:
            await self._engine.dispose()
            self._engine = None

    def _sqlite_pragmas(self, dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout_ms)}")
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute("PRAGMA synchronous = NORMAL")
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.close()

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        """A session in one transaction: committed on success, rolled back on any error."""
        async with self.guard(), AsyncSession(self.engine, expire_on_commit=False) as session:
            async with session.begin():
                yield session

    @asynccontextmanager
    async def guard(self) -> AsyncIterator[None]:
        """Translate driver errors into StorageError sentences."""
        try:
            yield
        except (SQLAlchemyError, OSError, asyncio.TimeoutError) as exc:
            raise self._translate(exc) from exc

    def _translate(self, exc: BaseException) -> StorageError:
        detail = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0] if str(exc) else ""
        lowered = detail.lower()
        if "locked" in lowered or "busy" in lowered:
            return StorageError(
                f"The database {self.display_url} is locked by another process.",
                hint="Wait for the other vpn command to finish, or raise database.busy_timeout_ms.",
            )
        if isinstance(exc, OperationalError | OSError | asyncio.TimeoutError) or (
            isinstance(exc, DBAPIError) and exc.connection_invalidated
        ):
            return StorageError(
                f"Cannot use the database {self.display_url}: {detail or type(exc).__name__}.",
                hint="Check that the database server is running and VPN_DATABASE__URL is right.",
            )
        return StorageError(f"The database {self.display_url} failed: {detail}.")

    # -- schema -----------------------------------------------------------------------------
    async def ensure_schema(self) -> None:
        """Apply pending migrations; cheap (one query, no Alembic import) when already current."""
        async with self.guard():
            async with self.engine.connect() as conn:
                current = await conn.run_sync(_current_revision)
            if current == SCHEMA_HEAD:
                return
            with self._file_lock():
                async with self.engine.begin() as conn:
                    await self._upgrade(conn)

    async def _upgrade(self, conn: AsyncConnection) -> None:
        if not self.is_sqlite:
            await conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK_KEY})
        current = await conn.run_sync(_current_revision)
        if current == SCHEMA_HEAD:
            return  # another process migrated while we waited for the lock
        from vpn_manager.storage.migrate import known_revisions, upgrade

        if current is not None and current not in known_revisions():
            raise StorageError(
                f"The database {self.display_url} has schema {current}, "
                "which this version of vpn-manager does not know.",
                hint="Upgrade vpn-manager, or restore a backup made by this version.",
            )
        await conn.run_sync(upgrade)

    @contextmanager
    def _file_lock(self) -> Iterator[None]:
        if self.sqlite_file is None:
            yield
            return
        lock = self.sqlite_file.with_name(self.sqlite_file.name + ".migrate-lock")
        fd = os.open(lock, os.O_CREAT | os.O_RDWR, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)


def _current_revision(conn: Connection) -> str | None:
    if not inspect(conn).has_table("alembic_version"):
        return None
    return conn.execute(text("SELECT version_num FROM alembic_version")).scalar()


def _sqlite_file(url: str) -> Path | None:
    if not url.startswith("sqlite"):
        return None
    path = url.split(":///", 1)[1] if ":///" in url else ""
    if not path or path == ":memory:":
        raise StorageError("An in-memory SQLite database would lose everything when the command ends.")
    return Path(path).absolute()


def _create_private_file(path: Path) -> None:
    """Create the SQLite file (and its directory) readable by the owner only."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o600)
        os.close(fd)
    except OSError as exc:
        raise StorageError(
            f"Cannot create the database {path}: {exc.strerror}.",
            hint="Check the directory's permissions, or set VPN_HOME to a writable directory.",
        ) from None
