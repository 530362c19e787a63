"""`vpn user grant|revoke NAME... --server S...`: many users on many servers in one command, all
or nothing, one apply per server (issue 17). Servers here are real sing-box Shadowsocks
processes on 127.0.0.1, whose users are read back from the engine's own ssm-api."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.cli_helpers import (
    InProcessCli,
    Result,
    database_file,
    error_line,
    table_rows,
)
from tests.test_cli_input import free_port, install_ss, ok


def engine_users(vpn: InProcessCli, server: str) -> set[str]:
    """The user names (user-<id>) the running engine holds, asked of its ssm-api."""
    config = json.loads((vpn.home / "state" / "rendered" / server / "config.json").read_text())
    (ssm,) = [s for s in config["services"] if s["type"] == "ssm-api"]
    conn = http.client.HTTPConnection("127.0.0.1", int(ssm["listen_port"]), timeout=10)
    try:
        conn.request("GET", "/server/v1/users")
        answer = conn.getresponse()
        assert answer.status == 200
        return {u["username"] for u in json.loads(answer.read())["users"]}
    finally:
        conn.close()


def ids(vpn: InProcessCli, *names: str) -> set[str]:
    """The engine-side names of these users."""
    rows = table_rows(database_file(vpn.home))
    return {f"user-{row[0]}" for row in rows if row[1] in names}


def grants(vpn: InProcessCli) -> set[tuple[str, str]]:
    """(user, server) of every credential in the database."""
    users = {row[0]: row[1] for row in table_rows(database_file(vpn.home))}
    rows = table_rows(database_file(vpn.home), "user_credentials")
    columns = _columns(vpn, "user_credentials")
    return {(users[row[columns.index("user_id")]], row[columns.index("server")]) for row in rows}


def _columns(vpn: InProcessCli, table: str) -> list[str]:
    import sqlite3

    with sqlite3.connect(database_file(vpn.home)) as db:
        return [c[1] for c in db.execute(f"PRAGMA table_info({table})")]


def applied(result: Result) -> list[str]:
    return [line for line in result.stderr.splitlines() if ": applied" in line]


@pytest.fixture
def two(vpn: InProcessCli) -> InProcessCli:
    """Users alice, bob, carol, dave (disabled) and two running servers, s1 and s2."""
    install_ss(vpn, "s1")
    install_ss(vpn, "s2")
    ok(vpn("user", "add", "alice", "bob", "carol"))
    ok(vpn("user", "add", "dave", "--disabled"))
    return vpn


def test_users_times_servers_in_one_command_one_apply_per_server(two: InProcessCli) -> None:
    vpn = two
    result = ok(
        vpn("--format", "json", "user", "grant", "alice", "bob", "--server", "s1", "--server", "s2")
    )
    assert result.json() == [
        {"name": name, "server": server, "granted": True}
        for server in ("s1", "s2")
        for name in ("alice", "bob")
    ]
    assert applied(result) == ["s1: applied live.", "s2: applied live."]  # once each
    assert grants(vpn) == {(u, s) for u in ("alice", "bob") for s in ("s1", "s2")}
    for server in ("s1", "s2"):
        assert engine_users(vpn, server) == ids(vpn, "alice", "bob")

    # Pairs that have access already are not errors: reported, and only the new ones applied.
    result = ok(vpn("user", "grant", "alice", "bob", "carol", "--server", "s1", "--server", "s2"))
    assert result.stdout == (
        "s1: 1 user given access; 2 users already had access.\n"
        "s2: 1 user given access; 2 users already had access.\n"
    )
    assert engine_users(vpn, "s1") == ids(vpn, "alice", "bob", "carol")


def test_the_first_form_works_as_before(two: InProcessCli) -> None:
    vpn = two
    result = ok(vpn("user", "grant", "alice", "s1"))
    assert result.stdout == "alice can now use s1: vpn user link alice --server s1\n"
    assert applied(result) == ["s1: applied live."]
    assert ok(vpn("user", "grant", "alice", "--server", "s1")).stdout == (
        "alice already had access to s1.\n"
    )
    assert ok(vpn("user", "revoke", "alice", "s1")).stdout == "alice no longer has access to s1.\n"
    assert engine_users(vpn, "s1") == set()
    assert (
        error_line(vpn("user", "revoke", "alice", "s1"), 4) == "User 'alice' is not on server 's1'."
    )


def test_selectors(two: InProcessCli) -> None:
    vpn = two
    result = ok(vpn("--format", "json", "user", "grant", "--all-users", "--server", "s1"))
    assert {(p["name"], p["granted"]) for p in result.json()} == {
        (name, True) for name in ("alice", "bob", "carol", "dave")
    }
    assert engine_users(vpn, "s1") == ids(vpn, "alice", "bob", "carol")  # dave is disabled

    # --status filters the selection, names or everyone; the first form takes --all-users too.
    result = ok(
        vpn("--format", "json", "user", "grant", "--all-users", "--status", "disabled", "s2")
    )
    assert result.json() == [{"name": "dave", "server": "s2", "granted": True}]
    result = ok(
        vpn("--format", "json", "user", "revoke", "alice", "dave", "--status", "active", "s1")
    )
    assert result.json() == [{"name": "alice", "server": "s1", "revoked": True}]
    assert engine_users(vpn, "s1") == ids(vpn, "bob", "carol")

    # Revoking from everyone: those without access are reported, not refused.
    result = ok(vpn("--format", "json", "user", "revoke", "--all-users", "--server", "s1"))
    assert {(p["name"], p["revoked"]) for p in result.json()} == {
        ("alice", False),
        ("bob", True),
        ("carol", True),
        ("dave", True),
    }
    assert engine_users(vpn, "s1") == set()
    assert grants(vpn) == {("dave", "s2")}


REFUSED = [
    (["--all-users", "--status", "expired", "--server", "s1"], 3, "No user of the selection"),
    (["alice", "dave", "--status", "over-quota", "s1"], 3, "No user of the selection"),
    (["alice", "--all-users", "--server", "s1"], 3, "Give user names or --all-users"),
    (["alice", "bob"], 4, "There is no server named 'bob'."),
    (["alice"], 3, "Name the users and the server."),
    (["alice", "bob", "--server", "s1", "--server", "nowhere"], 4, "no server named"),
    (["alice", "nobody", "--server", "s1", "--server", "s2"], 4, "no user named 'nobody'"),
    (["alice", "alice", "--server", "s1"], 3, "'alice' is named more than once."),
    (["alice", "--server", "s1", "--server", "s1"], 3, "'s1' is named more than once."),
    (["alice", "--status", "gone", "--server", "s1"], 3, "invalid status 'gone'"),
    (["alice", "bob", "--server", "s1", "--password", "pw"], 3, "one user only"),
    (["alice", "--server", "s1", "--password", "pw"], 3, ""),  # not a proxy
]


def test_refused_selections_change_nothing(two: InProcessCli) -> None:
    vpn = two
    ok(vpn("user", "grant", "bob", "s2"))
    before = grants(vpn)
    for args, code, message in REFUSED:
        assert message in error_line(vpn("user", "grant", *args), code), args
        assert grants(vpn) == before, args
    assert engine_users(vpn, "s1") == set()
    assert engine_users(vpn, "s2") == ids(vpn, "bob")


def test_revoke_refuses_when_no_one_has_access(two: InProcessCli) -> None:
    vpn = two
    message = error_line(vpn("user", "revoke", "alice", "bob", "--server", "s1"), 4)
    assert grants(vpn) == set()
    assert message == "None of these users is on any of these servers: nothing to revoke."


def test_one_failing_server_undoes_every_server(vpn: InProcessCli) -> None:
    """s2's engine died and another program took its port: the grant reaches s1 live, then
    fails on s2, and is taken back from s1 and the database."""
    install_ss(vpn, "s1")
    port = install_ss(vpn, "s2", free_port())
    ok(vpn("user", "add", "alice", "bob", "carol"))
    ok(vpn("user", "grant", "carol", "--server", "s1"))
    pid = int((vpn.home / "state" / "run" / "s2.pid").read_text())
    os.kill(pid, signal.SIGKILL)
    _wait_gone(pid)
    with _squat(port):
        result = vpn("user", "grant", "alice", "bob", "--server", "s1", "--server", "s2")
    assert error_line(result, 8).startswith("The engine for s2 exited")
    assert grants(vpn) == {("carol", "s1")}
    assert engine_users(vpn, "s1") == ids(vpn, "carol")


@contextmanager
def _squat(port: int) -> Iterator[None]:
    """Listen on `port` as another program would, once the killed engine has let it go."""
    deadline = time.monotonic() + 10
    with socket.socket() as squatter:
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        while True:
            try:
                squatter.bind(("127.0.0.1", port))
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        squatter.listen()
        yield


def _wait_gone(pid: int) -> None:
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        if Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z":
            return  # a zombie: gone but for its parent's wait
        time.sleep(0.02)
    raise AssertionError(f"{pid} did not end")
