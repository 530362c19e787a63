"""The SQLAlchemy side of the database: engine, SQLite pragmas, migrations, error translation."""

from __future__ import annotations

import asyncio
import errno
import fcntl
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from sqlalchemy import event, inspect, text
from sqlalchemy.exc import DBAPIError, OperationalError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, create_async_engine
from sqlalchemy.pool import NullPool

from vpn_manager.dburl import postgres_target
from vpn_manager.errors import ConfigError, StorageError, VpnError
from vpn_manager.storage.revision import SCHEMA_HEAD
from vpn_manager.storage.sqlite_file import read_only_query

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection

    from vpn_manager.storage.db import Database

_MIGRATION_LOCK_KEY = 0x76706E6D  # "vpnm": the PostgreSQL advisory lock taken while migrating


class SqlBackend:
    def __init__(self, db: Database) -> None:
        self.db = db
        self.read_only: str | None = None
        self.sslmode = ""
        self.ssl_files: dict[str, Path] = {}
        if db.sqlite_file is not None:
            url = db.url
            self.read_only = read_only_query(db.sqlite_file)
            if self.read_only is not None:  # reads work; a write says the database is read-only
                url = f"sqlite+aiosqlite:///file:{quote(str(db.sqlite_file))}?{self.read_only}&uri=true"
            self.engine: AsyncEngine = create_async_engine(
                url,
                poolclass=NullPool,
                connect_args={"timeout": db.busy_timeout_ms / 1000},
            )
            event.listen(self.engine.sync_engine, "connect", self._sqlite_pragmas)
            event.listen(self.engine.sync_engine, "begin", self._sqlite_begin)
        else:
            try:
                target = postgres_target(db.url)
            except ValueError as exc:
                raise ConfigError(
                    f"The database URL {db.display_url} cannot be used: {exc}.",
                    hint="Fix VPN_DATABASE__URL (or database.url in the config file).",
                ) from None
            self.sslmode = target.sslmode
            self.ssl_files = {
                name: Path(value).expanduser()
                for name, value in target.parameters.items()
                if name in ("sslrootcert", "sslcert", "sslkey", "sslcrl")
            }
            # asyncpg takes the libpq parameters from a DSN of its own; SQLAlchemy would pass
            # them as keyword arguments, which asyncpg.connect() refuses.
            self.engine = create_async_engine(
                target.url,
                pool_pre_ping=True,
                connect_args={
                    "dsn": target.dsn,
                    "timeout": target.connect_timeout_s or db.connect_timeout_s,
                },
            )

    async def start(self) -> None:
        if self.db.sqlite_file is not None and self.read_only is None:
            _create_private_file(self.db.sqlite_file)
        try:
            await self.ensure_schema()
        except BaseException:
            await self.dispose()
            raise

    async def dispose(self) -> None:
        await self.engine.dispose()

    def _sqlite_pragmas(self, dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {int(self.db.busy_timeout_ms)}")
        if self.read_only is None:
            cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute("PRAGMA synchronous = NORMAL")
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.close()
        # Transactions are begun by _sqlite_begin, not by the driver.
        dbapi_connection.isolation_level = None

    def _sqlite_begin(self, conn: Connection) -> None:
        """Every transaction takes SQLite's write lock when it begins (BEGIN IMMEDIATE), waiting
        up to the busy timeout for it. A deferred transaction that read first and writes later
        fails at once with "database is locked" when another process wrote in between (its
        snapshot is stale), whatever the busy timeout; transactions here are short and never
        span engine calls, so taking the lock up front costs nothing. A database file this
        process cannot write (a read-only home) and read-only sessions (Database.reading) get plain
        BEGIN: readers never wait for a writer (WAL)."""
        reads = conn.get_execution_options().get("vpn_read_only", False)
        conn.exec_driver_sql("BEGIN" if reads or self.read_only else "BEGIN IMMEDIATE")

    @asynccontextmanager
    async def session(self, write: bool = True) -> AsyncIterator[AsyncSession]:
        bind = self.engine if write else self.engine.execution_options(vpn_read_only=True)
        async with (
            self.guard(),
            AsyncSession(bind, expire_on_commit=False) as session,
            session.begin(),
        ):
            yield session

    @asynccontextmanager
    async def guard(self, files: bool = False) -> AsyncIterator[None]:
        """Translate the database's errors into StorageError sentences, and only those: the code
        run inside a session may call other things (a Docker engine over an ssh tunnel) whose
        OSErrors are theirs to report, never "cannot use the database". `files`: OSErrors are
        the database file's too (migrating)."""
        try:
            yield
        except SQLAlchemyError as exc:
            raise self._translate(exc) from exc
        except Exception as exc:
            if isinstance(exc, VpnError) or not (
                from_driver(exc) or (files and isinstance(exc, OSError))
            ):
                raise
            raise self._translate(exc) from exc

    def _translate(self, exc: BaseException) -> StorageError:
        where = self.db.display_url
        detail = str(getattr(exc, "orig", None) or exc).strip()
        detail = detail.splitlines()[0] if detail else type(exc).__name__
        lowered = detail.lower()
        if "database is locked" in lowered or "database is busy" in lowered:
            return StorageError(
                f"The database {where} is locked by another process.",
                hint="Wait for the other vpn command to finish, or raise database.busy_timeout_ms.",
            )
        if (
            "disk is full" in lowered
            or "no space left" in lowered
            or getattr(exc, "errno", None) == errno.ENOSPC
        ):
            file = self.db.sqlite_file
            return StorageError(
                f"Cannot write to the database {where}: the disk is full.",
                hint=f"Free space on the disk that holds {file.parent} (`df -h {file.parent}`)."
                if file
                else "Free space on the disk of the database server's data directory.",
            )
        if "readonly database" in lowered or "read-only" in lowered:
            return StorageError(
                f"Cannot change the database {where}: it is read-only for this user.",
                hint="Run the command as the user who owns it, or make its directory writable.",
            )
        if "rejected ssl upgrade" in lowered:
            return StorageError(
                f"Cannot use the database {where}: the server does not offer TLS, "
                f"which sslmode={self.sslmode} requires.",
                hint="Turn on ssl in the server's postgresql.conf, or use sslmode=prefer "
                "(TLS when the server offers it) on a network you trust.",
            )
        missing = [
            f"{name} file {path}" for name, path in self.ssl_files.items() if not path.exists()
        ]
        if missing and getattr(getattr(exc, "orig", None) or exc, "errno", None) == errno.ENOENT:
            return StorageError(
                f"Cannot use the database {where}: the {missing[0]} does not exist.",
                hint="Put the file there, or fix its path in VPN_DATABASE__URL.",
            )
        if "shutting down" in lowered or "starting up" in lowered:
            return StorageError(
                f"Cannot use the database {where}: {detail}.",
                hint="The database server is shutting down or restarting: "
                "run the command again once it is back.",
            )
        if (
            not isinstance(exc, SQLAlchemyError)  # unwrapped: only from connecting
            or isinstance(exc, OperationalError)
            or (isinstance(exc, DBAPIError) and exc.connection_invalidated)
        ):
            return StorageError(
                f"Cannot use the database {where}: {detail}.",
                hint="Check that the database server is running and VPN_DATABASE__URL is right.",
            )
        return StorageError(f"The database {where} failed: {detail}.")

    async def ensure_schema(self) -> None:
        """Apply pending migrations; cheap (one query, no Alembic import) when already current."""
        async with self.guard(files=True):
            # A brand-new SQLite file: every first connection switches it to WAL, and several
            # doing so at once can fail at once with "database is locked" (busy timeout or not).
            # They take turns, as for migrating, without the unlocked look first.
            file = self.db.sqlite_file
            if file is None or file.stat().st_size > 0:
                async with self.engine.execution_options(vpn_read_only=True).connect() as conn:
                    current = await conn.run_sync(current_revision)
                if current == SCHEMA_HEAD:
                    return
            async with self._file_lock(), self.engine.begin() as conn:
                await self._upgrade(conn)

    async def _upgrade(self, conn: AsyncConnection) -> None:
        if self.db.sqlite_file is None:
            await conn.execute(
                text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK_KEY}
            )
        current = await conn.run_sync(current_revision)
        if current == SCHEMA_HEAD:
            return  # another process migrated while we waited for the lock
        from vpn_manager.storage.migrate import known_revisions, upgrade

        if current is not None and current not in known_revisions():
            raise StorageError(
                f"The database {self.db.display_url} has schema {current}, "
                "which this version of vpn-manager does not know.",
                hint="Upgrade vpn-manager, or restore a backup made by this version.",
            )
        await conn.run_sync(upgrade)

    @asynccontextmanager
    async def _file_lock(self) -> AsyncIterator[None]:
        """Serialise migrations between processes (and tasks) sharing one SQLite file. The lock
        is awaited in a thread so that a task holding it can finish on the event loop."""
        file = self.db.sqlite_file
        if file is None:
            yield
            return
        fd = os.open(file.with_name(file.name + ".migrate-lock"), os.O_CREAT | os.O_RDWR, 0o600)
        try:
            await asyncio.to_thread(fcntl.flock, fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)


_DRIVERS = ("sqlalchemy.", "asyncpg", "aiosqlite", "sqlite3")


def from_driver(exc: BaseException) -> bool:
    """Whether an error that SQLAlchemy did not wrap was the database driver's: one of the
    driver's own exceptions (asyncpg's "the database system is shutting down" when connecting),
    or an OSError or TimeoutError raised while SQLAlchemy, asyncpg or aiosqlite code was
    running (connecting). The same OSErrors from code merely run inside a session (the Docker
    SDK, ssh) never pass through there."""
    if type(exc).__module__.startswith(_DRIVERS):
        return True
    if not isinstance(exc, OSError):  # TimeoutError included
        return False
    tb = exc.__traceback__
    while tb is not None:
        module = tb.tb_frame.f_globals.get("__name__", "")
        if isinstance(module, str) and module.startswith(_DRIVERS):
            return True
        tb = tb.tb_next
    return False


def current_revision(conn: Connection) -> str | None:
    if not inspect(conn).has_table("alembic_version"):
        return None
    return conn.execute(text("SELECT version_num FROM alembic_version")).scalar()


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
