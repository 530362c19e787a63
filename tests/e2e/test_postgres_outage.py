"""PostgreSQL stopped (`pg_ctl stop -m fast`) while a big user batch is on its way to a running
Shadowsocks server: the command fails in one sentence, quickly, and after one `vpn serve --once`
the engine has exactly the users the database has, whichever side of the commit the stop came.

When engine calls ran inside the open transaction (before user changes committed first), a stop
during the push rolled the rows back after the engine had them all, the failure ("cannot call
Transaction.commit()") came only at the end of the whole push, and `serve` never removed the users:
this test then saw 5,001 users in the engine against 1 in the database, after 22-28 s.

Each test runs a PostgreSQL server of its own (own_postgres), so stopping it disturbs no other test.
"""

from __future__ import annotations

import asyncio
import subprocess
import time

import asyncpg

from tests.conftest import PostgresCluster
from tests.e2e.conftest import VPN, Vpn
from tests.e2e.net import free_port
from tests.e2e.test_crash import assert_agree, serve_once

BATCH = 5000
QUICK = 10.0  # seconds from the stop: a command whose database went away says so within this


def on_postgres(vpn: Vpn, cluster: PostgresCluster) -> None:
    vpn.env["VPN_DATABASE__URL"] = cluster.url("postgres")


def install_big(vpn: Vpn) -> None:
    base = ["server", "install", "shadowsocks", "--name", "big", "--port", str(free_port())]
    vpn.ok(*base, "--listen", "127.0.0.1", "--host", "127.0.0.1")
    vpn.ok("user", "add", "alice", "--server", "big")


async def _wait_for(cluster: PostgresCluster, query: str, deadline: float) -> bool:
    """Poll `query` (one boolean) until it holds; False if `deadline` (monotonic) passed."""
    conn = await asyncpg.connect(cluster.url("postgres").replace("+asyncpg", ""), timeout=10)
    try:
        while time.monotonic() < deadline:
            if await conn.fetchval(query):
                return True
            await asyncio.sleep(0.005)
    finally:
        await conn.close()
    return False


async def _count(cluster: PostgresCluster, name: str) -> int:
    conn = await asyncpg.connect(cluster.url("postgres").replace("+asyncpg", ""), timeout=10)
    try:
        found: int = await conn.fetchval("SELECT count(*) FROM users WHERE name = $1", name)
    finally:
        await conn.close()
    return found


# The batch's own transaction has written rows it has not committed yet.
WRITING = """
    SELECT count(*) > 0 FROM pg_stat_activity
    WHERE datname = current_database() AND pid <> pg_backend_pid()
      AND backend_xid IS NOT NULL AND state <> 'idle'
"""


def committed_or_held(users: int) -> str:
    """The batch committed (`users` rows), or its transaction, having written, waits on its
    client for more than 2 s (as it did when engines were called inside it)."""
    return f"""
        SELECT (SELECT count(*) >= {users} FROM users) OR EXISTS (
            SELECT FROM pg_stat_activity
            WHERE datname = current_database() AND pid <> pg_backend_pid()
              AND backend_xid IS NOT NULL AND state = 'idle in transaction'
              AND now() - state_change > interval '2 s')
    """


def batch_with_stop(
    vpn: Vpn, cluster: PostgresCluster, names: list[str], when: str
) -> tuple[int | None, str, float, bool]:
    """Run `vpn user add NAMES --server big`; stop the database as soon as `when` holds. Returns
    the exit code, stderr, how long the command ran after the stop began (all of it if no stop
    came) and whether the stop came."""
    started = time.monotonic()
    process = subprocess.Popen(
        [str(VPN), "user", "add", *names, "--server", "big"],
        env=vpn.env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        hit = asyncio.run(_wait_for(cluster, when, started + 120))
        if hit:
            started = time.monotonic()
            cluster.halt("fast")
        _, stderr = process.communicate(timeout=180)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    took = time.monotonic() - started
    if hit:
        cluster.resume()
    return process.returncode, stderr, took, hit


def test_a_stop_on_either_side_of_the_commit_leaves_the_engine_as_the_database(
    own_postgres: PostgresCluster, vpn: Vpn
) -> None:
    """Two batches: the database stopped while the batch's transaction is writing (nothing may
    reach the engine), then once the batch has committed or kept its transaction open across
    engine calls (what the users committed reach the engine, by `serve --once` if not before)."""
    on_postgres(vpn, own_postgres)
    install_big(vpn)
    moments = {"writing": WRITING, "committed or held open": committed_or_held(1 + BATCH)}
    for tag, (what, when) in zip("ab", moments.items(), strict=True):
        names = [f"{tag}{i}" for i in range(BATCH)]
        code, stderr, took, hit = batch_with_stop(vpn, own_postgres, names, when)
        print(
            f"database stopped ({what}): exit {code} {took:.1f} s after the stop: {stderr.strip()}"
        )
        assert hit, f"the batch was never seen {what}"
        assert code in (0, 7), stderr
        if code == 7:
            # One sentence about the database (and its hint): "Cannot use the database …",
            # or "The database … failed: the database system is shutting down".
            lines = stderr.strip().splitlines()
            assert lines[0].startswith("error: "), stderr
            assert "database" in lines[0], stderr
            assert [line[:6] for line in lines[1:]] in ([], ["hint: "]), stderr
            # Whether the users exist now is said: committed and not undone, or rolled back.
            saved = asyncio.run(_count(own_postgres, names[-1])) == 1
            assert ("The change is saved" in stderr) == saved, stderr
        serve_once(vpn)
        assert_agree(vpn, {}, f"the database stopped ({what})")
        assert took < QUICK, f"the command ended {took:.1f} s after the stop"
