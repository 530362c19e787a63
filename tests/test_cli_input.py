"""Bad input to `vpn server …`, `vpn proxy …` and the process as a whole: one `error:` line, a
documented exit code, nothing changed (issue 13). Servers here are real sing-box processes on
127.0.0.1, started and removed by the CLI in an isolated home."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.cli_helpers import (
    Cli,
    InProcessCli,
    Result,
    database_file,
    error_line,
    table_rows,
)
from vpn_manager.errors import InvalidInput
from vpn_manager.paths import entry


def ok(result: Result) -> Result:
    assert result.code == 0, result
    return result


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def install_ss(vpn: InProcessCli, name: str, port: int | None = None) -> int:
    port = port or free_port()
    ok(
        vpn(
            "server",
            "install",
            "shadowsocks",
            "--name",
            name,
            "--port",
            str(port),
            "--listen",
            "127.0.0.1",
        )
    )
    return port


# -- names that are paths ---------------------------------------------------------------------
def test_entry_stays_in_its_directory(tmp_path: Path) -> None:
    assert entry(tmp_path, "ss") == tmp_path / "ss"
    assert entry(tmp_path, "..", ".log") == tmp_path / "...log"
    assert entry(tmp_path, "a.b") == tmp_path / "a.b"
    for name in ("..", ".", "", "a/b", "../x", "a\0b"):
        with pytest.raises(InvalidInput):
            entry(tmp_path, name)


@pytest.mark.parametrize("name", ["..", "."])
def test_dot_names_are_refused(vpn: InProcessCli, name: str) -> None:
    ok(vpn("user", "add", "alice"))
    before = table_rows(database_file(vpn.home))
    port = str(free_port())
    for args in (
        ["server", "install", "shadowsocks", "--name", name, "--port", port],
        ["proxy", "add", "http", "--name", name, "--port", port],
        ["user", "add", name],
        ["user", "update", "alice", "--name", name],
    ):
        message = error_line(vpn(*args), 3)
        assert repr(name) in message, message
    assert table_rows(database_file(vpn.home)) == before
    assert table_rows(database_file(vpn.home), "servers") == []


@pytest.mark.parametrize("name", ["..", "."])
def test_a_stored_dot_name_removes_nothing_outside(vpn: InProcessCli, name: str) -> None:
    """A database made before names were checked may hold a server named `..`: removing it must
    not take the data directory (and the database) or every server's keys with it."""
    ok(vpn("user", "add", "alice"))
    install_ss(vpn, "kept")
    install_ss(vpn, "old")
    ok(vpn("server", "stop", "old"))
    db = database_file(vpn.home)
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE servers SET name = ? WHERE name = 'old'", (name,))
    conn.close()
    keys = vpn.home / "data" / "keys"
    kept_keys = sorted((keys / "kept").iterdir())
    result = vpn("server", "remove", name, "--yes")
    assert "Traceback" not in result.output
    assert db.exists()
    assert sorted((keys / "kept").iterdir()) == kept_keys
    assert [row["name"] for row in ok(vpn("--format", "json", "user", "list")).json()] == ["alice"]


# -- Ctrl-C ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "args", [["server", "logs", "ss", "--follow"], ["monitor", "traffic", "--interval", "1"]]
)
def test_ctrl_c_exits_130_without_a_traceback(
    vpn: InProcessCli, tmp_path: Path, args: list[str]
) -> None:
    install_ss(vpn, "ss")
    follow = subprocess.Popen(
        [sys.executable, "-m", "vpn_manager", *args],
        env=Cli(tmp_path).env(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        time.sleep(2)  # past start-up and into the blocking wait for new lines
        assert follow.poll() is None, follow.communicate()
        follow.send_signal(signal.SIGINT)
        _out, err = follow.communicate(timeout=20)
    finally:
        if follow.poll() is None:
            follow.kill()
            follow.wait()
    assert follow.returncode == 130, err
    assert "Traceback" not in err, err
    assert err.strip() == "Interrupted.", err


@pytest.mark.parametrize("delay", [0.01, 0.03, 0.06, 0.1, 0.2])
def test_ctrl_c_while_the_cli_starts_exits_130_without_a_traceback(
    tmp_path: Path, delay: float
) -> None:
    """Ctrl-C during the imports, `delay` seconds after the entry point's module is imported
    (`-X importtime` tells when, on stderr), so a slow machine cannot move the signal into
    Python's own start-up (site, runpy, compiling __main__), which is not ours to handle."""
    starting = subprocess.Popen(
        [sys.executable, "-X", "importtime", "-m", "vpn_manager", "user", "list"],
        env=Cli(tmp_path).env(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert starting.stderr is not None
    lines: list[str] = []
    ours = threading.Event()

    def read() -> None:
        assert starting.stderr is not None
        for line in starting.stderr:
            lines.append(line)
            if line.rstrip().endswith(" vpn_manager.cli.entry"):
                ours.set()
        ours.set()  # the end of its output: it has finished

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        assert ours.wait(timeout=30), "the CLI never imported its entry point"
        time.sleep(delay)
        starting.send_signal(signal.SIGINT)
        starting.wait(timeout=30)
    finally:
        if starting.poll() is None:
            starting.kill()
            starting.wait()
    reader.join(timeout=10)
    err = "".join(line for line in lines if not line.startswith("import time:"))
    assert "Traceback" not in err, err
    # 0: it had already finished; killed by the signal itself (which a shell reports as 130):
    # it landed where the default handler was back in place (asyncio.run's end).
    assert starting.returncode in (130, 0, -signal.SIGINT), err
    if starting.returncode == 130:
        assert err.strip() == "Interrupted.", err


def test_the_tui_exit_code_is_kept(vpn: InProcessCli, monkeypatch: pytest.MonkeyPatch) -> None:
    """Textual shows what crashed and sets return_code; `vpn tui` must exit with it."""
    from vpn_manager.tui.app import VpnApp

    def crash(self: VpnApp) -> None:
        self._return_code = 1

    monkeypatch.setattr(VpnApp, "run", crash)
    assert vpn("tui").code == 1


# -- WireGuard subnets -------------------------------------------------------------------------
def add_wireguard_row(home: Path, name: str, subnet: str, subnet6: str | None) -> None:
    """A stopped WireGuard server in the home's database, as `vpn server install` leaves one
    (written directly: a real one would make a network interface on this machine)."""
    import asyncio
    from datetime import UTC, datetime

    from vpn_manager.storage import Database
    from vpn_manager.storage.orm import ServerRow

    async def add() -> None:
        db = Database(f"sqlite+aiosqlite:///{database_file(home)}")
        await db.open()
        try:
            now = datetime.now(UTC)
            async with db.session() as session:
                session.add(
                    ServerRow(
                        name=name,
                        protocol="wireguard",
                        engine="wireguard",
                        runtime="native",
                        listen="0.0.0.0",
                        port=free_port(),
                        host="127.0.0.1",
                        desired="stopped",
                        settings={"interface": "wgtest0", "subnet": subnet, "subnet6": subnet6},
                        secret={},
                        created_at=now,
                        updated_at=now,
                    )
                )
        finally:
            await db.close()

    asyncio.run(add())


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (
            ["--subnet", "10.13.13.0/24"],
            "The subnet 10.13.13.0/24 overlaps 10.13.13.0/24 of the WireGuard server wg1.",
        ),
        (
            ["--subnet", "10.13.0.0/16"],
            "The subnet 10.13.0.0/16 overlaps 10.13.13.0/24 of the WireGuard server wg1.",
        ),
        (
            ["--subnet", "10.13.13.128/25"],
            "The subnet 10.13.13.128/25 overlaps 10.13.13.0/24 of the WireGuard server wg1.",
        ),
        ([], "The subnet 10.13.13.0/24 overlaps 10.13.13.0/24 of the WireGuard server wg1."),
        (
            ["--subnet", "10.99.0.0/24", "--subnet6", "fd00:13:0:0:8000::/65"],
            "The subnet fd00:13:0:0:8000::/65 overlaps fd00:13::/64 of the WireGuard server wg1.",
        ),
    ],
)
def test_an_overlapping_wireguard_subnet_is_a_conflict(
    vpn: InProcessCli, options: list[str], message: str
) -> None:
    ok(vpn("user", "add", "alice"))
    add_wireguard_row(vpn.home, "wg1", "10.13.13.0/24", "fd00:13::/64")
    before = table_rows(database_file(vpn.home), "servers")
    port = str(free_port())
    result = vpn("server", "install", "wireguard", "--name", "wg2", "--port", port, *options)
    assert error_line(result, 5) == message
    assert table_rows(database_file(vpn.home), "servers") == before
    assert not (vpn.home / "data" / "keys" / "wg2").exists()


def test_separate_wireguard_subnets_pass_the_check(vpn: InProcessCli) -> None:
    import asyncio

    from vpn_manager.models.server import ServerCreate
    from vpn_manager.services.subnets import refuse_overlap
    from vpn_manager.storage import Database

    ok(vpn("user", "add", "alice"))
    add_wireguard_row(vpn.home, "wg1", "10.13.13.0/24", "fd00:13::/64")

    async def check(**fields: str) -> None:
        db = Database(f"sqlite+aiosqlite:///{database_file(vpn.home)}")
        await db.open()
        try:
            async with db.session() as session:
                create = ServerCreate.model_validate(
                    {"name": "wg2", "protocol": "wireguard", "port": 51999} | fields
                )
                await refuse_overlap(session, create)
        finally:
            await db.close()

    asyncio.run(check(subnet="10.13.14.0/24", subnet6="fd00:14::/64"))
    asyncio.run(check(subnet="10.13.12.0/24"))


# -- ports -------------------------------------------------------------------------------------
def test_listen_on_an_address_of_another_machine(vpn: InProcessCli) -> None:
    port = str(free_port())
    result = vpn(
        "server", "install", "shadowsocks", "--name", "ss", "--port", port, "--listen", "8.8.8.8"
    )
    assert error_line(result, 3) == (
        "8.8.8.8 is not an address of this machine, so nothing can listen on it."
    )
    assert table_rows(database_file(vpn.home), "servers") == []


def _time_wait_on(port: int) -> None:
    """Leave a connection in TIME-WAIT on 127.0.0.1:port, as a removed engine does: its side
    closed first, then its listener closed."""
    import socket

    with socket.socket() as listener:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", port))
        listener.listen()
        with socket.create_connection(("127.0.0.1", port)) as client:
            served, _ = listener.accept()
            served.close()  # the server's side closes first: it goes to TIME-WAIT
            client.recv(1)
    time.sleep(0.1)


def test_a_port_in_time_wait_is_free_for_a_new_server() -> None:
    from vpn_manager.services.servers import check_port_free

    port = free_port()
    _time_wait_on(port)
    ss = subprocess.run(
        ["ss", "-tan", f"sport = :{port}"], capture_output=True, text=True, check=True
    )
    assert "TIME-WAIT" in ss.stdout, ss.stdout
    check_port_free("127.0.0.1", port)


def test_a_port_with_a_listener_is_still_taken() -> None:
    import socket

    from vpn_manager.errors import Conflict
    from vpn_manager.services.servers import check_port_free

    with socket.socket() as listener:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        with pytest.raises(Conflict, match="taken by another program"):
            check_port_free("127.0.0.1", port)
        with pytest.raises(Conflict, match="taken by another program"):
            check_port_free("0.0.0.0", port)


# -- free text ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "fields",
    [
        {"protocol": "shadowsocks", "method": "aes-256-gcm", "password": "pw\x1b[8m"},
        {"protocol": "shadowsocks", "runtime": "docker", "image": "sing-box\x07"},
        {"protocol": "trojan", "sni": "a.test", "cert_file": "/c\rert", "key_file": "/k"},
    ],
)
def test_server_text_with_control_characters_is_refused(fields: dict[str, str]) -> None:
    from vpn_manager.models import validated
    from vpn_manager.models.server import ServerCreate

    with pytest.raises(InvalidInput, match="control characters"):
        validated(ServerCreate, {"name": "s", "port": 8388} | fields)
    clean = {
        key: value.translate({0x1B: None, 0x07: None, 0x0D: None}) for key, value in fields.items()
    }
    validated(ServerCreate, {"name": "s", "port": 8388} | clean)


def test_a_note_keeps_its_line_breaks_and_tabs(vpn: InProcessCli) -> None:
    ok(vpn("user", "add", "carol", "--note", "line one\n\tline two"))
    shown = ok(vpn("--format", "json", "user", "show", "carol")).json()
    assert shown["note"] == "line one\n\tline two"
