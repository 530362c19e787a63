"""The subscribers `Subscriptions` keeps between lookups (services/subscriptions.py), on a real
database (SQLite and PostgreSQL) through the real services, with the fake engine of the service
tests: a kept subscriber is served again only while nothing was committed since it was read, so
every change a subscription shows is in the very next lookup — a rotated token, a disabled user,
new server keys, a revoked grant, new usage — also when another process commits it, or the
database file is replaced. The cache holds at most its size, and never an unknown token."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, closing
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from sqlalchemy import update

from tests.conftest import FixedClock, open_database
from vpn_manager import storage
from vpn_manager.engines.base import Engine
from vpn_manager.engines.linkdata import Credential, LinkData
from vpn_manager.engines.ports import free_port
from vpn_manager.models import UserCreate, UserStatus
from vpn_manager.models.server import ServerCreate
from vpn_manager.proc import Commands
from vpn_manager.services.limits import Limits
from vpn_manager.services.root import DockerPlain
from vpn_manager.services.servers import ServerService
from vpn_manager.services.subscriptions import Subscriber, Subscriptions
from vpn_manager.services.tokens import TokenSeal, digest
from vpn_manager.services.users import UserService
from vpn_manager.settings import Paths
from vpn_manager.specs import Client, ServerSpec
from vpn_manager.storage import Database
from vpn_manager.storage.changes import CommitMarks
from vpn_manager.storage.orm import UserRow
from vpn_manager.storage.sqlite_subscriptions import SubscriptionFile, Unanswered

from .service.fakes import FakeEngine, FakeRuntime, FakeRuntimes

SERVERS = ("edge", "lab")


@dataclass
class KeyedEngine(FakeEngine):
    """The fake engine, whose links carry the server's key (as REALITY links carry theirs)."""

    def link_data(self, spec: ServerSpec, client: Client) -> LinkData:
        password = f"{client.secret['token']}@{spec.secret['key']}"
        return LinkData.of(
            "socks5", spec, client, credential=Credential(username=client.name, password=password)
        )


@dataclass
class World:
    db: Database
    servers: ServerService
    users: UserService
    subscriptions: Subscriptions
    clock: FixedClock

    async def find(self, token: str) -> Subscriber | None:
        return await self.subscriptions.find(token)

    async def alice(self, token: str) -> Subscriber:
        found = await self.find(token)
        assert found is not None
        await self.same_on_both_paths(token)
        return found

    async def same_on_both_paths(self, token: str) -> None:
        """On SQLite, the sqlite3 reader and SQLAlchemy give the same record, field by field."""
        if self.db.sqlite_file is None:
            return
        file = SubscriptionFile(self.db.sqlite_file)
        try:
            fast = file.read(digest(token))
        finally:
            file.close()
        async with self.db.reading() as session:
            slow = await storage.users.subscription_record(session, digest(token))
        assert fast is not None
        assert slow is not None
        for name in ("user_id", "name", "status", "upload", "download", "quota", "expires"):
            assert getattr(fast, name) == getattr(slow, name), name
        assert fast.servers == slow.servers


@pytest.fixture
async def world(db_url: str, tmp_path: Path, clock: FixedClock) -> AsyncIterator[World]:
    async with made_world(db_url, tmp_path, clock) as made:
        yield made


@pytest.fixture
async def sqlite_world(tmp_path: Path, clock: FixedClock) -> AsyncIterator[World]:
    """A world on SQLite only, for what only a file has (another process, its schema)."""
    async with made_world("sqlite", tmp_path, clock) as made:
        yield made


@asynccontextmanager
async def made_world(db_url: str, tmp_path: Path, clock: FixedClock) -> AsyncIterator[World]:
    paths = Paths.from_env({}, home=tmp_path / "home")
    runtime = FakeRuntime(paths.logs_dir)
    engine = KeyedEngine(runtime)

    def engines(protocol: str, commands: Commands | None) -> Engine:
        return engine

    docker = DockerPlain(None, {})
    if db_url.startswith("sqlite"):
        db_url = f"sqlite+aiosqlite:///{paths.database_file}"
    async with open_database(db_url) as db:
        servers = ServerService(
            db,
            paths,
            clock=clock,
            docker=docker,
            engines=engines,
            runtimes=FakeRuntimes(runtime, paths, docker),
        )
        users = UserService(
            db, clock=clock, servers=lambda: servers, seal=TokenSeal(paths.subscription_key)
        )
        for name in SERVERS:
            create = ServerCreate(
                name=name, protocol="socks5", listen="127.0.0.1", port=free_port()
            )
            await servers.install(create)
        await users.add([UserCreate(name="alice"), UserCreate(name="bob")], servers=SERVERS)
        subscriptions = Subscriptions(db, lambda: servers)
        try:
            yield World(db, servers, users, subscriptions, clock)
        finally:
            subscriptions.close()


async def test_a_subscriber_is_kept_while_nothing_changes(world: World) -> None:
    token = await world.users.subscription_token("alice")
    first = await world.alice(token)
    assert [way.server for way in first.ways] == list(SERVERS)
    # Each way is labelled for the app, as in the user's links: USER@SERVER.
    assert [way.data.name for way in first.ways] == [f"alice@{s}" for s in SERVERS]
    assert [p["name"] for p in yaml.safe_load(first.profile("clash"))["proxies"]] == [
        f"alice@{s}" for s in SERVERS
    ]
    assert await world.find(token) is first  # kept: not read again
    assert first.profile("links") is first.profile("links")  # and its documents made once


async def test_a_rotated_token_is_gone_at_once(world: World) -> None:
    old = await world.users.subscription_token("alice")
    await world.alice(old)
    new = await world.users.rotate_token("alice")
    assert await world.find(old) is None
    assert (await world.alice(new)).name == "alice"


async def test_a_disabled_user_gets_no_ways_on_the_next_lookup(world: World) -> None:
    token = await world.users.subscription_token("alice")
    assert (await world.alice(token)).active
    await world.users.disable(["alice"])
    found = await world.alice(token)
    assert (found.status, found.ways) == ("disabled", [])
    await world.users.set_status(["alice"], UserStatus.ACTIVE)
    assert len((await world.alice(token)).ways) == len(SERVERS)


async def test_new_server_keys_are_in_the_next_lookup(world: World) -> None:
    token = await world.users.subscription_token("alice")
    before = (await world.alice(token)).profile("links")
    await world.servers.rotate_keys("edge")
    after = await world.alice(token)
    assert after.profile("links") != before
    assert [w.data.credential.password.rsplit("@", 1)[1] for w in after.ways] == [
        "key-3",  # edge's new key (the two installs had 1 and 2)
        "key-2",
    ]


async def test_a_revoked_server_leaves_the_next_lookup(world: World) -> None:
    token = await world.users.subscription_token("alice")
    assert len((await world.alice(token)).ways) == 2
    await world.servers.revoke(["alice"], "edge")
    assert [way.server for way in (await world.alice(token)).ways] == ["lab"]


async def test_the_usage_is_current(world: World) -> None:
    token = await world.users.subscription_token("alice")
    assert (await world.alice(token)).userinfo().startswith("upload=0; download=0;")
    async with world.db.session() as session:  # as `vpn serve` counts traffic
        await session.execute(
            update(UserRow)
            .where(UserRow.name == "alice")
            .values(period_upload_bytes=100, period_download_bytes=2000)
        )
    assert (await world.alice(token)).userinfo().startswith("upload=100; download=2000;")
    await Limits(world.servers, world.clock).reset_usage(["alice"])
    assert (await world.alice(token)).userinfo().startswith("upload=0; download=0;")


async def test_a_change_to_another_user_also_drops_the_kept_ones(world: World) -> None:
    """Anything committed counts: the cache never has to know what a subscription reads."""
    token = await world.users.subscription_token("alice")
    first = await world.alice(token)
    await world.users.disable(["bob"])
    again = await world.alice(token)
    assert again is not first
    assert again == first


async def test_at_most_cache_size_are_kept_and_no_unknown_token(world: World) -> None:
    world.subscriptions.cache_size = 1
    alice = await world.users.subscription_token("alice")
    bob = await world.users.subscription_token("bob")
    first = await world.alice(alice)
    assert await world.find("x" * 43) is None
    assert await world.find(alice) is first  # the unknown token took no place
    await world.find(bob)
    assert world.subscriptions.kept == 1
    assert await world.find(alice) is not first  # bob's lookup pushed alice out


def sqlite_file(world: World) -> Path:
    assert world.db.sqlite_file is not None
    return world.db.sqlite_file


async def test_another_process_committing_is_seen(sqlite_world: World) -> None:
    world = sqlite_world
    file = sqlite_file(world)
    token = await world.users.subscription_token("alice")
    await world.alice(token)
    write = "import sqlite3, sys; c = sqlite3.connect(sys.argv[1]);"
    write += "c.execute(\"UPDATE users SET status = 'disabled' WHERE name = 'alice'\"); c.commit()"
    subprocess.run([sys.executable, "-c", write, str(file)], check=True)
    assert (await world.alice(token)).status == "disabled"


async def test_a_database_file_replaced_under_its_name_is_a_change(tmp_path: Path) -> None:
    """CommitMarks watches the file the name holds now (a restore), not the one it opened."""
    file, other = tmp_path / "vpn.db", tmp_path / "restored.db"
    for path in (file, other):
        with closing(sqlite3.connect(path)) as conn:
            conn.execute("CREATE TABLE t (x)")
    marks = CommitMarks(Database(f"sqlite+aiosqlite:///{file}"))
    try:
        first = await marks.current()
        assert await marks.current() == first
        os.replace(other, file)
        assert await marks.current() != first
    finally:
        marks.close()


async def test_a_schema_the_reader_does_not_know_goes_through_sqlalchemy(
    sqlite_world: World,
) -> None:
    world = sqlite_world
    file = sqlite_file(world)
    token = await world.users.subscription_token("alice")
    with closing(sqlite3.connect(file)) as conn:
        conn.execute("UPDATE alembic_version SET version_num = 'elsewhere'")
        conn.commit()
    reader = SubscriptionFile(file)
    try:
        with pytest.raises(Unanswered):
            reader.read(digest(token))
    finally:
        reader.close()
    found = await world.find(token)  # SQLAlchemy reads it
    assert found is not None
    assert [way.server for way in found.ways] == list(SERVERS)
