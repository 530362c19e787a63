"""The apply transaction of services/servers.py on a real SQLite home, with a fake engine and a
fake runtime (tests/service/fakes.py): installs and user grants that reach the running engine,
a config the engine refuses (nothing changes), a failed health probe or start (the old config is
back and running), a failed live change (the database is rolled back), and the changes that need
a restart or a reload. tests/e2e proves the same with real engines."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import FixedClock
from vpn_manager.engines.base import Engine
from vpn_manager.engines.ports import free_port
from vpn_manager.errors import EngineError
from vpn_manager.models import UserCreate
from vpn_manager.models.server import ServerChange, ServerCreate
from vpn_manager.proc import Commands
from vpn_manager.services import owed_cuts
from vpn_manager.services.root import DockerPlain
from vpn_manager.services.servers import Applied, ServerService
from vpn_manager.services.servers import apply as apply_module
from vpn_manager.services.users import UserService
from vpn_manager.settings import Paths
from vpn_manager.storage import Database

from .fakes import REFUSED, FakeEngine, FakeRuntime, FakeRuntimes

NAME = "edge"


@dataclass
class World:
    paths: Paths
    db: Database
    runtime: FakeRuntime
    engine: FakeEngine
    servers: ServerService
    users: UserService

    def config(self) -> str:
        return self.servers.files(NAME).config.read_text()

    def database(self) -> dict[str, list[tuple[Any, ...]]]:
        """Every row of every table, read with the stdlib."""
        with sqlite3.connect(self.paths.database_file) as conn:
            tables = [
                name
                for (name,) in conn.execute(
                    "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name"
                )
            ]
            return {t: list(conn.execute(f'SELECT * FROM "{t}" ORDER BY rowid')) for t in tables}

    async def install(self, port: int | None = None) -> int:
        port = port or free_port()
        create = ServerCreate(name=NAME, protocol="socks5", listen="127.0.0.1", port=port)
        await self.servers.install(create)
        return port


@pytest.fixture
async def world(tmp_path: Path, clock: FixedClock) -> AsyncIterator[World]:
    paths = Paths.from_env({}, home=tmp_path / "home")
    runtime = FakeRuntime(paths.logs_dir)
    engine = FakeEngine(runtime)

    def engines(protocol: str, commands: Commands | None) -> Engine:
        return engine

    docker = DockerPlain(None, {})
    db = Database(f"sqlite+aiosqlite:///{paths.database_file}", sqlite_file=paths.database_file)
    async with db:
        servers = ServerService(
            db,
            paths,
            clock=clock,
            docker=docker,
            engines=engines,
            runtimes=FakeRuntimes(runtime, paths, docker),
        )
        users = UserService(db, clock=clock, servers=lambda: servers)
        yield World(paths, db, runtime, engine, servers, users)


async def add_users(world: World, *names: str) -> None:
    await world.users.add([UserCreate(name=name) for name in names])


# -- applied ---------------------------------------------------------------------------------------
async def test_install_runs_the_validated_config(world: World) -> None:
    port = await world.install()
    server = await world.servers.get(NAME)
    assert server.running
    assert server.port == port
    process = world.runtime.process(NAME)
    assert world.engine.validated == [world.config()]  # validated before it was written
    assert process.loaded == json.loads(world.config())  # and what the engine runs
    assert process.port == port
    assert process.users == set()


async def test_a_grant_reaches_the_running_engine_live(world: World) -> None:
    await world.install()
    await add_users(world, "alice", "bob")
    pid = world.runtime.process(NAME).pid
    assert await world.servers.grant(["alice"], NAME) == ["alice"]
    assert world.servers.applied == [Applied(NAME, "live")]
    process = world.runtime.process(NAME)
    assert process.pid == pid  # no restart
    assert process.users == {"user-1"}
    assert json.loads(world.config())["users"] == ["user-1"]  # a restart keeps it
    await world.servers.revoke(["alice"], NAME)
    assert process.users == set()
    assert json.loads(world.config())["users"] == []
    assert len(world.runtime.history) == 1


# -- refused ---------------------------------------------------------------------------------------
async def test_a_refused_config_changes_nothing(world: World) -> None:
    await world.install()
    await add_users(world, "alice")
    await world.servers.grant(["alice"], NAME)
    database, config = world.database(), world.config()
    process = world.runtime.process(NAME)
    with pytest.raises(EngineError, match="refused the config"):
        await world.servers.update(NAME, ServerChange(host=REFUSED))
    assert REFUSED in world.engine.validated[-1]
    assert world.database() == database
    assert world.config() == config
    assert world.runtime.process(NAME) is process  # never stopped
    assert len(world.runtime.history) == 1


# -- rolled back -----------------------------------------------------------------------------------
async def test_a_failed_probe_brings_the_old_config_back_running(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(apply_module, "HEALTH_DEADLINE", 0.3)
    old_port = await world.install()
    await add_users(world, "alice")
    await world.servers.grant(["alice"], NAME)
    database, config = world.database(), world.config()
    new_port = free_port()
    world.engine.sick_ports = {new_port}
    with pytest.raises(EngineError, match="did not become healthy") as failed:
        await world.servers.update(NAME, ServerChange(port=new_port))
    assert "rolled back" in failed.value.message
    tried, back = world.runtime.history[-2:]
    assert tried.port == new_port
    assert not tried.alive
    assert world.runtime.process(NAME) is back
    assert back.port == old_port
    assert back.users == {"user-1"}
    assert world.config() == config
    assert world.database() == database
    assert (await world.servers.get(NAME)).port == old_port


async def test_an_engine_that_dies_on_start_is_rolled_back(world: World) -> None:
    old_port = await world.install()
    database, config = world.database(), world.config()
    world.runtime.exit_on_start = 255
    with pytest.raises(EngineError, match="could not start") as failed:
        await world.servers.update(NAME, ServerChange(port=free_port()))
    assert "rolled back" in failed.value.message
    assert world.runtime.process(NAME).port == old_port
    assert world.config() == config
    assert world.database() == database


async def test_a_failed_install_leaves_nothing(world: World) -> None:
    world.runtime.exit_on_start = 23
    with pytest.raises(EngineError, match="refused the config"):
        await world.install()
    assert world.database()["servers"] == []
    assert not world.servers.files(NAME).config.exists()
    assert not world.servers.keys_dir(NAME).exists()


async def test_a_failed_live_grant_rolls_the_database_back(world: World) -> None:
    await world.install()
    await add_users(world, "alice", "bob")
    await world.servers.grant(["alice"], NAME)
    database, config = world.database(), world.config()
    world.engine.live_fails = True
    with pytest.raises(EngineError, match="refused to add users"):
        await world.servers.grant(["bob"], NAME)
    assert world.database() == database
    assert world.config() == config
    assert world.runtime.process(NAME).users == {"user-1"}
    assert world.servers.applied == [Applied(NAME, "live")]  # the first grant only


async def test_a_failed_live_revoke_keeps_the_user(world: World) -> None:
    await world.install()
    await add_users(world, "alice")
    await world.servers.grant(["alice"], NAME)
    database, config = world.database(), world.config()
    world.engine.live_fails = True
    with pytest.raises(EngineError, match="refused to remove users"):
        await world.servers.revoke(["alice"], NAME)
    assert world.database() == database
    assert world.config() == config
    assert world.runtime.process(NAME).users == {"user-1"}


# -- restarts and reloads --------------------------------------------------------------------------
async def test_a_settings_change_restarts_on_the_new_config(world: World) -> None:
    await world.install()
    await add_users(world, "alice")
    await world.servers.grant(["alice"], NAME)
    first = world.runtime.process(NAME)
    new_port = free_port()
    changed = await world.servers.update(NAME, ServerChange(port=new_port))
    assert changed.server.port == new_port
    assert changed.links_changed == ["alice"]  # the port is in every link
    process = world.runtime.process(NAME)
    assert process.pid != first.pid
    assert not first.alive
    assert process.loaded == json.loads(world.config())
    assert (process.port, process.users) == (new_port, {"user-1"})


async def test_without_live_users_a_grant_reloads_the_config(world: World) -> None:
    world.engine.live = False
    await world.install()
    await add_users(world, "alice")
    await world.servers.grant(["alice"], NAME)
    assert world.servers.applied == [Applied(NAME, "reloaded")]
    process = world.runtime.process(NAME)
    assert (process.reloads, process.users) == (1, {"user-1"})
    assert len(world.runtime.history) == 1


async def test_an_engine_that_cannot_cut_adds_live_and_restarts_on_a_removal(world: World) -> None:
    """Users change live, but a removed user's open connections cannot be cut while it runs
    (Xray's Hysteria2 without nftables): an addition stays live, a removal starts the engine
    again on the new users (it has no reload)."""
    world.engine.cuts = False
    await world.install()
    await add_users(world, "alice", "bob")
    pid = world.runtime.process(NAME).pid
    await world.servers.grant(["alice", "bob"], NAME)
    assert world.servers.applied == [Applied(NAME, "live")]
    assert world.runtime.process(NAME).pid == pid
    world.servers.applied.clear()
    await world.servers.revoke(["alice"], NAME)
    assert world.servers.applied == [Applied(NAME, "restarted")]
    process = world.runtime.process(NAME)
    assert process.pid != pid
    assert process.users == {"user-2"}
    assert process.reloads == 0


async def test_where_nothing_reloads_in_place_a_grant_starts_it_again(world: World) -> None:
    world.engine.live = False
    world.runtime.in_place = False
    await world.install()
    await add_users(world, "alice")
    await world.servers.grant(["alice"], NAME)
    assert world.servers.applied == [Applied(NAME, "recreated")]
    assert len(world.runtime.history) == 2
    assert world.runtime.process(NAME).users == {"user-1"}


async def test_a_stopped_server_gets_its_users_when_it_starts(world: World) -> None:
    await world.install()
    await add_users(world, "alice")
    assert await world.servers.stop(NAME)
    await world.servers.grant(["alice"], NAME)
    assert world.servers.applied == [Applied(NAME, "saved")]
    assert json.loads(world.config())["users"] == ["user-1"]
    status = await world.servers.start(NAME)
    assert status.running
    assert status.healthy
    assert world.runtime.process(NAME).users == {"user-1"}


async def test_a_crashed_server_is_started_on_a_grant(world: World) -> None:
    await world.install()
    await add_users(world, "alice")
    world.runtime.process(NAME).alive = False  # died behind our back
    await world.servers.grant(["alice"], NAME)
    assert world.servers.applied == [Applied(NAME, "started")]
    assert world.runtime.process(NAME).users == {"user-1"}


async def test_converge_gives_back_the_users_an_engine_lost(world: World) -> None:
    await world.install()
    await add_users(world, "alice")
    await world.servers.grant(["alice"], NAME)
    world.runtime.process(NAME).users.clear()
    assert await world.servers.converge(NAME) == ["gave its engine 1 user it did not have"]
    assert world.runtime.process(NAME).users == {"user-1"}
    assert await world.servers.converge(NAME) == []


# -- cuts owed (services/owed_cuts.py) -------------------------------------------------------------
# FakeEngine's cut_fails leaves a removal as a process killed after the engine lost the users and
# before their connections were cut leaves it: the users off the engine, their connections open.
async def cut_short_deletion(world: World) -> None:
    """alice and bob on the running server with a connection open each; alice deleted, the
    deletion cut short before the cut."""
    await world.install()
    await add_users(world, "alice", "bob")
    await world.servers.grant(["alice", "bob"], NAME)
    process = world.runtime.process(NAME)
    process.connected = {"user-1", "user-2"}
    world.engine.cut_fails = True
    with pytest.raises(EngineError, match="Could not cut"):
        await world.users.delete(["alice"])
    world.engine.cut_fails = False
    assert process.users == {"user-2"}
    assert process.connected == {"user-1", "user-2"}  # the gap: alice's tunnel still works


async def test_converge_cuts_what_a_removal_cut_short_left_open(world: World) -> None:
    await cut_short_deletion(world)
    assert owed_cuts.owed(world.paths.run_dir, NAME) == {"user-1"}
    process = world.runtime.process(NAME)
    assert await world.servers.converge(NAME) == [
        "rewrote its config from the database",  # the failed change put the old one back
        "cut 1 open connection of 1 user whose removal was interrupted before the cut",
    ]
    assert process.connected == {"user-2"}  # bob's stays
    assert process.users == {"user-2"}
    assert owed_cuts.owed(world.paths.run_dir, NAME) == set()
    assert not any(world.paths.run_dir.glob("*.cuts.json"))
    assert await world.servers.converge(NAME) == []


async def test_a_cut_that_fails_again_stays_owed(world: World) -> None:
    await cut_short_deletion(world)
    world.engine.cut_fails = True
    with pytest.raises(EngineError, match="Could not cut"):
        await world.servers.converge(NAME)
    assert owed_cuts.owed(world.paths.run_dir, NAME) == {"user-1"}
    world.engine.cut_fails = False
    assert await world.servers.converge(NAME) != []
    assert world.runtime.process(NAME).connected == {"user-2"}


async def test_a_user_given_the_server_again_keeps_the_connection(world: World) -> None:
    """A failed revoke is undone (alice granted again): nothing of hers is cut, nothing owed."""
    await world.install()
    await add_users(world, "alice")
    await world.servers.grant(["alice"], NAME)
    process = world.runtime.process(NAME)
    process.connected = {"user-1"}
    world.engine.cut_fails = True
    with pytest.raises(EngineError, match="Could not cut"):
        await world.servers.revoke(["alice"], NAME)
    assert process.users == {"user-1"}
    assert process.connected == {"user-1"}
    assert owed_cuts.owed(world.paths.run_dir, NAME) == set()


async def test_a_stop_pays_every_cut_owed(world: World) -> None:
    await cut_short_deletion(world)
    await world.servers.stop(NAME)
    assert owed_cuts.owed(world.paths.run_dir, NAME) == set()
    await world.servers.start(NAME)
    assert await world.servers.converge(NAME) == []
