"""Storage and the users service against real databases: SQLite files and a throwaway PostgreSQL."""

from __future__ import annotations

import asyncio
import os
import socket
import sqlite3
import stat
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import insert, inspect, text
from sqlalchemy.engine import Connection

from tests.cli_helpers import stopped_server_row
from tests.conftest import DbUrlFactory, FixedClock, open_database, sqlite_file_of
from vpn_manager import storage
from vpn_manager.errors import ConfigError, Conflict, InvalidInput, NotFound, StorageError
from vpn_manager.models import PlanCreate, User, UserCreate, UserFilter, UserStatus, UserUpdate
from vpn_manager.services.plans import PlanService
from vpn_manager.services.tokens import TokenSeal, digest
from vpn_manager.services.users import UserService
from vpn_manager.settings import DatabaseSettings, Paths, Settings
from vpn_manager.storage import SCHEMA_HEAD, Database, migrate
from vpn_manager.storage.orm import Base, UserCredentialRow

EXPIRY = datetime(2027, 2, 1, tzinfo=UTC)


def _users() -> list[UserCreate]:
    return [
        UserCreate(
            name="alice",
            email="alice@example.com",
            note="Team Red",
            expires_at=EXPIRY,
            quota_bytes=50_000_000_000,
            reset_period="monthly",
            device_limit=3,
        ),
        UserCreate(name="bob", email="bob@corp.org"),
        UserCreate(name="carol", note="red team lead", reset_period="30d"),
        UserCreate(name="dave", status=UserStatus.DISABLED, note="on leave"),
    ]


def _snapshot(users: list[User]) -> list[dict[str, Any]]:
    """Everything about each user, for equality checks."""
    return [user.model_dump() for user in users]


def _names(users: list[User]) -> list[str]:
    return [user.name for user in users]


async def _open_within(url: str, seconds: float, **options: float) -> None:
    """Open and close a database, failing the test (not hanging it) after `seconds`."""

    async def open_and_close() -> None:
        async with open_database(url, **options):
            pass

    await asyncio.wait_for(open_and_close(), seconds)


async def _versions(db: Database) -> list[str]:
    async with db.session() as session:
        result = await session.execute(text("SELECT version_num FROM alembic_version"))
        return list(result.scalars())


def _tables(conn: Connection) -> set[str]:
    return set(inspect(conn).get_table_names())


def _schema_differences(conn: Connection) -> list[Any]:
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    context = MigrationContext.configure(
        conn, opts={"compare_type": True, "compare_server_default": True}
    )
    differences: list[Any] = compare_metadata(context, Base.metadata)
    return differences


# -- schema and migrations -----------------------------------------------------------------------


def test_schema_head_is_the_newest_migration() -> None:
    assert migrate.head() == SCHEMA_HEAD
    assert SCHEMA_HEAD in migrate.known_revisions()


async def test_first_open_migrates_and_second_open_is_a_no_op(
    db_url: str, make_db_url: DbUrlFactory, clock: FixedClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with open_database(db_url) as db:
        assert await _versions(db) == [SCHEMA_HEAD]
        async with db.session() as session:
            conn = await session.connection()
            assert {"users", "user_credentials", "alembic_version"} <= await conn.run_sync(_tables)
        await UserService(db, clock=clock).add([UserCreate(name="alice")])

    def upgrade_again(connection: Connection) -> None:
        raise AssertionError("a current database was migrated again")

    monkeypatch.setattr(migrate, "upgrade", upgrade_again)
    async with open_database(db_url) as db:
        assert await _versions(db) == [SCHEMA_HEAD]
        assert _names(await UserService(db, clock=clock).list()) == ["alice"]
    # ...whereas a fresh database does go through it (so the check above means something).
    with pytest.raises(AssertionError, match="migrated again"):
        await _open_within(await make_db_url(), 30)


async def test_orm_metadata_and_migrations_agree(database: Database) -> None:
    async with database.session() as session:
        conn = await session.connection()
        assert await conn.run_sync(_schema_differences) == []


async def test_unknown_schema_revision_is_refused(db_url: str) -> None:
    async with open_database(db_url) as db, db.session() as session:
        await session.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    with pytest.raises(StorageError, match="9999"):
        async with open_database(db_url):
            pass


_OPENER = """
import asyncio, faulthandler, sys
from pathlib import Path

import vpn_manager.storage.migrate  # noqa: F401 - import the heavy modules before the start line
from sqlalchemy import text
from vpn_manager.storage import Database

url, ready, go, tasks = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3]), int(sys.argv[4])
sqlite_file = Path(url.split(":///", 1)[1]) if url.startswith("sqlite") else None


async def one() -> None:
    async with Database(url, sqlite_file=sqlite_file) as db, db.session() as session:
        await session.execute(text("SELECT count(*) FROM users"))


async def main() -> None:
    faulthandler.dump_traceback_later(10, exit=True)  # a hang fails with the stack that hung
    ready.touch()
    while not go.exists():
        await asyncio.sleep(0.002)
    await asyncio.gather(*(one() for _ in range(tasks)))


asyncio.run(main())
"""


@pytest.mark.parametrize(
    ("processes", "tasks"), [(4, 1), (1, 4)], ids=["4-processes", "4-tasks-in-1-process"]
)
def test_concurrent_first_open_ends_with_one_schema(
    db_url: str, tmp_path: Path, processes: int, tasks: int
) -> None:
    """Several commands (or several Database objects in one program) opening a fresh database at
    the same moment: all succeed and the schema is created exactly once."""
    go = tmp_path / "go"
    children = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                _OPENER,
                db_url,
                str(tmp_path / f"ready{i}"),
                str(go),
                str(tasks),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(processes)
    ]
    try:
        deadline = time.monotonic() + 30
        while not all((tmp_path / f"ready{i}").exists() for i in range(processes)):
            assert time.monotonic() < deadline, "the opener processes did not start"
            assert all(child.poll() is None for child in children), "an opener process died"
            time.sleep(0.01)
        go.touch()
        failures = []
        for child in children:
            try:
                _, err = child.communicate(timeout=20)
            except subprocess.TimeoutExpired:
                child.kill()
                _, err = child.communicate()
                failures.append(f"hung for 20 s:\n{err}")
                continue
            if child.returncode != 0:
                failures.append(f"exit {child.returncode}:\n{err}")
        assert not failures, "\n\n".join(failures)
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
                child.wait()

    async def check() -> None:
        async with open_database(db_url) as db:
            assert await _versions(db) == [SCHEMA_HEAD]
            async with db.session() as session:
                conn = await session.connection()
                assert await conn.run_sync(_schema_differences) == []

    asyncio.run(check())


async def test_database_from_settings(
    db_url: str, tmp_path: Path, clock: FixedClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in [name for name in os.environ if name.upper().startswith("VPN_")]:
        monkeypatch.delenv(name)
    paths = Paths.from_env({}, home=tmp_path / "home")
    async with Database.from_settings(Settings(), paths) as db:
        assert db.display_url == str(paths.database_file)
        await UserService(db, clock=clock).add([UserCreate(name="local")])
    assert stat.S_IMODE(paths.database_file.stat().st_mode) == 0o600

    plain = db_url.replace("+asyncpg", "").replace("+aiosqlite", "")  # the drivers are implied
    settings = Settings(database=DatabaseSettings(url=plain, busy_timeout_ms=250))
    async with Database.from_settings(settings, paths) as db:
        assert db.busy_timeout_ms == 250
        await UserService(db, clock=clock).add([UserCreate(name="remote")])
    async with open_database(db_url) as db:
        assert _names(await UserService(db, clock=clock).list()) == ["remote"]


# -- users ---------------------------------------------------------------------------------------


async def test_add_get_and_list(database: Database, clock: FixedClock) -> None:
    service = UserService(database, clock=clock)
    added = await service.add(_users())
    assert _names(added) == ["alice", "bob", "carol", "dave"]

    alice = await service.get("alice")
    assert alice.email == "alice@example.com"
    assert alice.note == "Team Red"
    assert alice.status is UserStatus.ACTIVE
    assert alice.expires_at == EXPIRY
    assert alice.quota_bytes == 50_000_000_000
    assert alice.reset_period == "monthly"
    assert alice.device_limit == 3
    assert alice.speed_limit_bps is None
    assert alice.created_at == alice.updated_at == clock.now
    assert alice.created_at.tzinfo is not None
    assert (alice.upload_bytes, alice.download_bytes, alice.servers) == (0, 0, [])

    bob = await service.get("bob")
    assert (bob.note, bob.expires_at, bob.quota_bytes, bob.reset_period) == (
        None,
        None,
        None,
        "never",
    )
    assert (await service.get("dave")).status is UserStatus.DISABLED

    listed = await service.list()
    assert _snapshot(listed) == _snapshot(added)


_FILTERS: list[tuple[UserFilter, list[str]]] = [
    (UserFilter(), ["alice", "bob", "carol", "dave"]),
    (UserFilter(status=UserStatus.ACTIVE), ["alice", "bob", "carol"]),
    (UserFilter(status=UserStatus.DISABLED), ["dave"]),
    (UserFilter(status=UserStatus.EXPIRED), []),
    (UserFilter(search="RED"), ["alice", "carol"]),  # note, any case
    (UserFilter(search="corp.org"), ["bob"]),  # e-mail
    (UserFilter(search="aro"), ["carol"]),  # name
    (UserFilter(search="leave", status=UserStatus.ACTIVE), []),
    (UserFilter(search="leave", status=UserStatus.DISABLED), ["dave"]),
    (UserFilter(search="nobody"), []),
    # The search text is literal: LIKE wildcards in it match only themselves.
    (UserFilter(search="%"), []),
    (UserFilter(search="a_i"), []),  # names may contain "_"; this must not match "ali(ce)"
]


async def test_list_filters(database: Database, clock: FixedClock) -> None:
    service = UserService(database, clock=clock)
    await service.add(_users())
    for where, expected in _FILTERS:
        assert _names(await service.list(where)) == expected, where


async def test_update_renames_changes_and_clears_fields(
    database: Database, clock: FixedClock, tmp_path: Path
) -> None:
    service = UserService(database, clock=clock, seal=TokenSeal(tmp_path / "subscription.key"))
    await service.add(_users())
    created = clock.now
    await service.get("alice")
    token = await service.subscription_token("alice")
    later = clock.advance(60)

    changed = await service.update(
        "alice",
        UserUpdate(new_name="alicia", note="moved to blue", quota_bytes=1_000_000, device_limit=5),
    )
    assert changed.name == "alicia"
    assert (changed.note, changed.quota_bytes, changed.device_limit) == (
        "moved to blue",
        1_000_000,
        5,
    )
    assert changed.email == "alice@example.com"  # untouched fields stay
    assert changed.created_at == created
    assert changed.updated_at == later
    assert await service.subscription_token("alicia") == token
    with pytest.raises(NotFound):
        await service.get("alice")
    assert await service.get("alicia") == changed

    cleared = await service.update(
        "alicia",
        UserUpdate(email=None, note=None, expires_at=None, quota_bytes=None, speed_limit_bps=None),
    )
    assert (cleared.email, cleared.note, cleared.expires_at) == (None, None, None)
    assert (cleared.quota_bytes, cleared.speed_limit_bps) == (None, None)
    assert cleared.device_limit == 5
    assert await service.get("alicia") == cleared

    with pytest.raises(InvalidInput):
        await service.update("alicia", UserUpdate())


async def test_rename_onto_an_existing_name_is_a_conflict(
    database: Database, clock: FixedClock
) -> None:
    service = UserService(database, clock=clock)
    await service.add(_users())
    before = _snapshot(await service.list())
    with pytest.raises(Conflict):
        await service.update("alice", UserUpdate(new_name="bob"))
    assert _snapshot(await service.list()) == before


async def test_enable_disable_and_counts(database: Database, clock: FixedClock) -> None:
    service = UserService(database, clock=clock)
    await service.add(_users())
    assert await service.counts() == {"active": 3, "disabled": 1}

    later = clock.advance(5)
    assert await service.disable(["alice", "bob"]) == 2
    assert await service.counts() == {"active": 1, "disabled": 3}
    alice = await service.get("alice")
    assert alice.status is UserStatus.DISABLED
    assert alice.updated_at == later

    assert await service.enable(["alice", "dave"]) == 2
    assert await service.counts() == {"active": 3, "disabled": 1}
    assert _names(await service.list(UserFilter(status=UserStatus.DISABLED))) == ["bob"]


async def test_delete(database: Database, clock: FixedClock) -> None:
    service = UserService(database, clock=clock)
    await service.add(_users())
    async with database.session() as session:  # a credential row goes with its user
        alice_id = (
            await session.execute(text("SELECT id FROM users WHERE name = 'alice'"))
        ).scalar()
        await session.execute(
            insert(UserCredentialRow).values(
                user_id=alice_id, server="edge-1", protocol="vless", secret={}, created_at=clock.now
            )
        )
    assert (await service.get("alice")).servers == ["edge-1"]

    assert await service.delete(["alice", "carol"]) == 2
    assert _names(await service.list()) == ["bob", "dave"]
    assert await service.counts() == {"active": 1, "disabled": 1}
    with pytest.raises(NotFound):
        await service.get("alice")
    async with database.session() as session:
        left = (await session.execute(text("SELECT count(*) FROM user_credentials"))).scalar()
    assert left == 0


async def test_subscription_tokens_are_made_once_and_rotated(
    database: Database, clock: FixedClock, tmp_path: Path
) -> None:
    service = UserService(database, clock=clock, seal=TokenSeal(tmp_path / "subscription.key"))
    await service.add(_users())
    before = await service.get("bob")
    token = await service.subscription_token("bob")
    assert len(token) == 43
    assert await service.subscription_token("bob") == token  # kept, not made again
    assert await service.subscription_token("alice") != token
    async with database.reading() as session:
        found = await storage.users.subscription_record(session, digest(token))
        stored = (await session.execute(text("SELECT subscription_sealed FROM users"))).all()
    assert found is not None
    assert found.name == "bob"
    assert all(token not in str(row) for row in stored)  # only sealed, never in the clear
    later = clock.advance(1)
    rotated = await service.rotate_token("bob")
    assert rotated != token
    assert await service.subscription_token("bob") == rotated
    async with database.reading() as session:
        assert await storage.users.subscription_record(session, digest(token)) is None
        assert await storage.users.subscription_record(session, digest(rotated)) is not None
    after = await service.get("bob")
    assert after.updated_at == later
    assert after.model_dump(exclude={"updated_at"}) == before.model_dump(exclude={"updated_at"})
    with pytest.raises(NotFound):
        await service.rotate_token("nobody")
    with pytest.raises(NotFound):
        await service.subscription_token("nobody")


async def test_another_homes_key_cannot_print_a_token(
    database: Database, clock: FixedClock, tmp_path: Path
) -> None:
    here = UserService(database, clock=clock, seal=TokenSeal(tmp_path / "a.key"))
    await here.add([UserCreate(name="alice")])
    await here.subscription_token("alice")
    there = UserService(database, clock=clock, seal=TokenSeal(tmp_path / "b.key"))
    with pytest.raises(ConfigError, match="cannot open alice's token"):
        await there.subscription_token("alice")
    assert len(await there.rotate_token("alice")) == 43


async def test_a_batch_with_an_existing_name_writes_nothing(
    database: Database, clock: FixedClock
) -> None:
    service = UserService(database, clock=clock)
    await service.add(_users())
    before = _snapshot(await service.list())
    with pytest.raises(Conflict, match="bob"):
        await service.add([UserCreate(name="erin"), UserCreate(name="bob"), UserCreate(name="fay")])
    assert _snapshot(await service.list()) == before


@pytest.mark.parametrize(
    "names", [["erin", "fay", "erin"], ["alice", "alice"]], ids=["new", "existing"]
)
async def test_a_batch_naming_a_user_twice_writes_nothing(
    database: Database, clock: FixedClock, names: list[str]
) -> None:
    service = UserService(database, clock=clock)
    await service.add(_users())
    before = _snapshot(await service.list())
    with pytest.raises(InvalidInput, match=names[-1]):
        await service.add([UserCreate(name=name) for name in names])
    with pytest.raises(InvalidInput):
        await service.add([])
    assert _snapshot(await service.list()) == before


_UNKNOWN_USER: dict[str, Callable[[UserService], Awaitable[object]]] = {
    "get": lambda service: service.get("ghost"),
    "update": lambda service: service.update("ghost", UserUpdate(note="boo")),
    "enable": lambda service: service.enable(["dave", "ghost"]),
    "disable": lambda service: service.disable(["alice", "ghost"]),
    "delete": lambda service: service.delete(["alice", "ghost"]),
    "rotate_token": lambda service: service.rotate_token("ghost"),
}


@pytest.mark.parametrize("operation", sorted(_UNKNOWN_USER))
async def test_unknown_user_is_not_found_and_changes_nothing(
    database: Database, clock: FixedClock, operation: str
) -> None:
    service = UserService(database, clock=clock)
    await service.add(_users())
    before = _snapshot(await service.list())
    clock.advance(10)
    with pytest.raises(NotFound, match="ghost"):
        await _UNKNOWN_USER[operation](service)
    assert _snapshot(await service.list()) == before


# -- SQLite only ---------------------------------------------------------------------------------


async def test_sqlite_file_is_private_and_in_wal_mode(sqlite_url: str, clock: FixedClock) -> None:
    file = sqlite_file_of(sqlite_url)
    assert file is not None
    async with open_database(sqlite_url) as db:
        await UserService(db, clock=clock).add([UserCreate(name="alice")])
        async with db.session() as session:
            mode = (await session.execute(text("PRAGMA journal_mode"))).scalar()
        assert mode == "wal"
        for path in [file, *file.parent.glob(file.name + "-*")]:
            assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    assert stat.S_IMODE(file.stat().st_mode) == 0o600
    assert stat.S_IMODE(file.parent.stat().st_mode) == 0o700
    with sqlite3.connect(file) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)


async def test_sqlite_write_lock_gives_a_storage_error_and_keeps_data(
    sqlite_url: str, clock: FixedClock
) -> None:
    file = sqlite_file_of(sqlite_url)
    assert file is not None
    async with open_database(sqlite_url) as db:
        await UserService(db, clock=clock).add(_users())
    async with open_database(sqlite_url, busy_timeout_ms=100) as db:
        service = UserService(db, clock=clock)
        before = _snapshot(await service.list())
        holder = sqlite3.connect(file, isolation_level=None, timeout=0)
        try:
            holder.execute("BEGIN IMMEDIATE")
            holder.execute("UPDATE users SET note = 'uncommitted' WHERE name = 'bob'")
            started = time.monotonic()
            with pytest.raises(StorageError, match="locked"):
                await service.add([UserCreate(name="erin")])
            with pytest.raises(StorageError, match="locked"):
                await service.update("alice", UserUpdate(note="changed"))
            with pytest.raises(StorageError, match="locked"):
                await service.disable(["bob"])
            assert time.monotonic() - started < 5
            assert _snapshot(await service.list()) == before  # readers are not blocked (WAL)
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        assert _snapshot(await service.list()) == before
        await service.add([UserCreate(name="erin")])  # and the lock is gone
        assert _names(await service.list()) == ["alice", "bob", "carol", "dave", "erin"]


async def test_a_full_disk_is_a_storage_error_that_names_the_disk(
    sqlite_url: str, clock: FixedClock
) -> None:
    """SQLITE_FULL ("database or disk is full"), made real with max_page_count on every
    connection: one sentence that says the disk is full and a hint that names where."""
    from sqlalchemy import event

    file = sqlite_file_of(sqlite_url)
    assert file is not None
    async with open_database(sqlite_url) as db:
        service = UserService(db, clock=clock)
        await service.add(_users())
        before = _snapshot(await service.list())

        def no_room(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA page_count")
            pages = cursor.fetchone()[0]
            cursor.execute(f"PRAGMA max_page_count = {pages}")
            cursor.close()

        event.listen(db.engine.sync_engine, "connect", no_room)
        many = [UserCreate(name=f"user{n}", note="x" * 900) for n in range(200)]
        with pytest.raises(StorageError) as caught:
            await service.add(many)
        assert caught.value.message == f"Cannot write to the database {file}: the disk is full."
        assert caught.value.hint is not None
        assert str(file.parent) in caught.value.hint
        assert "database server" not in caught.value.hint
        event.remove(db.engine.sync_engine, "connect", no_room)
        assert _snapshot(await service.list()) == before


async def test_sqlite_fast_listing_matches_sqlalchemy(sqlite_url: str, clock: FixedClock) -> None:
    """`vpn user list` may read a current SQLite file with the stdlib sqlite3 instead of
    SQLAlchemy; both paths must return the same users for the same filters."""
    async with open_database(sqlite_url) as db:
        service = UserService(db, clock=clock)
        await service.add(_users(), extras=[{"upload_bytes": 7, "download_bytes": 9}] * 4)
        async with db.session() as session:
            rows = (await session.execute(text("SELECT name, id FROM users"))).all()
            ids: dict[str, int] = dict(rows)
            await session.execute(
                insert(UserCredentialRow),
                [
                    {"user_id": ids[name], "server": server, "protocol": "vless", "secret": {}}
                    | {"created_at": clock.now}
                    for name, server in [("alice", "b-2"), ("alice", "a-1"), ("carol", "a-1")]
                ],
            )
        # A plan's name is joined in from its own table (and "red" is no user's name).
        await PlanService(db, clock=clock).add(PlanCreate(name="red-plan", quota_bytes=10**9))
        await service.update("carol", UserUpdate(plan="red-plan"))
        filters = [
            None,
            UserFilter(),
            UserFilter(status=UserStatus.DISABLED),
            UserFilter(search="RED"),
            UserFilter(search="red", status=UserStatus.ACTIVE),
            UserFilter(search="nobody"),
            UserFilter(search="a_i"),
        ]
        slow = [await service.list(where) for where in filters]
    assert slow[0][0].servers == ["a-1", "b-2"]
    assert [(u.name, u.plan) for u in slow[0] if u.plan] == [("carol", "red-plan")]

    unopened = open_database(sqlite_url)
    try:
        for where, expected in zip(filters, slow, strict=True):
            fast = unopened.read_users(where)
            assert fast is not None, "the sqlite3 fast path declined a current database"
            assert _snapshot(fast) == _snapshot(expected), where
            assert _snapshot(await UserService(unopened, clock=clock).list(where)) == _snapshot(
                expected
            )
    finally:
        await unopened.close()


# -- PostgreSQL only -----------------------------------------------------------------------------


def _closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@pytest.mark.postgres
async def test_postgres_unreachable_is_a_quick_storage_error() -> None:
    url = f"postgresql+asyncpg://postgres@127.0.0.1:{_closed_port()}/vpn"
    started = time.monotonic()
    with pytest.raises(StorageError, match=r"127\.0\.0\.1") as caught:
        await _open_within(url, 20, connect_timeout_s=2)
    assert time.monotonic() - started < 5
    assert caught.value.hint


@pytest.mark.postgres
async def test_postgres_silent_server_times_out() -> None:
    """A server that accepts the connection but never answers must not hang the command."""
    accepted: list[asyncio.StreamWriter] = []

    async def silent(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(writer)

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        started = time.monotonic()
        url = f"postgresql+asyncpg://postgres@127.0.0.1:{port}/vpn"
        with pytest.raises(StorageError):
            await _open_within(url, 20, connect_timeout_s=1)
        assert time.monotonic() - started < 5
    finally:
        for writer in accepted:
            writer.close()
        server.close()
        await server.wait_closed()


async def test_sizes_and_counters_are_64_bit(db_url: str) -> None:
    async with open_database(db_url) as db:
        service = UserService(db, clock=FixedClock())
        big = 5 * 1000**5  # 5 PB: more than a 32-bit column holds
        await service.add(
            [UserCreate(name="heavy", quota_bytes=big)],
            extras=[{"upload_bytes": big, "download_bytes": big}],
        )
        heavy = await service.get("heavy")
    assert (heavy.quota_bytes, heavy.upload_bytes, heavy.download_bytes) == (big, big, big)
    assert heavy.used_bytes == 2 * big


async def test_every_time_column_reads_back_the_same_on_every_path(
    db_url: str, clock: FixedClock, tmp_path: Path
) -> None:
    """Each kind of write that stores a time (add, update, the accounting write that sets
    first_used_at, a new period, an expiry set on first use) read back through SQLAlchemy and,
    on SQLite, through the sqlite3 fast path: the same aware UTC value, column by column."""
    from vpn_manager.engines.base import Counter
    from vpn_manager.services.servers import ServerService
    from vpn_manager.services.traffic import Traffic
    from vpn_manager.storage import accounting as store
    from vpn_manager.storage import servers as server_repo
    from vpn_manager.storage import users as user_repo
    from vpn_manager.storage.sqlite_read import _TIMES

    created = clock.now
    async with open_database(db_url) as db:
        servers = ServerService(db, Paths.from_env({}, home=tmp_path / "home"), clock=clock)
        service = UserService(db, clock=clock, servers=lambda: servers)
        await service.add([UserCreate(name="alice", expires_at=EXPIRY), UserCreate(name="bob")])
        updated = clock.advance(61.5)
        await service.update("bob", UserUpdate(note="changed"))
        async with db.session() as session:
            row = stopped_server_row(clock())
            session.add(row)
            await session.flush()
            ids = await user_repo.ids_for(session, ["alice", "bob"])
            await server_repo.add_credentials(
                session, row, [(ids["alice"], {"password": "p"})], clock()
            )
            server_id = row.id
        used = clock.advance(3600.25)
        traffic = Traffic(servers, clock=clock)
        assert await traffic._count(server_id, "e1", [Counter("alice", "alice", 5, 7)]) == 12
        period = datetime(2026, 12, 1, tzinfo=UTC)
        expiry = datetime(2026, 12, 24, 18, 30, 15, 500, tzinfo=UTC)
        async with db.session() as session:
            await store.start_period(session, ids["bob"], period)
            await store.set_expiry(session, ids["bob"], expiry)
        slow = {user.name: user for user in await service.list()}
    expected = {
        "alice": {
            "created_at": created,
            "updated_at": created,
            "expires_at": EXPIRY,
            "period_started_at": None,
            "first_used_at": used,
        },
        "bob": {
            "created_at": created,
            "updated_at": updated,
            "expires_at": expiry,
            "period_started_at": period,
            "first_used_at": None,
        },
    }
    paths = {"sqlalchemy": slow}
    file = sqlite_file_of(db_url)
    if file is not None:
        unopened = open_database(db_url)
        try:
            fast = unopened.read_users(None)
        finally:
            await unopened.close()
        assert fast is not None, "the sqlite3 fast path declined a current database"
        paths["sqlite3"] = {user.name: user for user in fast}
    for path, users in paths.items():
        for name, columns in expected.items():
            for column in _TIMES:
                value = getattr(users[name], column)
                assert value == columns[column], (path, name, column, value)
                assert value is None or value.utcoffset() == timedelta(0), (path, name, column)


async def test_a_connection_error_of_other_code_in_a_session_is_not_the_databases(
    sqlite_url: str,
) -> None:
    """Code run inside a session may talk to something else (the Docker SDK over an ssh tunnel):
    a connection that other end drops is its error, never "Cannot use the database" with a
    database hint (an unreachable database still is: the test above)."""
    import http.client
    import threading

    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()

        def hang_up() -> None:
            conn, _ = listener.accept()
            conn.recv(1024)
            conn.close()  # no answer: http.client's RemoteDisconnected

        threading.Thread(target=hang_up, daemon=True).start()

        async def ask_inside_a_session(db: Database) -> None:
            async with db.session() as session:
                await session.execute(text("SELECT 1"))
                host, port = listener.getsockname()
                other = http.client.HTTPConnection(host, port, timeout=5)
                other.request("GET", "/")
                other.getresponse()

        async with open_database(sqlite_url) as db:
            with pytest.raises(http.client.RemoteDisconnected):
                await ask_inside_a_session(db)
