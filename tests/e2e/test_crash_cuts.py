"""A user change killed between "the user is out of the engine" and "their open connections are
cut": after one `vpn serve --once`, the open stream of the user taken off stops within 5 s, the
other user's goes on, and the engine, the rendered files and the database agree.

On a running server a removal is two steps: the engine is told (Xray's HandlerService RemoveUser,
sing-box's ssm-api), then the user's already-open connections are cut (`ss -K` on Xray's TCP,
dropped QUIC flows on Xray's Hysteria2, the api service's CloseConnection on sing-box). Killed
in between, the engine no longer has the user, so comparing its users with the database finds
nothing to fix, while the open tunnel goes on working.

The kill comes at exactly that moment: a `sitecustomize` put on the killed command's PYTHONPATH
(below) adds an audit hook (PEP 578) that sends its own process SIGKILL at the first cut's first
outside act: running `ss` or `nft`, or connecting to sing-box's api service. Before each
`serve --once` the test checks that the kill did land there: the command died of SIGKILL, the
engine had already lost the user, and the user's stream still moved bytes. Also: Ctrl-C at that
moment (a disable is undone and cuts nothing; a delete leaves the cut to `serve --once`), and the
long-running service making the cut on its next round.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pytest

from tests.e2e.conftest import (
    VPN,
    Vpn,
    curl_via,
    link_of,
    singbox_client,
    xray_client,
)
from tests.e2e.net import BACKEND_PAGE, Stream, end_process, free_port
from tests.e2e.test_crash import _engine_and_database, accepting, leftovers

pytestmark = pytest.mark.usefixtures("need_root")

FLOW_S = 0.5  # how long a stream is watched for more bytes (the backend sends every 50 ms)
CUT_WITHIN_S = 5.0

CRASH_HOOK = '''
"""Test-only (tests/e2e/test_crash_cuts.py): send this process CRASH_SIGNAL (KILL, or INT as
Ctrl-C does) at the first outside act named by CRASH_AT: "exec:NAME" (a subprocess whose
program is NAME) or "connect:PORT" (a socket connecting to 127.0.0.1:PORT), once. Both are
taken out of the environment, so children run free."""
import os
import signal
import sys

_AT = os.environ.pop("CRASH_AT", "")
_SIGNAL = getattr(signal, "SIG" + os.environ.pop("CRASH_SIGNAL", "KILL"))
_sent = []


def _send():
    if not _sent:
        _sent.append(True)
        os.kill(os.getpid(), _SIGNAL)


def _hook(event, args):
    kind, _, what = _AT.partition(":")
    if kind == "exec" and event == "subprocess.Popen":
        argv = args[1]
        program = argv[0] if isinstance(argv, (list, tuple)) else str(argv).split()[0]
        if os.path.basename(os.fsdecode(program)) == what:
            _send()
    elif kind == "connect" and event == "socket.connect":
        address = args[1]
        if isinstance(address, tuple) and address[:2] == ("127.0.0.1", int(what)):
            _send()


if _AT:
    sys.addaudithook(_hook)
'''


def killed_at_the_cut(
    vpn: Vpn, hook_dir: Path, at: str, args: list[str], sig: str = "KILL", code: int = -9
) -> None:
    """Run `vpn ARGS` with the crash hook armed at `at`; it must die of SIGKILL (the hook's:
    a command that ends by itself has cut, or failed, before anyone could kill it), or with
    `sig` INT, exit with 130 as on Ctrl-C."""
    hook_dir.mkdir(parents=True, exist_ok=True)
    (hook_dir / "sitecustomize.py").write_text(CRASH_HOOK)
    path = vpn.env.get("PYTHONPATH", "")
    hooked = f"{hook_dir}:{path}" if path else str(hook_dir)
    env = vpn.env | {"CRASH_AT": at, "CRASH_SIGNAL": sig, "PYTHONPATH": hooked}
    done = subprocess.run(
        [str(VPN), *args],
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == code, (
        f"vpn {' '.join(args)} was not stopped at {at} by SIG{sig} (exit {done.returncode}): "
        f"{done.stderr.decode(errors='replace')}"
    )


def engine_users(vpn: Vpn, server: str) -> tuple[set[str], set[str]]:
    """The users `server`'s running engine has and those the database gives it (engine names)."""
    _, have, want = asyncio.run(_engine_and_database(vpn.home))[server]
    assert have is not None, f"{server} is not running"
    return have, want


def user_id(vpn: Vpn, name: str) -> str:
    """The engine-side name of a user (Client.email, "user-<id>"), from the database."""
    with contextlib.closing(sqlite3.connect(vpn.home / "data" / "vpn.db")) as db:
        (found,) = db.execute("SELECT id FROM users WHERE name = ?", (name,)).fetchone()
    return f"user-{found}"


def agree(vpn: Vpn, what: str) -> None:
    """test_crash.assert_agree for servers on TCP or UDP: each server's engine runs with exactly
    the database's active users and takes clients on its stored port; no temp file is left."""
    for name, (port, have, want) in asyncio.run(_engine_and_database(vpn.home)).items():
        assert have == want, f"{what}: {name}'s engine has {have}, the database {want}"
        udp = subprocess.run(
            ["ss", "-Hlun", f"sport = :{port}"], capture_output=True, text=True, check=True
        ).stdout.strip()
        assert accepting(port) or udp, f"{what}: nothing serves {name}'s stored port {port}"
    assert leftovers(vpn.home) == [], f"{what}: temp files left behind"


def stopped(stream: Stream, within: float = CUT_WITHIN_S) -> bool:
    """Does the stream stop moving bytes within `within` seconds (and stay stopped)? A TCP
    stream is closed by the cut; a QUIC one (Hysteria2) just stops: its packets are dropped."""
    deadline = time.monotonic() + within
    while stream.flowing(FLOW_S):
        if time.monotonic() > deadline:
            return False
    return not stream.flowing(1.0)


@contextmanager
def two_streams(
    vpn: Vpn, server: str, backend: int, tmp_path: Path, client: str
) -> Iterator[tuple[Stream, Stream]]:
    """alice's and bob's long downloads through `server`, each through a real client made from
    their printed link (`client`: xray or sing-box), both flowing."""
    page = f"http://127.0.0.1:{backend}/"
    run = xray_client if client == "xray" else singbox_client
    with ExitStack() as stack:
        streams = []
        for name in ("alice", "bob"):
            socks = stack.enter_context(run(link_of(vpn, name, server), tmp_path / name))
            assert curl_via(socks, page, attempts_for=10) == BACKEND_PAGE.decode()
            stream = Stream(socks, backend)
            stack.callback(stream.close)
            streams.append(stream)
        alice, bob = streams
        assert alice.flowing(FLOW_S), "alice's download does not flow"
        assert bob.flowing(FLOW_S), "bob's download does not flow"
        yield alice, bob


def crash_then_serve(
    vpn: Vpn,
    server: str,
    backend: int,
    tmp_path: Path,
    client: str,
    at: str,
    command: list[str],
) -> None:
    """alice and bob stream through `server`; `vpn COMMAND` (which takes alice off it) is killed
    at `at`; then one `vpn serve --once`: alice's stream stops, bob's goes on, all agree."""
    alice_id = user_id(vpn, "alice")
    with two_streams(vpn, server, backend, tmp_path, client) as (alice, bob):
        killed_at_the_cut(vpn, tmp_path / "hook", at, command)
        have, want = engine_users(vpn, server)
        assert alice_id not in want, "the command was killed before its change was saved"
        assert alice_id not in have, "the command was killed before the engine lost alice"
        assert alice.flowing(FLOW_S), "alice's stream was cut before the kill: nothing to test"
        serve_cuts_alice_only(vpn, alice, bob)
    agree(vpn, f"{' '.join(command)} killed at {at}")
    again = vpn.ok("--format", "json", "serve", "--once", timeout=120)
    assert server not in again.stdout, f"a second round still fixed something: {again.stdout}"


def serve_cuts_alice_only(vpn: Vpn, alice: Stream, bob: Stream) -> None:
    """One `vpn serve --once` makes the cut owed: alice's open stream stops within
    CUT_WITHIN_S, bob's goes on."""
    started = time.monotonic()
    said = vpn.ok("--format", "json", "serve", "--once", timeout=120).stdout
    assert "whose removal was interrupted before the cut" in said, said
    assert stopped(alice, CUT_WITHIN_S - (time.monotonic() - started)), (
        "alice's open stream still carries traffic after `vpn serve --once`"
    )
    assert bob.flowing(FLOW_S), "bob's stream was cut too"


def install(vpn: Vpn, protocol: str, name: str, *extra: str) -> int:
    port = free_port()
    vpn.ok(
        *("server", "install", protocol, "--name", name, "--port", str(port)),
        *("--listen", "127.0.0.1", "--host", "127.0.0.1", "--allow-private", *extra),
    )
    return port


@pytest.mark.parametrize("command", ["disable", "delete"])
def test_xray_trojan_ws_removal_killed_before_its_cut(
    vpn: Vpn, backend: int, tmp_path: Path, command: str
) -> None:
    """Trojan over WebSocket with TLS on Xray: `vpn user disable alice` (or `user delete`)
    killed as it runs its first `ss` (after RemoveUser, before `ss -K`)."""
    install(vpn, "trojan", "tw", "--transport", "ws", "--security", "tls", "--sni", "vpn.test")
    vpn.ok("user", "add", "alice", "bob", "--server", "tw")
    args = ["user", command, "alice"] + (["--yes"] if command == "delete" else [])
    crash_then_serve(vpn, "tw", backend, tmp_path, "xray", "exec:ss", args)


def test_singbox_shadowsocks_disable_killed_before_its_cut(
    vpn: Vpn, backend: int, tmp_path: Path
) -> None:
    """Shadowsocks on sing-box: `vpn user disable alice` killed as it connects to the api
    service (after ssm-api removed her, before CloseConnection)."""
    install(vpn, "shadowsocks", "ss")
    vpn.ok("user", "add", "alice", "bob", "--server", "ss")
    servers = vpn.json("server", "list")
    assert isinstance(servers, list)
    api_port = int(servers[0]["settings"]["api_port"])
    at = f"connect:{api_port}"
    crash_then_serve(vpn, "ss", backend, tmp_path, "sing-box", at, ["user", "disable", "alice"])


def test_xray_hysteria2_revoke_killed_before_its_cut(
    vpn: Vpn, backend: int, tmp_path: Path
) -> None:
    """Hysteria2 on Xray: `vpn user revoke alice hy` killed as it runs `nft` (after RemoveUser,
    before her QUIC flow's packets are dropped)."""
    install(vpn, "hysteria2", "hy", "--sni", "vpn.test")
    vpn.ok("user", "add", "alice", "bob", "--server", "hy")
    args = ["user", "revoke", "alice", "--server", "hy"]
    crash_then_serve(vpn, "hy", backend, tmp_path, "sing-box", "exec:nft", args)


def test_ctrl_c_before_the_cut(vpn: Vpn, backend: int, tmp_path: Path) -> None:
    """Ctrl-C (SIGINT) at the same moment on Trojan+WS: `user disable` is undone (alice is
    active and on the engine again, her stream goes on, `serve --once` cuts nothing), while
    `user delete`, which has no undo, leaves the cut owed and `serve --once` makes it."""
    install(vpn, "trojan", "tw", "--transport", "ws", "--security", "tls", "--sni", "vpn.test")
    vpn.ok("user", "add", "alice", "bob", "--server", "tw")
    alice_id = user_id(vpn, "alice")
    with two_streams(vpn, "tw", backend, tmp_path, "xray") as (alice, bob):
        disable = ["user", "disable", "alice"]
        killed_at_the_cut(vpn, tmp_path / "hook", "exec:ss", disable, "INT", 130)
        have, want = engine_users(vpn, "tw")
        assert alice_id in want, "the interrupted disable was not undone in the database"
        assert alice_id in have, "the interrupted disable was not undone on the engine"
        said = vpn.ok("--format", "json", "serve", "--once", timeout=120).stdout
        assert "whose removal was interrupted" not in said, said
        assert alice.flowing(FLOW_S), "alice's stream was cut though her disable was undone"
        delete = ["user", "delete", "alice", "--yes"]
        killed_at_the_cut(vpn, tmp_path / "hook", "exec:ss", delete, "INT", 130)
        have, want = engine_users(vpn, "tw")
        assert alice_id not in want
        assert alice_id not in have
        assert alice.flowing(FLOW_S), "alice's stream was cut before the interrupt"
        serve_cuts_alice_only(vpn, alice, bob)
    agree(vpn, "user delete interrupted (Ctrl-C) before the cut")


def test_the_running_service_cuts_on_its_next_round(vpn: Vpn, backend: int, tmp_path: Path) -> None:
    """Shadowsocks on sing-box with `vpn serve` running (a round every 0.5 s): `user disable`
    killed before the cut; the service's next round cuts alice's stream within 5 s."""
    install(vpn, "shadowsocks", "ss")
    vpn.ok("user", "add", "alice", "bob", "--server", "ss")
    servers = vpn.json("server", "list")
    assert isinstance(servers, list)
    at = f"connect:{int(servers[0]['settings']['api_port'])}"
    alice_id = user_id(vpn, "alice")
    log = tmp_path / "serve.log"
    with two_streams(vpn, "ss", backend, tmp_path, "sing-box") as (alice, bob):
        with log.open("w") as out:
            serving = subprocess.Popen(
                [str(VPN), "serve", "--interval", "0.5", "--metrics-port", "0"],
                env=vpn.env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        try:
            killed_at_the_cut(vpn, tmp_path / "hook", at, ["user", "disable", "alice"])
            started = time.monotonic()
            assert alice_id not in engine_users(vpn, "ss")[0]
            assert stopped(alice, CUT_WITHIN_S - (time.monotonic() - started)), (
                f"alice's open stream still carries traffic: {log.read_text()}"
            )
            assert bob.flowing(FLOW_S), "bob's stream was cut too"
            assert serving.poll() is None, log.read_text()
        finally:
            end_process(serving)
    assert "whose removal was interrupted before the cut" in log.read_text(), log.read_text()
    agree(vpn, "user disable killed before the cut, beside the service")
