"""Names that start with '-': refused with one sentence wherever a name is made (user, plan,
server, proxy, API key, a rename, an import), and still usable after `--` where an older
version made one."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.cli_helpers import (
    InProcessCli,
    Result,
    database_file,
    error_line,
    stopped_server_row,
    table_rows,
)


def ok(result: Result) -> Result:
    assert result.code == 0, result
    return result


TABLES = ("users", "servers", "plans", "api_keys")


def snapshot(home: Path) -> dict[str, list[tuple[object, ...]]]:
    return {table: table_rows(database_file(home), table) for table in TABLES}


@pytest.mark.parametrize("name", ["-x", "--x", "-", "-.."])
@pytest.mark.parametrize(
    "args",
    [
        ["user", "add", "--", "{}"],
        ["user", "update", "alice", "--name={}"],
        ["plan", "add", "--", "{}"],
        ["server", "install", "shadowsocks", "--name={}", "--port", "18000"],
        ["proxy", "add", "http", "--name={}", "--port", "18001"],
        ["api-key", "create", "--", "{}"],
    ],
)
def test_a_name_starting_with_a_dash_is_refused(
    vpn: InProcessCli, args: list[str], name: str
) -> None:
    ok(vpn("user", "add", "alice"))
    before = snapshot(vpn.home)
    result = vpn(*(arg.replace("{}", name) for arg in args))
    message = error_line(result, 3)
    assert "cannot start with '-'" in message or "use 1 to 64" in message, message
    assert snapshot(vpn.home) == before
    assert not (vpn.home / "data" / "keys" / name).exists()


def test_an_import_refuses_a_new_user_starting_with_a_dash(vpn: InProcessCli) -> None:
    ok(vpn("user", "add", "alice"))
    before = snapshot(vpn.home)
    records = json.dumps([{"name": "bob"}, {"name": "-x"}])
    (vpn.tmp_path / "users.json").write_text(records, encoding="utf-8")
    for dry in ([], ["--dry-run"]):
        result = vpn("user", "import", str(vpn.tmp_path / "users.json"), *dry)
        assert "cannot start with '-'" in error_line(result, 3)
        assert snapshot(vpn.home) == before


def rename(home: Path, table: str, old: str, new: str) -> None:
    """What an older version allowed, made directly in the database."""
    with sqlite3.connect(database_file(home)) as conn:
        assert conn.execute(f"UPDATE {table} SET name = ? WHERE name = ?", (new, old)).rowcount
    conn.close()


def add_server_row(home: Path, name: str) -> None:
    from vpn_manager.storage import Database

    async def add() -> None:
        db = Database(f"sqlite+aiosqlite:///{database_file(home)}")
        await db.open()
        try:
            async with db.session() as session:
                session.add(stopped_server_row(datetime.now(UTC), name=name, port=18002))
        finally:
            await db.close()

    asyncio.run(add())


def test_names_an_older_version_made_still_work_after_a_double_dash(vpn: InProcessCli) -> None:
    ok(vpn("user", "add", "x", "alice"))
    ok(vpn("plan", "add", "p", "--quota", "1GB"))
    rename(vpn.home, "users", "x", "-x")
    rename(vpn.home, "plans", "p", "-p")
    add_server_row(vpn.home, "-s")
    assert ok(vpn("--format", "json", "user", "show", "--", "-x")).json()["name"] == "-x"
    ok(vpn("user", "update", "--note", "kept", "--", "-x"))
    listed = ok(vpn("--format", "json", "server", "list")).json()
    assert [server["name"] for server in listed] == ["-s"]
    ok(vpn("user", "update", "alice", "--plan=-p"))
    ok(vpn("plan", "remove", "--force", "--", "-p"))
    ok(vpn("user", "delete", "--yes", "--", "-x"))
    ok(vpn("server", "remove", "--yes", "--", "-s"))
    assert [row[1] for row in table_rows(database_file(vpn.home), "users")] == ["alice"]
    assert table_rows(database_file(vpn.home), "servers") == []
    assert table_rows(database_file(vpn.home), "plans") == []
    # A user renamed away from such a name takes a name of the new rules.
    ok(vpn("user", "add", "y"))
    rename(vpn.home, "users", "y", "-y")
    ok(vpn("user", "update", "--name", "y2", "--", "-y"))
    assert ok(vpn("--format", "json", "user", "show", "y2")).json()["name"] == "y2"
