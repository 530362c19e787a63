"""Shadowsocks users in bulk, end to end: batches pushed live over sing-box's ssm-api (held and
applied at once for 2022 ciphers, pipelined for the others), a restart that starts with every
user from ssm-api's cache file and counts no byte twice, changes that are done already, and many
commands changing one server's users at once."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import http.client
import json
import os
import random
import secrets
import sqlite3
import stat
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import (
    Vpn,
    curl_via,
    install_singbox,
    link_of,
    singbox_client,
    ss_local,
)
from tests.e2e.net import BACKEND_PAGE, Stream
from vpn_manager.engines.singbox.ssm import HOLD_USERS, SsmApi
from vpn_manager.paths import Paths
from vpn_manager.storage import Database

PAGE = BACKEND_PAGE.decode()
BATCH = [f"u{i:03d}" for i in range(1, 301)]


def rendered(vpn: Vpn, server: str) -> Path:
    return vpn.home / "state" / "rendered" / server


def ssm_port(vpn: Vpn, server: str) -> int:
    config = json.loads((rendered(vpn, server) / "config.json").read_text())
    (service,) = [s for s in config["services"] if s["type"] == "ssm-api"]
    return int(service["listen_port"])


def ssm_get(port: int, path: str) -> Any:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", f"/server/v1{path}")
        answer = conn.getresponse()
        assert answer.status == 200, (answer.status, answer.read())
        return json.loads(answer.read())
    finally:
        conn.close()


def engine_users(vpn: Vpn, server: str) -> dict[str, str]:
    """username → key, as the running engine's ssm-api holds them."""
    listed = ssm_get(ssm_port(vpn, server), "/users")["users"]
    return {u["username"]: u.get("uPSK", "") for u in listed}


def pid(vpn: Vpn, server: str) -> int:
    status = vpn.json("server", "status", server)
    assert isinstance(status, dict)
    assert status["healthy"], status
    return int(status["pid"])


def user_ids(vpn: Vpn) -> dict[str, str]:
    """user name → the engine-side name (Client.email, "user-<id>"), from the database."""
    with contextlib.closing(sqlite3.connect(vpn.home / "data" / "vpn.db")) as db:
        return {name: f"user-{uid}" for uid, name in db.execute("SELECT id, name FROM users")}


def database_users(vpn: Vpn, server: str) -> dict[str, str]:
    """The server's users as the database has them: engine-side name → key."""
    query = "SELECT user_id, secret FROM user_credentials WHERE server = ?"
    with contextlib.closing(sqlite3.connect(vpn.home / "data" / "vpn.db")) as db:
        rows = db.execute(query, (server,)).fetchall()
    return {f"user-{uid}": json.loads(secret)["password"] for uid, secret in rows}


def downloaded(vpn: Vpn, name: str) -> int:
    data = vpn.json("user", "show", name)
    assert isinstance(data, dict)
    return int(data["download_bytes"])


@pytest.mark.parametrize("method", ["2022-blake3-aes-128-gcm", "aes-256-gcm"])
def test_a_batch_is_added_live(vpn: Vpn, backend: int, tmp_path: Path, method: str) -> None:
    """300 users in one command on a running server: same engine process, alice's open
    download keeps flowing, every user is in the engine, and the last one gets through."""
    server = install_singbox(vpn, "shadowsocks", "ss", "--method", method)
    vpn.ok("user", "add", "alice", "--server", server.name)
    before = pid(vpn, server.name)
    with singbox_client(link_of(vpn, "alice", server.name), tmp_path / "alice") as alice:
        curl_via(alice, f"http://127.0.0.1:{backend}/", attempts_for=5)
        stream = Stream(alice, backend)
        try:
            assert stream.flowing()
            added = vpn.ok("user", "add", *BATCH, "--server", server.name)
            assert "applied live" in added.stderr
            assert stream.flowing(), "the batch disturbed alice's open download"
            assert stream.ended is None
        finally:
            stream.close()
    assert pid(vpn, server.name) == before
    ids = user_ids(vpn)
    held = engine_users(vpn, server.name)
    assert set(held) == {ids[name] for name in ["alice", *BATCH]}
    assert held == database_users(vpn, server.name)
    last = link_of(vpn, BATCH[-1], server.name)
    if method.startswith("2022"):
        with singbox_client(last, tmp_path / "last") as socks:
            assert curl_via(socks, f"http://127.0.0.1:{backend}/", attempts_for=5) == PAGE
    else:
        with ss_local(last) as socks:  # a third-party client for the AEAD cipher
            assert curl_via(socks, f"http://127.0.0.1:{backend}/", attempts_for=5) == PAGE
    # Taking a batch off is live too.
    disabled = vpn.ok("user", "disable", *BATCH[:150])
    assert "applied live" in disabled.stderr
    assert set(engine_users(vpn, server.name)) == {ids[name] for name in ["alice", *BATCH[150:]]}
    assert pid(vpn, server.name) == before


@pytest.mark.usefixtures("need_root")
def test_a_restart_brings_back_every_user_and_counts_no_byte_twice(
    vpn: Vpn, backend: int, tmp_path: Path
) -> None:
    server = install_singbox(vpn, "shadowsocks", "ss")
    vpn.ok("user", "add", "alice", *BATCH, "--server", server.name)
    ids = user_ids(vpn)
    with singbox_client(link_of(vpn, "alice", server.name), tmp_path / "alice") as alice:
        body = curl_via(alice, f"http://127.0.0.1:{backend}/bytes/300000", attempts_for=5)
        assert len(body) == 300_000
    vpn.ok("serve", "--once")
    counted = downloaded(vpn, "alice")
    assert counted >= 300_000

    first = pid(vpn, server.name)
    vpn.ok("server", "restart", server.name)
    assert pid(vpn, server.name) != first
    keys = engine_users(vpn, server.name)
    assert set(keys) == {ids[name] for name in ["alice", *BATCH]}
    assert keys == database_users(vpn, server.name)
    # The new process counts from zero: sing-box restored no counter from its cache file.
    usage = vpn.json("server", "usage", server.name)
    assert isinstance(usage, list)
    assert all(row["download_bytes"] == 0 and row["upload_bytes"] == 0 for row in usage), usage
    vpn.ok("serve", "--once")
    assert downloaded(vpn, "alice") == counted, "bytes counted before the restart counted again"
    with singbox_client(link_of(vpn, BATCH[-1], server.name), tmp_path / "last") as last:
        assert curl_via(last, f"http://127.0.0.1:{backend}/", attempts_for=5) == PAGE
    with singbox_client(link_of(vpn, "alice", server.name), tmp_path / "alice2") as alice:
        body = curl_via(alice, f"http://127.0.0.1:{backend}/bytes/100000", attempts_for=5)
        assert len(body) == 100_000
    vpn.ok("serve", "--once")
    grown = downloaded(vpn, "alice") - counted
    assert 100_000 <= grown < 102_000, grown

    # Changes made while the server is stopped are what the next start serves.
    vpn.ok("server", "stop", server.name)
    vpn.ok("user", "revoke", BATCH[0], server.name)
    vpn.ok("user", "add", "late", "--server", server.name)
    vpn.ok("server", "start", server.name)
    ids = user_ids(vpn)
    assert set(engine_users(vpn, server.name)) == {ids[n] for n in ["alice", *BATCH[1:], "late"]}
    assert engine_users(vpn, server.name) == database_users(vpn, server.name)
    with singbox_client(link_of(vpn, "late", server.name), tmp_path / "late") as late:
        assert curl_via(late, f"http://127.0.0.1:{backend}/", attempts_for=5) == PAGE
    users_file = rendered(vpn, server.name) / "ssm-users.json"
    assert stat.S_IMODE(os.stat(users_file).st_mode) == 0o600
    cached = json.loads(users_file.read_text())["endpoints"]["/"]
    assert set(cached) == {"users"}  # no counters
    assert cached["users"] == engine_users(vpn, server.name)


def new_key() -> str:
    return base64.b64encode(secrets.token_bytes(16)).decode()


@pytest.mark.parametrize("method", ["2022-blake3-aes-128-gcm", "aes-256-gcm"])
def test_changes_that_are_done_already_succeed(vpn: Vpn, method: str) -> None:
    server = install_singbox(vpn, "shadowsocks", "ss", "--method", method)
    vpn.ok("user", "add", "alice", "--server", server.name)
    port = ssm_port(vpn, server.name)
    api = SsmApi(port, hold=method.startswith("2022"))
    alice = user_ids(vpn)["alice"]
    key = engine_users(vpn, server.name)[alice]
    # One at a time and in a batch (held for 2022): alice is there already, with her key.
    asyncio.run(api.add([{"username": alice, "uPSK": key}]))
    batch = [{"username": f"user-{1000 + i}", "uPSK": new_key()} for i in range(10)]
    asyncio.run(api.add([{"username": alice, "uPSK": key}, *batch]))
    held = engine_users(vpn, server.name)
    assert held == {alice: key} | {u["username"]: u["uPSK"] for u in batch}
    # Present with another key: the key given wins.
    other = new_key()
    asyncio.run(api.add([{"username": "user-1000", "uPSK": other}]))
    assert engine_users(vpn, server.name)["user-1000"] == other
    # Removing users who are not there, alone and among others.
    asyncio.run(api.remove(["user-999"]))
    asyncio.run(api.remove(["user-999", *[u["username"] for u in batch]]))
    assert engine_users(vpn, server.name) == {alice: key}


def test_a_hold_left_behind_is_cleared_by_the_next_change(
    vpn: Vpn, backend: int, tmp_path: Path
) -> None:
    """A held batch interrupted before its end leaves placeholder users in ssm-api's list:
    every change is then refused with "missing password". The next change deletes them, which
    applies what was pending."""
    server = install_singbox(vpn, "shadowsocks", "ss")
    vpn.ok("user", "add", "alice", "--server", server.name)
    port = ssm_port(vpn, server.name)
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    for name in HOLD_USERS[:3]:
        body = json.dumps({"username": name, "uPSK": ""})
        conn.request("POST", "/server/v1/users", body, {"Content-Type": "application/json"})
        answer = conn.getresponse()
        assert (answer.status, answer.read()) == (400, b"missing password")
    conn.close()
    assert set(HOLD_USERS[:3]) <= set(engine_users(vpn, server.name))
    vpn.ok("user", "add", "bob", "--server", server.name)
    held = engine_users(vpn, server.name)
    assert not set(HOLD_USERS) & set(held)
    assert user_ids(vpn)["bob"] in held
    with singbox_client(link_of(vpn, "bob", server.name), tmp_path / "bob") as socks:
        assert curl_via(socks, f"http://127.0.0.1:{backend}/", attempts_for=5) == PAGE


async def _database_keys(vpn: Vpn, server: str) -> dict[str, str]:
    from vpn_manager.engines.singbox.config import ssm_users
    from vpn_manager.storage import servers as repo

    paths = Paths.from_env({}, home=vpn.home)
    db = Database.of_home(paths, vpn.env.get("VPN_DATABASE__URL"), 5000, 5.0)
    try:
        async with db.reading() as session:
            clients = await repo.clients(session, (await repo.server_row(session, server)).id)
    finally:
        await db.close()
    return {u["username"]: u["uPSK"] for u in ssm_users(clients)}


def database_keys(vpn: Vpn, server: str) -> dict[str, str]:
    """The server's active users as the database has them, on either backend: engine-side name →
    key."""
    return asyncio.run(_database_keys(vpn, server))


@pytest.mark.parametrize(
    "backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def test_concurrent_changes_on_one_server_all_succeed(
    vpn: Vpn, request: pytest.FixtureRequest, backend: str
) -> None:
    """Adds, grants, revokes, deletes and revoke-grant races of the same user, all at once on one
    server: each command pushes its own change (not a diff of lists another command's commit
    may have changed in between), and pushes that are done already succeed. Every command exits
    0, and the engine then has exactly the database's users with their keys, without `serve`."""
    if backend == "postgres":
        vpn.env["VPN_DATABASE__URL"] = request.getfixturevalue("postgres_db_url")
    server = install_singbox(vpn, "shadowsocks", "ss")
    n = 4

    def named(tag: str) -> list[str]:
        return [f"{tag}{i}" for i in range(n)]

    vpn.ok("user", "add", *named("d"), *named("r"), *named("k"), "--server", server.name)
    vpn.ok("user", "add", *named("g"))
    commands = [["user", "add", name, "--server", server.name] for name in named("a")]
    commands += [["user", "grant", name, server.name] for name in named("g")]
    commands += [["user", "revoke", name, server.name] for name in named("r")]
    commands += [["user", "delete", name, "--yes"] for name in named("d")]
    for name in named("k"):  # either order ends well: revoked then given a new key, or not
        commands += [["user", "revoke", name, server.name], ["user", "grant", name, server.name]]
    random.Random(14).shuffle(commands)
    with ThreadPoolExecutor(max_workers=len(commands)) as pool:
        results = list(pool.map(lambda args: vpn(*args, timeout=120), commands))
    failed = [
        (args, r.code, r.stderr.strip())
        for args, r in zip(commands, results, strict=True)
        if r.code
    ]
    assert failed == []
    listed = vpn.json("user", "list")
    assert isinstance(listed, list)
    on = {u["name"] for u in listed if server.name in u["servers"]}
    assert {u["name"] for u in listed} == set(named("r") + named("k") + named("g") + named("a"))
    assert set(named("a") + named("g")) <= on
    assert not on & set(named("r"))
    have, want = engine_users(vpn, server.name), database_keys(vpn, server.name)
    assert len(want) == len(on)
    assert have == want
