"""`vpn plan …` and `vpn user add|update --plan` on a real SQLite database: a plan's limits given
to users (the command's own options win), given again with its days added to the expiry, and a
plan in use kept from removal unless forced."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from alembic import command
from sqlalchemy import Connection, text

from tests.cli_helpers import InProcessCli, Result, database_file, error_line, table_rows
from tests.conftest import FixedClock, open_database
from vpn_manager.models import PlanCreate, UserCreate, UserUpdate
from vpn_manager.services.plans import PlanService
from vpn_manager.services.users import UserService
from vpn_manager.storage import migrate


def ok(result: Result) -> Result:
    assert result.code == 0, result
    assert "Traceback" not in result.output, result
    return result


def shown(vpn: InProcessCli, name: str) -> dict[str, Any]:
    data: dict[str, Any] = ok(vpn("user", "show", name, "--format", "json")).json()
    return data


def moment(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


@pytest.fixture
def monthly(vpn: InProcessCli) -> InProcessCli:
    ok(vpn("plan", "add", "monthly", "--quota", "50GB", "--period", "monthly", "--days", "30"))
    return vpn


def test_plans_are_added_listed_shown_and_changed(monthly: InProcessCli) -> None:
    listed = ok(monthly("plan", "list")).stdout.splitlines()
    assert listed[0].split() == ["NAME", "QUOTA", "PERIOD", "DAYS", "DEVICES", "USERS"]
    assert listed[1].split() == ["monthly", "50GB", "monthly", "30", "unlimited", "0"]
    data = ok(monthly("plan", "show", "monthly", "--format", "json")).json()
    assert (data["quota_bytes"], data["reset_period"], data["days"]) == (50 * 10**9, "monthly", 30)
    assert data["holders"] == []
    changed = ok(
        monthly("plan", "update", "monthly", "--quota", "0", "--devices", "3", "-f", "json")
    )
    assert (changed.json()["quota_bytes"], changed.json()["device_limit"]) == (None, 3)
    assert changed.json()["days"] == 30  # only what was given changes
    assert "already exists" in error_line(monthly("plan", "add", "monthly"), 5)
    assert "Nothing to change" in error_line(monthly("plan", "update", "monthly"), 3)
    assert "no plan named 'weekly'" in error_line(monthly("plan", "show", "weekly"), 4)
    assert ok(monthly("plan", "list", "-f", "json")).json()[0]["name"] == "monthly"


HOSTILE_NAMES = [
    "a b",
    "..",
    ".",
    "a/b",
    "../x",
    "x" * 65,
    "x" * 10_000,
    "bad\x1b[31m",
    "tab\there",
    "new\nline",
    "bell\x07",
    "ünïcode",
]


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_hostile_plan_names_are_refused(vpn: InProcessCli, name: str) -> None:
    """One sentence (a long name cut, control characters escaped), exit 3, nothing stored; a
    lookup by such a name finds nothing and says so in one short sentence."""
    result = vpn("plan", "add", name, "--quota", "1GB")
    assert "invalid name" in error_line(result, 3)
    assert "\x1b" not in result.output
    assert "\x07" not in result.output
    assert len(result.stderr) < 300
    assert table_rows(database_file(vpn.home), "plans") == []
    ok(vpn("plan", "add", "kept", "--quota", "1GB"))
    before = table_rows(database_file(vpn.home), "plans")
    for words in (["show", name], ["update", name, "--days", "3"], ["remove", name]):
        looked_up = vpn("plan", *words)
        assert "no plan named" in error_line(looked_up, 4)
        assert len(looked_up.stderr) < 300
        assert "\x1b" not in looked_up.output
    assert table_rows(database_file(vpn.home), "plans") == before


@pytest.mark.parametrize(
    ("option", "value", "words"),
    [
        ("--quota", str(10**30), "more than the largest quota"),
        ("--quota", "-1", "not a data size"),
        ("--quota", "1e400GB", "data size"),
        ("--days", "99999999", "more than the largest number of days, 36500"),
        ("--days", str(10**30), "more than the largest number of days"),
        ("--days", "9" * 5000, "number of days"),
        ("--days", "-1", "not a valid number of days"),
        ("--devices", str(10**30), "more than the largest device limit"),
        ("--period", "99999999d", "not a reset period"),
    ],
)
def test_hostile_plan_numbers_are_refused(
    vpn: InProcessCli, option: str, value: str, words: str
) -> None:
    """Added or updated: one sentence, exit 3, nothing stored or changed."""
    assert words in error_line(vpn("plan", "add", "p", option, value), 3)
    assert table_rows(database_file(vpn.home), "plans") == []
    ok(vpn("plan", "add", "q", "--quota", "1GB", "--days", "30"))
    before = table_rows(database_file(vpn.home), "plans")
    changed = vpn("plan", "update", "q", option, value)
    assert words in error_line(changed, 3)
    assert len(changed.stderr) < 300
    assert table_rows(database_file(vpn.home), "plans") == before


def test_bad_plan_values_are_refused(vpn: InProcessCli) -> None:
    assert "reset period" in error_line(vpn("plan", "add", "p", "--period", "hourly"), 3)
    assert "largest number of days" in error_line(vpn("plan", "add", "p", "--days", "99999"), 3)
    assert "data size" in error_line(vpn("plan", "add", "p", "--quota", "lots"), 3)


def test_a_plan_gives_its_limits_and_the_commands_options_win(monthly: InProcessCli) -> None:
    start = datetime.now(UTC)
    ok(monthly("user", "add", "alice", "bob", "--plan", "monthly"))
    ok(monthly("user", "add", "carol", "--plan", "monthly", "--quota", "1GB", "--expires", "5d"))
    for name in ("alice", "bob"):
        user = shown(monthly, name)
        assert (user["quota_bytes"], user["reset_period"], user["plan"]) == (
            50 * 10**9,
            "monthly",
            "monthly",
        )
        expires = moment(user["expires_at"])
        assert start + timedelta(days=30) <= expires <= datetime.now(UTC) + timedelta(days=30)
    carol = shown(monthly, "carol")
    assert (carol["quota_bytes"], carol["reset_period"]) == (10**9, "monthly")
    assert moment(carol["expires_at"]) < start + timedelta(days=6)
    plan = ok(monthly("plan", "show", "monthly", "-f", "json")).json()
    assert (plan["users"], plan["holders"]) == (3, ["alice", "bob", "carol"])


def test_giving_a_plan_again_extends_by_its_days(monthly: InProcessCli) -> None:
    ok(monthly("user", "add", "alice", "--quota", "1GB", "--expires", "10d"))
    expiry = moment(shown(monthly, "alice")["expires_at"])
    ok(monthly("plan", "update", "monthly", "--devices", "2"))
    ok(monthly("user", "update", "alice", "--plan", "monthly"))
    alice = shown(monthly, "alice")
    assert (alice["quota_bytes"], alice["device_limit"], alice["plan"]) == (
        50 * 10**9,
        2,
        "monthly",
    )
    assert moment(alice["expires_at"]) == expiry + timedelta(days=30)
    # An explicit --extend wins over the plan's days; '' clears the plan, keeping the limits.
    ok(monthly("user", "update", "alice", "--plan", "monthly", "--extend", "1d"))
    assert moment(shown(monthly, "alice")["expires_at"]) == expiry + timedelta(days=31)
    ok(monthly("user", "update", "alice", "--plan", ""))
    alice = shown(monthly, "alice")
    assert (alice["plan"], alice["quota_bytes"]) == (None, 50 * 10**9)


def test_a_plan_in_use_is_removed_only_with_force(monthly: InProcessCli) -> None:
    ok(monthly("user", "add", "alice", "bob", "--plan", "monthly"))
    before = table_rows(database_file(monthly.home), "plans")
    refused = monthly("plan", "remove", "monthly")
    assert "held by 2 users: alice, bob" in error_line(refused, 5)
    assert "--force" in refused.stderr
    assert table_rows(database_file(monthly.home), "plans") == before
    removed = ok(monthly("plan", "remove", "monthly", "--force"))
    assert removed.stdout == "Removed plan monthly. 2 users kept their limits.\n"
    alice = shown(monthly, "alice")
    assert (alice["plan"], alice["quota_bytes"]) == (None, 50 * 10**9)
    assert ok(monthly("plan", "list", "-f", "json")).json() == []
    assert "no plan named" in error_line(monthly("plan", "remove", "monthly"), 4)
    ok(monthly("plan", "add", "unused"))
    assert ok(monthly("plan", "remove", "unused")).stdout == "Removed plan unused.\n"


async def test_migration_0007_goes_down_and_up(sqlite_url: str, clock: FixedClock) -> None:
    """Down to 0006 the plans and users' references go, the users stay; up again they can
    hold plans again."""

    def down_and_up(connection: Connection) -> list[str]:
        config = migrate.alembic_config(connection)
        command.downgrade(config, "0006")
        columns = [row[1] for row in connection.execute(text("PRAGMA table_info(users)"))]
        command.upgrade(config, "head")
        return columns

    async with open_database(sqlite_url) as db:
        await PlanService(db, clock).add(PlanCreate(name="gold", quota_bytes=10**9))
        await UserService(db, clock=clock).add([UserCreate(name="alice", plan="gold")])
        async with db.engine.begin() as conn:
            assert "plan_id" not in await conn.run_sync(down_and_up)
        alice = await UserService(db, clock=clock).get("alice")
        assert (alice.name, alice.quota_bytes, alice.plan) == ("alice", 10**9, None)
        assert await PlanService(db, clock).list() == []
        await PlanService(db, clock).add(PlanCreate(name="gold"))
        assert (await UserService(db, clock=clock).update("alice", UserUpdate(plan="gold"))).plan
