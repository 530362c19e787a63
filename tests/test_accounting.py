"""Traffic counting and limits (services/traffic.py, limits.py) on a real SQLite database, with an
injectable clock: counting across engine restarts, periods, quotas, expiry (engines are not
needed: users hold no servers here; tests/e2e/test_accounting.py does it with a real Xray)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from vpn_manager.engines.base import Counter
from vpn_manager.models import UserCreate
from vpn_manager.services.periods import FAR_FUTURE, days_after, period_start
from vpn_manager.services.rounds import Rounds
from vpn_manager.services.servers import ServerService
from vpn_manager.services.users import UserService
from vpn_manager.settings import Paths
from vpn_manager.storage import Database
from vpn_manager.storage.orm import ServerRow

BERLIN = ZoneInfo("Europe/Berlin")


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def test_period_starts() -> None:
    now = datetime(2027, 3, 31, 22, 30, tzinfo=UTC)  # 00:30 on April 1st in Berlin (CEST)
    anchor = datetime(2027, 3, 1, tzinfo=UTC)
    assert period_start("never", now, BERLIN, anchor) is None
    assert period_start("daily", now, BERLIN, anchor) == datetime(2027, 3, 31, 22, 0, tzinfo=UTC)
    assert period_start("monthly", now, BERLIN, anchor) == datetime(2027, 3, 31, 22, tzinfo=UTC)
    assert period_start("monthly", now, UTC, anchor) == datetime(2027, 3, 1, tzinfo=UTC)
    assert period_start("weekly", now, UTC, anchor) == datetime(2027, 3, 29, tzinfo=UTC)  # Monday
    assert period_start("10d", now, UTC, anchor) == datetime(2027, 3, 31, tzinfo=UTC)
    assert period_start("30d", now, UTC, anchor) == datetime(2027, 3, 31, tzinfo=UTC)


@pytest.fixture
async def world(tmp_path: Path) -> tuple[Database, Rounds, UserService, Clock, int]:
    paths = Paths.from_env({}, home=tmp_path)
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'vpn.db'}")
    await db.open()
    clock = Clock(datetime(2027, 1, 10, 12, tzinfo=UTC))
    servers = ServerService(db, paths, clock=clock)
    users = UserService(db, clock=clock, servers=lambda: servers)
    async with db.session() as session:  # a server row for the counters to belong to (stopped)
        row = ServerRow(
            name="s",
            protocol="vless-reality",
            engine="xray",
            runtime="native",
            listen="127.0.0.1",
            port=1,
            host="127.0.0.1",
            desired="stopped",
            settings={"sni": "a.test", "dest": "a.test:443", "short_ids": ["ab"], "api_port": 2},
            secret={"private_key": "4FntWLkKlvSV44OGaN0WmHJeH5r5B1XTdNUUp5yKfHU"},
            created_at=clock(),
            updated_at=clock(),
        )
        session.add(row)
        await session.flush()
        server_id = row.id
    return db, Rounds(servers, clock, UTC, device_ban_s=60), users, clock, server_id


async def grant(db: Database, server_id: int, user: str) -> None:
    from vpn_manager.storage import servers as repo
    from vpn_manager.storage import users as user_repo

    async with db.session() as session:
        ids = await user_repo.ids_for(session, [user])
        row = await session.get(ServerRow, server_id)
        assert row is not None
        await repo.add_credentials(session, row, [(ids[user], {"uuid": "u"})], datetime.now(UTC))


async def test_counting_across_restarts_never_loses_or_doubles(
    world: tuple[Database, Rounds, UserService, Clock, int],
) -> None:
    db, rounds, users, _clock, server = world
    traffic = rounds.traffic
    await users.add([UserCreate(name="alice")])
    await grant(db, server, "alice")
    alice = "user-1"

    async def read(epoch: str, up: int, down: int) -> int:
        return await traffic._count(server, epoch, [Counter(alice, alice, up, down)])

    assert await read("p1", 100, 1_000) == 1_100
    assert await read("p1", 100, 1_000) == 0  # nothing grew: nothing counted twice
    assert await read("p1", 150, 3_000) == 2_050
    # The engine restarts: a new process counts from zero, even past the old value.
    assert await read("p2", 500, 9_000) == 9_500
    # A counter that went backwards in the same process (a peer re-added) counts from zero.
    assert await read("p2", 10, 20) == 30
    user = await users.get("alice")
    assert (user.upload_bytes, user.download_bytes) == (
        100 + 50 + 500 + 10,
        1_000 + 2_000 + 9_000 + 20,
    )
    assert (user.period_upload_bytes, user.period_download_bytes) == (660, 12_020)
    assert user.first_used_at is not None


async def test_quota_periods_and_expiry(
    world: tuple[Database, Rounds, UserService, Clock, int],
) -> None:
    db, rounds, users, clock, server = world
    traffic, limits = rounds.traffic, rounds.limits
    await users.add(
        [
            UserCreate(name="alice", quota_bytes=1_000, reset_period="daily"),
            UserCreate(name="bob", quota_bytes=1_000),
            UserCreate(name="carol", expires_at=clock() + timedelta(hours=1)),
            UserCreate(name="dave", expire_after_days=2),
        ]
    )
    for name in ("alice", "bob", "dave"):
        await grant(db, server, name)
    await limits.enforce()  # starts alice's first period
    await traffic._count(server, "p", [Counter("user-1", "user-1", 600, 600)])
    await traffic._count(server, "p", [Counter("user-2", "user-2", 10, 10)])
    report = await limits.enforce()
    assert report.limited == {"alice": "over-quota"}
    assert (await users.get("alice")).status == "over-quota"
    # Two hours later carol has expired; bob is still fine.
    clock.now += timedelta(hours=2)
    assert (await limits.enforce()).limited == {"carol": "expired"}
    # Extending carol's expiry lets her back in at once, not at the next round.
    from vpn_manager.models import UserUpdate

    carol = await users.update("carol", UserUpdate(expires_at=clock() + timedelta(days=30)))
    assert carol.status == "active"
    assert (await limits.enforce()).restored == []
    # The next day alice's period rolls over: she is active again with nothing used.
    clock.now = datetime(2027, 1, 11, 0, 0, 1, tzinfo=UTC)
    report = await limits.enforce()
    assert report.restored == ["alice"]
    assert report.reset == ["alice"]
    alice = await users.get("alice")
    assert (alice.status, alice.period_download_bytes, alice.download_bytes) == ("active", 0, 600)
    # bob's quota never resets; raising it lets him back in after he crosses it.
    await traffic._count(server, "p", [Counter("user-2", "user-2", 500, 990)])
    assert (await limits.enforce()).limited == {"bob": "over-quota"}
    await limits.reset_usage(["bob"])
    assert (await users.get("bob")).status == "active"
    # "Starts on first use": dave's 2 days begin with his first byte.
    assert (await users.get("dave")).expires_at is None
    await traffic._count(server, "p", [Counter("user-4", "user-4", 1, 1)])
    await limits.enforce()
    dave = await users.get("dave")
    assert dave.first_used_at == clock()
    assert dave.expires_at == clock() + timedelta(days=2)
    clock.now += timedelta(days=2)
    assert (await limits.enforce()).limited == {"dave": "expired"}
    await db.close()


class _Follower:
    """Hands over the closed connections it was given (the engine side is covered end to end
    in tests/e2e/test_accounting.py); records whether it runs."""

    def __init__(self, seen: list[Counter]) -> None:
        self.seen = seen
        self.running = False

    def start(self) -> None:
        self.running = True

    async def stop(self) -> None:
        self.running = False

    def take(self) -> list[Counter]:
        seen, self.seen = self.seen, []
        return seen


class _Engine:
    def __init__(self) -> None:
        self.made: list[_Follower] = []

    def follower(self, spec: object) -> _Follower:
        self.made.append(_Follower([]))
        return self.made[-1]


def test_merged_takes_the_higher_reading_of_each_direction() -> None:
    from vpn_manager.services.traffic import merged

    polled = [Counter("conn:a", "u", 10, 50), Counter("conn:b", "u", 1, 1)]
    followed = [Counter("conn:a", "u", 12, 40), Counter("conn:c", "v", 5, 6)]
    assert sorted(merged(polled, followed), key=lambda c: c.key) == [
        Counter("conn:a", "u", 12, 50),
        Counter("conn:b", "u", 1, 1),
        Counter("conn:c", "v", 5, 6),
    ]


async def test_a_follower_lives_as_long_as_its_engine_process_and_address(
    world: tuple[Database, Rounds, UserService, Clock, int],
) -> None:
    from typing import Any, cast

    from vpn_manager.specs import ServerSpec

    _, rounds, _, _, server_id = world
    traffic = rounds.traffic
    engine = _Engine()

    def spec(api_port: int) -> ServerSpec:
        return cast(ServerSpec, type("Spec", (), {"settings": {"api_port": api_port}})())

    async def poll(epoch: str, api_port: int) -> list[Counter]:
        return await traffic._with_followed(
            server_id, epoch, cast(Any, engine), spec(api_port), [Counter("conn:o", "u", 1, 1)]
        )

    assert await poll("1@100", 7000) == [Counter("conn:o", "u", 1, 1)]  # started, nothing yet
    first = engine.made[0]
    assert first.running
    first.seen = [Counter("conn:x", "u", 3, 4)]
    assert len(await poll("1@100", 7000)) == 2  # the closed one it followed is counted
    first.seen = [Counter("conn:y", "u", 5, 6)]
    moved = await poll("1@100", 7001)  # same process, reached elsewhere: handed over, replaced
    assert Counter("conn:y", "u", 5, 6) in moved
    assert not first.running
    assert engine.made[1].running
    engine.made[1].seen = [Counter("conn:z", "u", 7, 8)]
    restarted = await poll("2@200", 7001)  # a new process: the old one's readings are dropped
    assert restarted == [Counter("conn:o", "u", 1, 1)]
    assert not engine.made[1].running
    assert engine.made[2].running
    await traffic.close()
    assert not engine.made[2].running


async def test_enforce_cannot_overflow_on_any_stored_limit(
    world: tuple[Database, Rounds, UserService, Clock, int],
) -> None:
    """A database written before the input bounds (or by hand) may hold any Integer: a
    first-use span of two billion days, an "every N days" period of any length. enforce()
    clamps the arithmetic instead of failing the round."""
    from sqlalchemy import text

    db, rounds, users, _clock, server = world
    traffic, limits = rounds.traffic, rounds.limits
    await users.add([UserCreate(name="alice"), UserCreate(name="bob")])
    await grant(db, server, "alice")
    await grant(db, server, "bob")
    async with db.session() as session:
        await session.execute(
            text("UPDATE users SET expire_after_days = 2147483647 WHERE name = 'alice'")
        )
        await session.execute(text("UPDATE users SET reset_period = '0d' WHERE name = 'bob'"))
    await traffic._count(server, "p", [Counter("user-1", "user-1", 1, 1)])
    await limits.enforce()
    alice = await users.get("alice")
    assert alice.status == "active"
    assert alice.expires_at == FAR_FUTURE
    async with db.session() as session:
        await session.execute(
            text(f"UPDATE users SET reset_period = '{'9' * 5000}d' WHERE name = 'bob'")
        )
    await limits.enforce()
    assert (await users.get("bob")).status == "active"
    await db.close()


def test_days_after_and_long_periods_are_clamped() -> None:
    start = datetime(2027, 1, 1, tzinfo=UTC)
    assert days_after(start, 30) == datetime(2027, 1, 31, tzinfo=UTC)
    assert days_after(start, 2**31 - 1) == FAR_FUTURE
    assert days_after(datetime(9999, 12, 31, tzinfo=UTC), 10) == datetime(9999, 12, 31, tzinfo=UTC)
    now = datetime(2027, 1, 1, tzinfo=UTC)
    assert period_start("99999d", now, UTC, start) == start
    assert period_start("0d", now, UTC, start - timedelta(days=3)) == start


async def test_the_hourly_history_of_one_user(
    world: tuple[Database, Rounds, UserService, Clock, int],
) -> None:
    from vpn_manager.services.history import UsageHistory
    from vpn_manager.storage import accounting
    from vpn_manager.storage import users as user_repo

    db, _rounds, users, clock, server = world
    await users.add([UserCreate(name="alice"), UserCreate(name="bob")])
    async with db.session() as session:
        ids = await user_repo.ids_for(session, ["alice", "bob"])
        deltas = {ids["alice"]: (1, 2), ids["bob"]: (30, 40)}
        await accounting.add_usage(session, server, deltas, clock())
    history = UsageHistory(db)
    hour = clock().replace(minute=0, second=0, microsecond=0)
    assert await history.hours(None, None) == [
        (hour, "alice", "s", 1, 2),
        (hour, "bob", "s", 30, 40),
    ]
    assert await history.hours(None, None, user="bob") == [(hour, "bob", "s", 30, 40)]
    assert await history.hours(None, None, user="nobody") == []
