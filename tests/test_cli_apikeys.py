"""`vpn api-key create|list|revoke` and `vpn audit` as people and scripts use them: the secret
printed once and nowhere else, the error contract, and a `create` killed at any moment."""

from __future__ import annotations

import asyncio
import os
import pwd
import random
import signal
import sqlite3
import subprocess
import sys
import time
from contextlib import closing
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.cli_helpers import Cli, InProcessCli, Result, database_file, error_line, table_rows
from vpn_manager.services.apikeys import SECRET_PATTERN, ApiKeyService, digest
from vpn_manager.storage import Database

ME = f"cli:{pwd.getpwuid(os.getuid()).pw_name}"
KEY_FIELDS = {"name", "scope", "state", "created_at", "expires_at", "last_used_at", "revoked_at"}


def ok(result: Result) -> Result:
    assert result.code == 0, result
    assert "Traceback" not in result.output, result
    return result


def create(vpn: InProcessCli, name: str, *args: str) -> str:
    """Make a key; return its secret (stdout's one line)."""
    result = ok(vpn("api-key", "create", name, *args))
    assert result.stdout.count("\n") == 1, result
    secret = result.stdout.strip()
    assert SECRET_PATTERN.fullmatch(secret), result
    return secret


def authenticate(home: Path, secret: str) -> str | None:
    """The name of the key whose secret this is, as vpn web's API would find it."""

    async def find() -> str | None:
        async with Database(f"sqlite+aiosqlite:///{database_file(home)}") as db:
            key = await ApiKeyService(db).authenticate(secret)
            return key.name if key else None

    return asyncio.run(find())


def stored_bytes(home: Path) -> bytes:
    """The database file with its WAL and shared-memory files."""
    db = database_file(home)
    return b"".join(p.read_bytes() for p in db.parent.iterdir() if p.name.startswith(db.name))


# -- create -----------------------------------------------------------------------------------
def test_create_prints_the_secret_once_alone_on_stdout(vpn: InProcessCli) -> None:
    result = ok(vpn("api-key", "create", "ci", "--scope", "write", "--expires", "90d"))
    secret = result.stdout.strip()
    assert result.stdout == secret + "\n"
    assert SECRET_PATTERN.fullmatch(secret)
    assert "not shown again" in result.stderr
    assert secret not in result.stderr
    assert authenticate(vpn.home, secret) == "ci"
    # Never again: not in the listing, the audit, any format.
    for args in (
        ["api-key", "list"],
        ["api-key", "list", "--format", "json"],
        ["api-key", "list", "--format", "yaml"],
        ["api-key", "list", "--format", "plain"],
        ["audit"],
        ["audit", "--format", "json"],
        ["audit", "--format", "yaml"],
        ["audit", "--format", "plain"],
    ):
        shown = ok(vpn(*args)).output
        assert secret not in shown, args
        assert secret[5:20] not in shown, args
        assert digest(secret) not in shown, args


def test_create_as_json_gives_the_key_in_one_object(vpn: InProcessCli) -> None:
    result = ok(vpn("--format", "json", "api-key", "create", "ro", "--scope", "read"))
    data = result.json()
    assert set(data) == {"name", "scope", "expires_at", "key"}
    assert (data["name"], data["scope"], data["expires_at"]) == ("ro", "read", None)
    assert SECRET_PATTERN.fullmatch(data["key"])
    assert authenticate(vpn.home, data["key"]) == "ro"
    assert "not shown again" in result.stderr


def test_expiry_forms(vpn: InProcessCli) -> None:
    before = datetime.now(UTC)
    create(vpn, "span", "--scope", "read", "--expires", "90d")
    create(vpn, "day", "--scope", "read", "--expires", "2027-01-01")
    create(vpn, "never", "--scope", "read", "--expires", "never")
    keys = {k["name"]: k for k in ok(vpn("api-key", "list", "--format", "json")).json()}
    span = datetime.fromisoformat(keys["span"]["expires_at"])
    assert before + timedelta(days=90) <= span <= datetime.now(UTC) + timedelta(days=90)
    assert keys["day"]["expires_at"] == "2027-01-02T00:00:00Z"  # through that whole day (UTC)
    assert keys["never"]["expires_at"] is None


def test_the_database_keeps_only_hashes(vpn: InProcessCli) -> None:
    secrets = [create(vpn, f"k{index}", "--scope", "read") for index in range(3)]
    ok(vpn("api-key", "revoke", "k1"))
    stored = stored_bytes(vpn.home)
    for secret in secrets:
        assert digest(secret).encode() in stored
        assert secret.encode() not in stored
        assert secret[5:].encode() not in stored
    hashes = [row[2] for row in table_rows(database_file(vpn.home), "api_keys")]
    assert hashes == [digest(secret) for secret in secrets]


# -- list and revoke --------------------------------------------------------------------------
def test_list_as_table_and_json(vpn: InProcessCli) -> None:
    assert ok(vpn("api-key", "list")).stderr.startswith("No API keys yet")
    assert ok(vpn("api-key", "list", "--format", "json")).json() == []
    create(vpn, "ci", "--scope", "write")
    create(vpn, "ro", "--scope", "read", "--expires", "2099-12-31")
    ok(vpn("api-key", "revoke", "ro"))
    listed = ok(vpn("api-key", "list", "--format", "json")).json()
    assert [set(k) for k in listed] == [KEY_FIELDS, KEY_FIELDS]
    assert [(k["name"], k["scope"], k["state"]) for k in listed] == [
        ("ci", "write", "active"),
        ("ro", "read", "revoked"),
    ]
    lines = ok(vpn("api-key", "list")).stdout.splitlines()
    assert lines[0].split() == ["NAME", "SCOPE", "STATE", "CREATED", "EXPIRES", "LAST", "USED"]
    assert lines[1].split()[:3] == ["ci", "write", "active"]
    assert lines[1].split()[-2:] == ["never", "never"]
    assert lines[2].split()[:3] == ["ro", "read", "revoked"]
    assert "2100-01-01" in lines[2]  # the end of 2099-12-31, in UTC
    assert ok(vpn("api-key", "list", "--format", "plain")).stdout.startswith("ci\twrite\tactive\t")


def test_revoke_twice_says_so(vpn: InProcessCli) -> None:
    secret = create(vpn, "ci", "--scope", "write")
    first = ok(vpn("api-key", "revoke", "ci"))
    assert first.stdout == "Revoked the API key ci: it stops working at once.\n"
    assert authenticate(vpn.home, secret) is None
    again = ok(vpn("api-key", "revoke", "ci", "--format", "json")).json()
    assert again["changed"] is False
    assert again["state"] == "revoked"
    text = ok(vpn("api-key", "revoke", "ci")).stdout
    assert text.startswith("The API key ci was revoked already (at ")
    assert text.endswith("); nothing changed.\n")
    revokes = [e for e in ok(vpn("audit", "--format", "json")).json() if e["result"] == "ok"]
    assert [e["action"] for e in revokes] == ["api-key.revoke", "api-key.create"]
    # The name is free again.
    second = create(vpn, "ci", "--scope", "read")
    assert authenticate(vpn.home, second) == "ci"


# -- the audit log ----------------------------------------------------------------------------
def test_audit_lists_the_cli_changes_newest_first(vpn: InProcessCli) -> None:
    assert ok(vpn("audit")).stderr == "No audit entries yet.\n"
    create(vpn, "ci", "--scope", "write")
    error_line(vpn("api-key", "create", "ci", "--scope", "read"), 5)
    ok(vpn("api-key", "revoke", "ci"))
    error_line(vpn("api-key", "revoke", "nope"), 4)
    entries = ok(vpn("audit", "--format", "json")).json()
    assert [(e["actor"], e["action"], e["target"], e["result"]) for e in entries] == [
        (ME, "api-key.revoke", "nope", "NotFound: There is no API key named 'nope'."),
        (ME, "api-key.revoke", "ci", "ok"),
        (ME, "api-key.create", "ci", "Conflict: An API key named 'ci' exists already."),
        (ME, "api-key.create", "ci", "ok"),
    ]
    assert all(set(e) == {"at", "actor", "action", "target", "result"} for e in entries)
    table = ok(vpn("audit")).stdout.splitlines()
    assert table[0].split() == ["TIME", "ACTOR", "ACTION", "TARGET", "RESULT"]
    assert len(table) == 5
    assert [e["target"] for e in ok(vpn("audit", "--limit", "1", "-f", "json")).json()] == ["nope"]
    huge = ok(vpn("audit", "--limit", "9" * 40, "--format", "json")).json()
    assert len(huge) == 4
    assert ok(vpn("audit", "--actor", ME, "-f", "json")).json() == entries
    assert ok(vpn("audit", "--actor", "ci", "-f", "json")).json() == []
    assert ok(vpn("audit", "--actor", "ci")).stderr == "No audit entries match.\n"
    assert ok(vpn("audit", "--since", "7d", "-f", "json")).json() == entries
    tomorrow = (datetime.now(UTC) + timedelta(days=2)).date().isoformat()
    assert ok(vpn("audit", "--since", tomorrow, "-f", "json")).json() == []


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["--limit", "0"], 3, "Show at least one audit entry, not 0."),
        (["--limit", "-1"], 3, "Show at least one audit entry, not -1."),
        (["--since", "yesterday"], 3, "'yesterday' is not a date."),
        (["--since", "\u00b2d"], 3, "is not a date."),
        (["--since", "9" * 30 + "d"], 3, "reaches back more than 36500 days"),
        (["--since", "0001-01-01T00:00+05:00"], 3, "is not a date"),
    ],
)
def test_audit_refusals(vpn: InProcessCli, args: list[str], code: int, message: str) -> None:
    assert message in error_line(vpn("audit", *args), code)


def test_audit_limit_not_a_number_is_a_usage_error(vpn: InProcessCli) -> None:
    result = vpn("audit", "--limit", "many")
    assert result.code == 2, result
    assert "Traceback" not in result.output


# -- bad input --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["..", "--scope", "read"], 3, "'..' cannot name an API key"),
        (["a/b", "--scope", "read"], 3, "'a/b' cannot name an API key"),
        (["a\x1b[2Jb", "--scope", "read"], 3, "'a\\x1b[2Jb' cannot name an API key"),
        (["", "--scope", "read"], 3, "'' cannot name an API key"),
        (["x" * 65, "--scope", "read"], 3, "cannot name an API key"),
        (["ci", "--scope", "admin"], 3, "'admin' is not an API key scope."),
        (["ci", "--scope", "read", "--expires", "9" * 40 + "d"], 3, "2099-12-31 or before"),
        (["ci", "--scope", "read", "--expires", "2100-01-01"], 3, "2099-12-31 or before"),
        (
            ["ci", "--scope", "read", "--expires", "2020-01-01"],
            3,
            "'2020-01-01' is in the past: the key would expire at once.",
        ),
        (["ci", "--scope", "read", "--expires", "0d"], 3, "would expire at once"),
        (["ci", "--scope", "read", "--expires", "soon"], 3, "'soon' is not a date."),
    ],
)
def test_create_refusals(vpn: InProcessCli, args: list[str], code: int, message: str) -> None:
    assert message in error_line(vpn("api-key", "create", *args), code)
    assert table_rows(database_file(vpn.home), "api_keys") == []


def test_create_without_a_scope_makes_a_read_key(vpn: InProcessCli) -> None:
    secret = create(vpn, "ci")
    [key] = ok(vpn("api-key", "list", "--format", "json")).json()
    assert (key["name"], key["scope"]) == ("ci", "read")
    assert authenticate(vpn.home, secret) == "ci"


def test_revoke_unknown(vpn: InProcessCli) -> None:
    assert error_line(vpn("api-key", "revoke", "a\x1bb"), 4) == (
        "There is no API key named 'a\\x1bb'."
    )


# -- a real process ---------------------------------------------------------------------------
def test_create_list_revoke_in_a_real_process(cli: Cli) -> None:
    made = cli("api-key", "create", "ci", "--scope", "write")
    assert made.code == 0, made
    secret = made.stdout.strip()
    assert SECRET_PATTERN.fullmatch(secret)
    listed = cli("api-key", "list", "--format", "json")
    assert [k["name"] for k in listed.json()] == ["ci"]
    assert secret not in listed.stdout
    assert cli("api-key", "revoke", "ci").code == 0
    assert authenticate(cli.home, secret) is None
    help_text = cli("--help").stdout
    assert "api-key" in help_text
    assert "audit" in help_text


def test_create_killed_at_any_moment_leaves_a_consistent_database(cli: Cli) -> None:
    """kill -9 at a random moment of `api-key create`: the database stays whole, a key printed
    is a key stored (and its audit entry with it), and making the name again works or says
    Conflict in one sentence."""
    assert cli("api-key", "list").code == 0  # the database exists and is migrated
    started = time.monotonic()
    assert cli("api-key", "create", "timing", "--scope", "read").code == 0
    took = time.monotonic() - started
    rng = random.Random(16)
    for attempt in range(4):
        name = f"k{attempt}"
        proc = subprocess.Popen(
            [sys.executable, "-m", "vpn_manager", "api-key", "create", name, "--scope", "read"],
            env=cli.env(),
            cwd=cli.tmp_path,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        time.sleep(rng.uniform(0.3, 1.1) * took)
        proc.send_signal(signal.SIGKILL)
        out, _ = proc.communicate(timeout=60)
        printed = out.decode().strip()
        db = database_file(cli.home)
        with closing(sqlite3.connect(db)) as conn:
            assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
            rows = conn.execute(
                "SELECT key_hash FROM api_keys WHERE name = ? AND revoked_at IS NULL", (name,)
            ).fetchall()
            entries = conn.execute(
                "SELECT count(*) FROM audit_log WHERE target = ? AND result = 'ok'", (name,)
            ).fetchone()
        assert len(rows) <= 1
        assert entries == (len(rows),)  # the key and its entry commit together
        if printed:
            assert rows == [(digest(printed),)]
            assert authenticate(cli.home, printed) == name
        again = cli("api-key", "create", name, "--scope", "read")
        if rows:
            assert error_line(again, 5) == f"An API key named {name!r} exists already."
            assert cli("api-key", "revoke", name).code == 0
            again = cli("api-key", "create", name, "--scope", "read")
        assert again.code == 0, again
        assert authenticate(cli.home, again.stdout.strip()) == name


def test_ctrl_c_during_create_exits_130(cli: Cli) -> None:
    """Ctrl-C while `create` waits for the database: "Interrupted.", 130, no key made."""
    assert cli("api-key", "list").code == 0
    db = database_file(cli.home)
    with closing(sqlite3.connect(db, isolation_level=None)) as holder:
        holder.execute("BEGIN IMMEDIATE")  # another writer: create waits for its turn
        proc = subprocess.Popen(
            [sys.executable, "-m", "vpn_manager", "api-key", "create", "ci", "--scope", "read"],
            env=cli.env({"VPN_DATABASE__BUSY_TIMEOUT_MS": "5000"}),
            cwd=cli.tmp_path,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            deadline = time.monotonic() + 30
            while not _has_open(proc.pid, db):  # past start-up: it has the database open
                assert proc.poll() is None, proc.communicate()
                assert time.monotonic() < deadline, "create never opened the database"
                time.sleep(0.05)
            time.sleep(0.5)
            proc.send_signal(signal.SIGINT)
            out, err = proc.communicate(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        holder.execute("ROLLBACK")
    assert proc.returncode == 130, err
    assert out == ""
    assert err.strip() == "Interrupted.", err
    assert table_rows(db, "api_keys") == []


def _has_open(pid: int, file: Path) -> bool:
    """Whether process `pid` has `file` open."""
    try:
        return any(os.readlink(fd) == str(file) for fd in Path(f"/proc/{pid}/fd").iterdir())
    except OSError:  # the process is gone, or a descriptor closed while listed
        return False
