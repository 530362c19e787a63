"""Reliability against real engines: Ctrl-C in a real terminal, the database free while engines
are changed, concurrent commands beside the service, a hung engine, a database locked for
longer than the busy timeout, and an engine that lost its users behind our back."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import signal
import sqlite3
import subprocess
import termios
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import pytest

from tests.e2e.conftest import VPN, Vpn
from tests.e2e.net import end_process, free_port
from tests.e2e.test_crash import _engine_and_database, assert_agree

# A batch that is still being pushed a while after it began: on an AEAD cipher every user is
# its own update of the whole list (2022 ciphers apply a batch at once, too fast to catch).
SLOW_BATCH = 4000
SLOW_METHOD = "aes-256-gcm"


def install_ss(vpn: Vpn, name: str = "ss", *extra: str) -> int:
    port = free_port()
    vpn.ok("server", "install", "shadowsocks", "--name", name, "--port", str(port), *extra)
    return port


def engine_users(vpn: Vpn, server: str = "ss") -> set[str]:
    _port, have, _ = asyncio.run(_engine_and_database(vpn.home))[server]
    assert have is not None
    return have


def wait_for(check: object, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if callable(check) and check():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def user_names(vpn: Vpn) -> set[str]:
    listed = vpn.json("user", "list")
    assert isinstance(listed, list)
    return {user["name"] for user in listed}


def _controlling_terminal() -> None:
    """In the child: a new session whose controlling terminal is its stdin (the pty)."""
    os.setsid()
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


def test_ctrl_c_during_a_batch_exits_130_and_changes_nothing(vpn: Vpn) -> None:
    install_ss(vpn, "ss", "--method", SLOW_METHOD)
    vpn.ok("user", "add", "alice", "--server", "ss")
    before_engine, before_users = engine_users(vpn), user_names(vpn)
    master, slave = os.openpty()
    names = [f"c{i}" for i in range(SLOW_BATCH)]
    process = subprocess.Popen(
        [str(VPN), "user", "add", *names, "--server", "ss"],
        env=vpn.env,
        stdin=slave,
        stdout=slave,
        stderr=slave,
        preexec_fn=_controlling_terminal,  # noqa: PLW1509 -- the test starts no threads
    )
    os.close(slave)
    try:
        # Ctrl-C once the batch is committed and half-way into the engine.
        wait_for(lambda: len(engine_users(vpn)) > len(before_engine) + 100, "the push to begin")
        assert process.poll() is None, "the batch ended before Ctrl-C"
        os.write(master, b"\x03")  # the terminal sends SIGINT to the foreground group
        code = process.wait(120)
    finally:
        if process.poll() is None:
            process.kill()
        output = b""
        try:
            while chunk := os.read(master, 65536):
                output += chunk
        except OSError:
            pass
        os.close(master)
    assert b"Traceback" not in output
    assert user_names(vpn) == before_users
    assert engine_users(vpn) == before_engine  # without any serve: nothing half-applied
    assert code == 130, output.decode(errors="replace")


def test_the_database_is_free_while_users_reach_an_engine(vpn: Vpn) -> None:
    """While a batch is pushed to a running server, other commands go on (the database is
    committed before any engine call): a busy timeout of 1 s, far shorter than the batch, is
    plenty for them."""
    install_ss(vpn, "ss", "--method", SLOW_METHOD)
    before = len(engine_users(vpn))
    batch = subprocess.Popen(
        [str(VPN), "user", "add", *[f"d{i}" for i in range(SLOW_BATCH)], "--server", "ss"],
        env=vpn.env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        wait_for(lambda: len(engine_users(vpn)) > before + 100, "the push to begin")
        assert batch.poll() is None, "the batch ended before it could be overlapped"
        quick = Vpn(vpn.home)
        quick.env["VPN_DATABASE__BUSY_TIMEOUT_MS"] = "1000"
        quick.ok("user", "add", "solo")
        quick.ok("user", "update", "solo", "--note", "written while the batch was pushed")
        assert batch.poll() is None, "the batch ended before the overlap was checked"
    finally:
        assert batch.wait(300) == 0
    assert "solo" in user_names(quick)
    assert_agree(vpn, {}, "after the batch")


@contextmanager
def service(vpn: Vpn, interval: float = 0.3) -> Iterator[subprocess.Popen[str]]:
    log = vpn.home / "serve.log"
    with log.open("w") as out:
        process = subprocess.Popen(
            [str(VPN), "serve", "--interval", str(interval), "--metrics-port", "0"],
            env=vpn.env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
        )
    try:
        yield process
    finally:
        end_process(process)


def test_concurrent_adds_beside_the_service(vpn: Vpn) -> None:
    install_ss(vpn)
    with service(vpn) as serving, ThreadPoolExecutor(max_workers=20) as pool:
        results = list(
            pool.map(
                lambda i: vpn("user", "add", f"p{i}", "--server", "ss", timeout=120), range(20)
            )
        )
        failed = [r.stderr for r in results if r.code != 0]
        assert failed == []
        time.sleep(1)
        assert serving.poll() is None, (vpn.home / "serve.log").read_text()
    assert {f"p{i}" for i in range(20)} <= user_names(vpn)
    assert_agree(vpn, {}, "after 20 concurrent adds")


def test_the_service_outlives_a_locked_database(vpn: Vpn) -> None:
    """A lock held for far longer than the busy timeout makes rounds fail, not the service."""
    install_ss(vpn)
    vpn.ok("user", "add", "alice", "--server", "ss")
    vpn.env["VPN_DATABASE__BUSY_TIMEOUT_MS"] = "100"
    with service(vpn, interval=0.2) as serving:
        time.sleep(1)
        holder = sqlite3.connect(vpn.home / "data" / "vpn.db", isolation_level=None, timeout=5)
        holder.execute("BEGIN EXCLUSIVE")
        try:
            time.sleep(3)
            assert serving.poll() is None, (vpn.home / "serve.log").read_text()
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        vpn.ok("user", "add", "bob", "--server", "ss")
        time.sleep(1)
        assert serving.poll() is None, (vpn.home / "serve.log").read_text()
    log = (vpn.home / "serve.log").read_text()
    assert "locked" in log
    assert "Traceback" not in log


def pid_of(vpn: Vpn, server: str) -> int:
    pid = current_pid(vpn, server)
    assert pid, f"{server} has no engine process"
    return pid


def current_pid(vpn: Vpn, server: str) -> int | None:
    """The engine's PID now, or None while the service is between stopping and starting it."""
    status = vpn.json("server", "status", server)
    assert isinstance(status, dict)
    return int(status["pid"]) if status["pid"] else None


def test_a_hung_engine_is_restarted(vpn: Vpn) -> None:
    port = install_ss(vpn)
    vpn.ok("user", "add", "alice", "--server", "ss")
    pid = pid_of(vpn, "ss")
    os.kill(pid, signal.SIGSTOP)
    try:
        with service(vpn, interval=0.3):
            wait_for(
                lambda: (
                    current_pid(vpn, "ss") not in (None, pid)
                    and vpn.json("server", "status", "ss")["healthy"]
                ),  # type: ignore[index]
                "a new, healthy engine",
                timeout=60,
            )
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGCONT)
    assert_agree(vpn, {}, f"after the hung engine on {port} was replaced")


def test_an_engine_that_lost_its_users_gets_them_back(vpn: Vpn) -> None:
    """An engine restarted behind our back (here: ssm-api told to forget a user, as a restart
    would) is found out by looking at its users, and given them back by one round."""
    install_ss(vpn)
    vpn.ok("user", "add", "alice", "bob", "--server", "ss")
    from vpn_manager.paths import Paths
    from vpn_manager.services.servers import ServerService
    from vpn_manager.storage import Database
    from vpn_manager.storage import servers as repo

    async def forget_one() -> None:
        paths = Paths.from_env({}, home=vpn.home)
        db = Database.of_home(paths, None, 5000, 5.0)
        try:
            async with db.reading() as session:
                row = await repo.server_row(session, "ss")
                clients = await repo.clients(session, row.id)
            service = ServerService(db, paths)
            spec = await service.reach(repo.spec_of(row))
            await service.engine(spec).remove_clients(spec, clients[:1], service.files("ss"))
        finally:
            await db.close()

    asyncio.run(forget_one())
    assert len(engine_users(vpn)) == 1
    done = vpn.json("serve", "--once")
    assert isinstance(done, dict)
    assert done["fixed"] == {"ss": ["gave its engine 1 user it did not have"]}
    assert_agree(vpn, {}, "after one round")


@pytest.mark.parametrize(
    "leftover",
    [
        "rendered/ss/.validate-abc",
        "rendered/ss/.config.json.x1.tmp",
        "run/.ss.applied.ab12cd34.tmp",  # kills that CI met: the applied record's write
        "run/ss.pid.tmp",
        "run/.ss.settle.json.ab12cd34.tmp",
        "run/.docker-hosts.json.ab12cd34.tmp",
    ],
)
def test_temp_files_of_a_killed_command_are_swept(vpn: Vpn, leftover: str) -> None:
    install_ss(vpn)
    path = vpn.home / "state" / leftover
    if leftover.endswith(".tmp"):
        path.write_text("half")
    else:
        path.mkdir()
    vpn.ok("serve", "--once")
    assert not path.exists()
