"""API keys and the audit log (services/apikeys.py, services/audit.py) on real databases: an
SQLite file and a throwaway PostgreSQL."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import select, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncSession

from tests.conftest import T0, FixedClock, open_database, sqlite_file_of
from vpn_manager.errors import Conflict, InvalidInput, NotFound
from vpn_manager.services import audit as audit_module
from vpn_manager.services.apikeys import SECRET_PATTERN, ApiKey, ApiKeyService, digest
from vpn_manager.services.audit import AuditLog
from vpn_manager.services.root import Services
from vpn_manager.settings import Paths
from vpn_manager.storage import Database, migrate
from vpn_manager.storage.orm import ApiKeyRow, AuditRow

HOSTILE_NAMES = ["..", ".", "a/b", "../x", "a\x1b[31mb", "a\nb", "a\0b", "", "x" * 65, "é", " a"]


class CountingSessions:
    """Counts the write transactions a Database opens (Database.session), around the real one."""

    def __init__(self, db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
        self.count = 0
        real = db.session

        @asynccontextmanager
        async def counted() -> AsyncIterator[AsyncSession]:
            self.count += 1
            async with real() as session:
                yield session

        monkeypatch.setattr(db, "session", counted)


async def _rows(db: Database) -> list[ApiKeyRow]:
    async with db.reading() as session:
        return list((await session.execute(select(ApiKeyRow).order_by(ApiKeyRow.id))).scalars())


async def _audit_count(db: Database) -> int:
    async with db.reading() as session:
        return len((await session.execute(select(AuditRow.id))).all())


# -- making keys ----------------------------------------------------------------------------------
async def test_create_gives_a_secret_once_and_keeps_only_its_hash(
    database: Database, clock: FixedClock
) -> None:
    keys = ApiKeyService(database, clock)
    key, secret = await keys.create("ci", "write", clock() + timedelta(days=90))
    assert SECRET_PATTERN.fullmatch(secret)
    assert secret.startswith("vpnm_")
    assert len(secret) == 5 + 43
    assert key == ApiKey("ci", "write", clock(), clock() + timedelta(days=90), None, None)
    assert key.state == "active"
    [row] = await _rows(database)
    assert row.key_hash == hashlib.sha256(secret.encode()).hexdigest()
    assert secret not in {str(value) for value in vars(row).values()}
    assert await keys.list() == [key]
    # Two keys never share a secret.
    _, other = await keys.create("ci2", "read", None)
    assert other != secret


async def test_the_secret_is_not_in_the_sqlite_file(sqlite_url: str, clock: FixedClock) -> None:
    async with open_database(sqlite_url) as db:
        _, secret = await ApiKeyService(db, clock).create("ci", "read", None)
    file = sqlite_file_of(sqlite_url)
    assert file is not None
    stored = b"".join(
        path.read_bytes() for path in file.parent.iterdir() if path.name.startswith(file.name)
    )
    assert digest(secret).encode() in stored  # so the search below looks in the right bytes
    assert secret.encode() not in stored
    assert secret.removeprefix("vpnm_").encode() not in stored


@pytest.mark.parametrize("name", HOSTILE_NAMES)
async def test_hostile_names_are_refused(database: Database, clock: FixedClock, name: str) -> None:
    with pytest.raises(InvalidInput, match="cannot name an API key"):
        await ApiKeyService(database, clock).create(name, "read", None)
    assert await _rows(database) == []


async def test_scope_and_expiry_are_checked(database: Database, clock: FixedClock) -> None:
    keys = ApiKeyService(database, clock)
    for scope in ("admin", "", "READ", "read,write"):
        with pytest.raises(InvalidInput, match="not an API key scope"):
            await keys.create("ci", scope, None)
    with pytest.raises(InvalidInput, match="in the past"):
        await keys.create("ci", "read", clock())
    with pytest.raises(InvalidInput, match="in the past"):
        await keys.create("ci", "read", clock() - timedelta(days=1))
    with pytest.raises(InvalidInput, match="2099-12-31"):
        await keys.create("ci", "read", clock() + timedelta(days=365 * 200))
    assert await _rows(database) == []


async def test_a_name_is_held_until_its_key_is_revoked(
    database: Database, clock: FixedClock
) -> None:
    keys = ApiKeyService(database, clock)
    _, first_secret = await keys.create("ci", "read", clock() + timedelta(days=1))
    with pytest.raises(Conflict, match="exists already"):
        await keys.create("ci", "write", None)
    clock.advance(2 * 86400)  # expired keys hold their name too: revoke them to reuse it
    with pytest.raises(Conflict) as refused:
        await keys.create("ci", "write", None)
    assert refused.value.message == "An API key named 'ci' exists already (expired)."
    assert refused.value.hint == "Pick another name, or revoke it first: vpn api-key revoke ci"
    await keys.revoke("ci")
    _, second_secret = await keys.create("ci", "write", None)
    listed = await keys.list()
    assert [(k.name, k.scope, k.state) for k in listed] == [
        ("ci", "read", "revoked"),
        ("ci", "write", "active"),
    ]
    assert await keys.authenticate(first_secret) is None
    assert await keys.authenticate(second_secret) is not None
    assert (await keys.get("ci")).scope == "write"


async def test_two_processes_making_one_name_at_once(db_url: str, clock: FixedClock) -> None:
    """The partial unique index holds when both looked first and found the name free."""
    async with open_database(db_url) as first, open_database(db_url) as second:
        results = await asyncio.gather(
            *(
                ApiKeyService(db, clock).create("ci", "read", None)
                for db in (first, second, first, second)
            ),
            return_exceptions=True,
        )
        made = [r for r in results if isinstance(r, tuple)]
        refused = [r for r in results if isinstance(r, Conflict)]
        assert len(made) == 1, results
        assert len(refused) == 3, results
        assert len(await _rows(first)) == 1


# -- revoking ---------------------------------------------------------------------------------
async def test_revoke_once_then_say_so_without_writing(
    database: Database, clock: FixedClock
) -> None:
    keys = ApiKeyService(database, clock)
    _, secret = await keys.create("ci", "write", None)
    with pytest.raises(NotFound, match="no API key named 'nope'"):
        await keys.revoke("nope")
    revoked, changed = await keys.revoke_once("ci", audit_as="cli:test")
    assert changed
    assert revoked.revoked_at == clock()
    assert revoked.state == "revoked"
    clock.advance(60)
    again, changed = await keys.revoke_once("ci", audit_as="cli:test")
    assert not changed
    assert again.revoked_at == revoked.revoked_at  # not written a second time
    assert (await keys.revoke("ci")).revoked_at == revoked.revoked_at
    entries = await AuditLog(database, clock).entries()
    assert [(e.actor, e.action, e.target, e.result) for e in entries] == [
        ("cli:test", "api-key.revoke", "ci", "ok")
    ]
    assert await keys.authenticate(secret) is None


# -- authenticating -------------------------------------------------------------------------------
async def test_authenticate_takes_only_active_well_formed_secrets(
    database: Database, clock: FixedClock
) -> None:
    keys = ApiKeyService(database, clock)
    key, secret = await keys.create("ci", "read", clock() + timedelta(hours=1))
    found = await keys.authenticate(secret)
    assert found is not None
    assert (found.name, found.scope, found.state) == ("ci", "read", "active")
    unknown = "vpnm_" + "A" * 43
    for bad in (
        "",
        secret[5:],  # without the prefix
        secret + "x",
        secret[:-1],
        secret.upper(),
        "vpnm_" + "!" * 43,
        unknown,
        secret + "\n",
        "x" * 100_000,
    ):
        assert await keys.authenticate(bad) is None, bad
    clock.advance(3600)  # the expiry itself: expired
    assert await keys.authenticate(secret) is None
    assert (await keys.list())[0].state == "expired"
    assert key.state_at(clock()) == "expired"


async def test_last_use_is_written_at_most_once_a_minute(
    database: Database, clock: FixedClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    keys = ApiKeyService(database, clock)
    _, secret = await keys.create("ci", "read", None)
    writes = CountingSessions(database, monkeypatch)
    first = await keys.authenticate(secret)
    assert first is not None
    assert first.last_used_at == clock()
    assert writes.count == 1
    used_at = clock()
    for _ in range(20):
        clock.advance(2)
        assert await keys.authenticate(secret) is not None
    assert writes.count == 1  # 40 seconds of requests: no more writes
    assert (await _rows(database))[0].last_used_at == used_at
    # Another process (a fresh service) reads the time from the database and writes nothing.
    other = ApiKeyService(database, clock)
    seen = await other.authenticate(secret)
    assert seen is not None
    assert seen.last_used_at == used_at
    assert writes.count == 1
    clock.advance(21)  # over a minute since the last write
    assert (await keys.authenticate(secret)) is not None
    assert writes.count == 2
    assert (await _rows(database))[0].last_used_at == clock()


def test_scopes() -> None:
    def key(scope: str) -> ApiKey:
        return ApiKey("k", scope, T0, None, None, None)

    assert key("write").allows("write")
    assert key("write").allows("read")
    assert key("read").allows("read")
    assert not key("read").allows("write")
    assert not key("write").allows("admin")
    assert not key("read").allows("")


async def test_services_hand_out_the_keys_and_the_log(tmp_path: Path, clock: FixedClock) -> None:
    paths = Paths.from_env({}, home=tmp_path / "home")
    url = f"sqlite+aiosqlite:///{tmp_path / 'vpn.db'}"
    services = Services(paths, open_database(url), clock=clock)
    try:
        assert services.api_keys is services.api_keys  # one, so its last-use memory holds
        key, secret = await services.api_keys.create("ci", "read", None, audit_as="cli:me")
        assert key.created_at == clock()
        assert await services.api_keys.authenticate(secret) is not None
        [entry] = await services.audit.entries()
        assert (entry.at, entry.actor, entry.action, entry.target) == (
            clock(),
            "cli:me",
            "api-key.create",
            "ci",
        )
    finally:
        await services.close()


# -- the audit log --------------------------------------------------------------------------------
async def test_entries_newest_first_and_filtered(database: Database, clock: FixedClock) -> None:
    log = AuditLog(database, clock)
    start = clock()
    for index in range(5):
        await log.record("ci" if index % 2 else "cli:root", "user.add", f"u{index}", "ok")
        clock.advance(3600)
    entries = await log.entries()
    assert [e.target for e in entries] == ["u4", "u3", "u2", "u1", "u0"]
    assert entries[-1].at == start
    assert [e.target for e in await log.entries(limit=2)] == ["u4", "u3"]
    assert [e.target for e in await log.entries(actor="ci")] == ["u3", "u1"]
    assert [e.target for e in await log.entries(actor="nobody")] == []
    since = start + timedelta(hours=2)
    assert [e.target for e in await log.entries(since=since)] == ["u4", "u3", "u2"]
    assert [e.target for e in await log.entries(actor="ci", since=since)] == ["u3"]
    assert len(await log.entries(limit=10**30)) == 5  # more than is ever kept: all of them


@pytest.mark.parametrize("limit", [0, -1, -(10**30)])
async def test_a_limit_under_one_is_refused(
    database: Database, clock: FixedClock, limit: int
) -> None:
    with pytest.raises(InvalidInput, match="at least one"):
        await AuditLog(database, clock).entries(limit=limit)


async def test_fields_are_made_printable_and_fit_their_columns(
    database: Database, clock: FixedClock
) -> None:
    log = AuditLog(database, clock)
    await log.record("a\x1b]0;x\x07b", "user.add\r", "t" * 1000, "InvalidInput: " + "r" * 2000)
    [entry] = await log.entries()
    assert entry.actor == "a?]0;x?b"
    assert entry.action == "user.add?"
    assert len(entry.target) == 255
    assert entry.target.endswith("…")
    assert len(entry.result) == 500


async def test_the_log_keeps_the_newest_entries(
    database: Database, clock: FixedClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(audit_module, "KEEP", 7)
    monkeypatch.setattr(audit_module, "PRUNE_EVERY", 5)
    log = AuditLog(database, clock)
    for index in range(1, 21):
        await log.record("ci", "user.add", f"u{index}", "ok")
        clock.advance(1)
        # Every 5th entry prunes to the newest 7 (from the 10th on); at most 7 + 4 in between.
        assert await _audit_count(database) == (index if index < 10 else 7 + index % 5)
    assert [e.target for e in await log.entries()] == [f"u{i}" for i in range(20, 13, -1)]


async def test_a_failed_create_writes_no_entry(database: Database, clock: FixedClock) -> None:
    keys = ApiKeyService(database, clock)
    await keys.create("ci", "read", None, audit_as="cli:me")
    with pytest.raises(Conflict):
        await keys.create("ci", "read", None, audit_as="cli:me")
    assert await _audit_count(database) == 1
    assert len(await _rows(database)) == 1


# -- the migration --------------------------------------------------------------------------------
def _downgrade_then_upgrade(connection: Connection) -> list[str]:
    config = migrate.alembic_config(connection)
    command.downgrade(config, "0005")
    tables = [
        name
        for (name,) in connection.execute(
            text(
                "SELECT table_name FROM information_schema.tables WHERE table_name IN "
                "('api_keys', 'audit_log')"
                if connection.dialect.name == "postgresql"
                else "SELECT name FROM sqlite_master WHERE name IN ('api_keys', 'audit_log')"
            )
        )
    ]
    command.upgrade(config, "head")
    return tables


async def test_migration_0006_goes_down_and_up(db_url: str, clock: FixedClock) -> None:
    async with open_database(db_url) as db:
        await ApiKeyService(db, clock).create("ci", "read", None)
        async with db.engine.begin() as conn:
            assert await conn.run_sync(_downgrade_then_upgrade) == []
        assert await _rows(db) == []
        _, secret = await ApiKeyService(db, clock).create("ci", "read", None)
        assert await ApiKeyService(db, clock).authenticate(secret) is not None
