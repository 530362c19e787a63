"""`vpn user update` and `enable` hold users to their limits at once, on a real SQLite database:
quotas raised or lowered, expiries extended or set in the past, several users at once (all or
none), and USED/QUOTA read against the current period. The same with running engines:
tests/e2e/test_accounting.py."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.cli_helpers import InProcessCli, Result, database_file, error_line, table_rows


def ok(result: Result) -> Result:
    assert result.code == 0, result
    assert "Traceback" not in result.output, result
    return result


def shown(vpn: InProcessCli, name: str) -> dict[str, Any]:
    data: dict[str, Any] = ok(vpn("user", "show", name, "--format", "json")).json()
    return data


def moment(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def counted(vpn: InProcessCli, name: str, period: int, lifetime: int) -> None:
    """Usage as the service's traffic count leaves it: `period` bytes in this period (download),
    `lifetime` in all."""
    with sqlite3.connect(database_file(vpn.home)) as conn:
        conn.execute(
            "UPDATE users SET period_download_bytes = ?, download_bytes = ? WHERE name = ?",
            (period, lifetime, name),
        )


@pytest.fixture
def alice(vpn: InProcessCli) -> InProcessCli:
    """alice with a 200MB quota that never resets, 300MB used."""
    ok(vpn("user", "add", "alice", "--quota", "200MB"))
    counted(vpn, "alice", 300_000_000, 300_000_000)
    return vpn


def test_the_list_shows_the_periods_usage_and_show_both(vpn: InProcessCli) -> None:
    ok(vpn("user", "add", "alice", "--quota", "200MB", "--reset", "monthly"))
    counted(vpn, "alice", 100_000_000, 1_000_000_000)  # right after a reset: 100MB of 1GB
    listed = ok(vpn("user", "list")).stdout.splitlines()
    assert listed[1].split()[:3] == ["alice", "active", "100MB/200MB"]
    plain = ok(vpn("user", "list", "--format", "plain")).stdout
    assert plain.split("\t")[2] == "100MB/200MB"
    lines = ok(vpn("user", "show", "alice")).stdout.splitlines()
    assert "used_bytes             1GB" in lines
    assert "period_used_bytes      100MB" in lines
    data = shown(vpn, "alice")
    assert (data["used_bytes"], data["period_used_bytes"]) == (1_000_000_000, 100_000_000)


def test_lowering_a_quota_under_the_usage_limits_at_once_and_raising_it_lets_back_in(
    alice: InProcessCli,
) -> None:
    ok(alice("user", "update", "alice", "--quota", "250MB"))
    assert shown(alice, "alice")["status"] == "over-quota"  # 300MB used: no round needed
    ok(alice("user", "update", "alice", "--quota", "1GB"))
    assert shown(alice, "alice")["status"] == "active"
    ok(alice("user", "update", "alice", "--quota", "100MB"))
    ok(alice("user", "update", "alice", "--quota", "0"))  # unlimited
    assert shown(alice, "alice")["status"] == "active"


def test_enabling_a_user_holds_them_to_their_limits(alice: InProcessCli) -> None:
    ok(alice("user", "disable", "alice"))
    ok(alice("user", "enable", "alice"))
    assert shown(alice, "alice")["status"] == "over-quota"  # over quota: not let in by enable
    ok(alice("user", "reset-usage", "alice"))
    assert shown(alice, "alice")["status"] == "active"


def test_extend_counts_from_the_later_of_now_and_the_expiry(vpn: InProcessCli) -> None:
    ok(vpn("user", "add", "alice", "bob", "--expires", "10d"))
    expiry = moment(shown(vpn, "alice")["expires_at"])
    ok(vpn("user", "update", "alice", "bob", "--extend", "30d"))
    for name in ("alice", "bob"):
        assert moment(shown(vpn, name)["expires_at"]) == expiry + timedelta(days=30)
    # Expired a year ago: 2w from now, not from then.
    ok(vpn("user", "update", "alice", "--expires", "2025-01-01", "--force"))
    assert shown(vpn, "alice")["status"] == "expired"
    before = datetime.now(UTC)
    data = ok(vpn("user", "update", "alice", "--extend", "2w", "--format", "json")).json()
    assert data["status"] == "active"
    extended = moment(data["expires_at"])
    assert before + timedelta(weeks=2) <= extended <= datetime.now(UTC) + timedelta(weeks=2)


def test_an_expiry_in_the_past_is_refused_or_with_force_expires_at_once(
    vpn: InProcessCli,
) -> None:
    ok(vpn("user", "add", "alice"))
    before = table_rows(database_file(vpn.home))
    refused = vpn("user", "update", "alice", "--expires", "2020-01-01")
    assert "in the past" in error_line(refused, 3)
    assert "--force" in refused.stderr
    assert table_rows(database_file(vpn.home)) == before
    forced = ok(vpn("user", "update", "alice", "--expires", "2020-01-01", "--force", "-f", "json"))
    assert forced.json()["status"] == "expired"
    assert shown(vpn, "alice")["status"] == "expired"
    # `vpn user add` has no --force: the past is refused there, and through the API's create.
    assert "in the past" in error_line(vpn("user", "add", "bob", "--expires", "2020-01-01"), 3)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--extend", "30d", "--expires", "10d"], "either --expires or --extend"),
        (["--extend", "soon"], "not a length of time"),
        (["--extend", "0d"], "no time at all"),
        (["--extend", "99999999999999999999999d"], "longer than 36500 days"),
        (["--extend", "36000d"], "past 2099-12-31"),
        (["--plan", "nope"], "no plan named 'nope'"),
        (["--plan", "a\x1b[2Jb"], "invalid plan"),
        (["--name", "carol"], "one user at a time"),
    ],
)
def test_refused_updates_change_nothing(vpn: InProcessCli, args: list[str], message: str) -> None:
    ok(vpn("user", "add", "alice", "bob", "--expires", "2090-01-01"))
    before = table_rows(database_file(vpn.home))
    result = vpn("user", "update", "alice", "bob", *args)
    assert message in error_line(result, 4 if "no plan" in message else 3)
    assert "\x1b" not in result.output
    assert table_rows(database_file(vpn.home)) == before


def test_several_users_are_updated_all_or_none(vpn: InProcessCli) -> None:
    ok(vpn("user", "add", "alice", "bob"))
    before = table_rows(database_file(vpn.home))
    missing = vpn("user", "update", "alice", "nobody", "bob", "--quota", "5GB")
    assert "nobody" in error_line(missing, 4)
    assert table_rows(database_file(vpn.home)) == before
    assert "more than once" in error_line(vpn("user", "update", "bob", "bob", "--quota", "1GB"), 3)
    done = ok(vpn("user", "update", "alice", "bob", "--quota", "5GB"))
    assert [line.split()[2] for line in done.stdout.splitlines()[1:]] == ["0B/5GB", "0B/5GB"]
