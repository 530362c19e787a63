"""Fixtures for end-to-end tests: an isolated vpn home whose servers are stopped afterwards, the
local TLS 1.3 site and HTTP backend, and real Xray clients built from printed links."""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.launcher import Launcher
from tests.e2e.net import end_process, free_port, http_backend, tls13_site
from vpn_manager.links import TrojanLink, VlessLink, VmessLink, parse_link, xray_client_config

SNI = "reality.test"
VPN = Path(sys.executable).parent / "vpn"


@dataclass
class Result:
    code: int
    stdout: str
    stderr: str


_LAUNCHER: list[Launcher] = []


def _launcher() -> Launcher:
    """This worker's launcher (tests/e2e/launcher.py), started on first use, ended at exit."""
    if not _LAUNCHER:
        launcher = Launcher(Path(tempfile.mkdtemp(prefix="vpn-launcher-")))
        atexit.register(launcher.close)
        _LAUNCHER.append(launcher)
    return _LAUNCHER[0]


class Vpn:
    """Runs the real `vpn` command in an isolated home: through this worker's launcher (the
    same entry point in a process of its own, forked from an interpreter that has imported
    the heavy libraries), or as a fresh process where a prefix (a network namespace) runs it."""

    def __init__(self, home: Path, prefix: list[str] | None = None) -> None:
        self.home = home
        self.prefix = prefix or []  # e.g. a network namespace's `ip netns exec …`
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("VPN_", "XDG_"))} | {
            "VPN_HOME": str(home),
            "HOME": str(home),
            "NO_COLOR": "1",
        }

    def __call__(self, *args: str, timeout: float = 60) -> Result:
        if not self.prefix:
            done = _launcher().run([str(VPN), *args], self.env, timeout)
            return Result(done.returncode, done.stdout, done.stderr)
        done = subprocess.run(
            [*self.prefix, str(VPN), *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
            check=False,
        )
        return Result(done.returncode, done.stdout, done.stderr)

    def ok(self, *args: str, timeout: float = 60) -> Result:
        result = self(*args, timeout=timeout)
        assert result.code == 0, f"vpn {' '.join(args)} failed ({result.code}): {result.stderr}"
        return result

    def json(self, *args: str) -> object:
        return json.loads(self.ok("--format", "json", *args).stdout)


@pytest.fixture
def vpn(tmp_path: Path) -> Iterator[Vpn]:
    runner = Vpn(tmp_path / "home")
    try:
        yield runner
    finally:
        for name in _stopped_through_vpn(runner):
            runner("server", "stop", name)
        end_home_processes(runner.home)  # engines, and what vpn could not stop


def _stopped_through_vpn(runner: Vpn) -> list[str]:
    """The servers a test's end must stop with `vpn server stop`: those whose stop undoes
    something outside the engine's process (WireGuard's interface and nftables table). The
    others' engines are simply ended, which saves two commands (about 2 s) per test. Read from
    the home's SQLite database; on any other database, every server, as `vpn` lists them."""
    database = runner.home / "data" / "vpn.db"
    if "VPN_DATABASE__URL" not in runner.env:
        if not database.exists():
            return []
        with contextlib.closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True)) as db:
            try:
                rows = db.execute("SELECT name FROM servers WHERE protocol = 'wireguard'")
                return [name for (name,) in rows]
            except sqlite3.Error:
                pass  # no schema yet, or busy: ask vpn
    listed = runner("--format", "json", "server", "list")
    return [server["name"] for server in json.loads(listed.stdout)] if listed.code == 0 else []


def end_home_processes(home: Path) -> None:
    """End every process whose command line names a file of `home` (engines and services a
    test left running), SIGTERM first, then SIGKILL."""
    import signal

    def alive() -> list[int]:
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) == os.getpid():
                continue
            try:
                argv = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if str(home).encode() + b"/" in argv:
                found.append(int(entry.name))
        return found

    for sig in (signal.SIGTERM, signal.SIGKILL):
        pids = alive()
        for pid in pids:
            with contextlib.suppress(OSError):
                os.kill(pid, sig)
        deadline = time.monotonic() + 5
        while pids and alive() and time.monotonic() < deadline:
            time.sleep(0.1)


@pytest.fixture(scope="session")
def need_root() -> None:
    if os.geteuid() != 0:
        pytest.fail("these tests need root (CAP_NET_ADMIN) to cut sessions with `ss -K`")
    if shutil.which("ss") is None:
        pytest.fail("`ss` (Debian package iproute2) is missing")


@pytest.fixture
def reality_site(tmp_path: Path) -> Iterator[int]:
    with tls13_site(tmp_path, SNI) as port:
        yield port


@pytest.fixture
def backend() -> Iterator[int]:
    with http_backend() as port:
        yield port


@dataclass
class Server:
    name: str
    port: int


def install(vpn: Vpn, site_port: int, name: str = "edge", port: int | None = None) -> Server:
    port = port or free_port()
    vpn.ok(
        "server",
        "install",
        "vless-reality",
        "--name",
        name,
        "--port",
        str(port),
        "--sni",
        SNI,
        "--dest",
        f"127.0.0.1:{site_port}",
        "--listen",
        "127.0.0.1",
        "--host",
        "127.0.0.1",
        "--allow-private",
    )
    return Server(name, port)


def link_of(vpn: Vpn, user: str, server: str) -> str:
    return vpn.ok("user", "link", user, "--server", server).stdout.strip()


@contextmanager
def xray_client(link: str, workdir: Path, source: str | None = None) -> Iterator[int]:
    """A real Xray client configured only from `link` (VLESS, Trojan or VMess, any transport);
    yields its local SOCKS port. `source`: the loopback address it connects to the server from
    (another "device")."""
    parsed = parse_link(link)
    assert isinstance(parsed, VlessLink | TrojanLink | VmessLink), link
    socks = free_port()
    config = xray_client_config(parsed, socks)
    if source:
        config["outbounds"][0]["sendThrough"] = source
    workdir.mkdir(parents=True, exist_ok=True)
    with xray_running(config, workdir / f"client-{socks}.json", socks):
        yield socks


@contextmanager
def xray_running(config: dict[str, Any], path: Path, socks: int) -> Iterator[int]:
    """A real Xray run from `config` (written to `path`) until the block ends; yields `socks`,
    the local port it listens on, once it accepts connections there."""
    path.write_text(json.dumps(config))
    process = subprocess.Popen(
        [sys.executable, "-m", "vpn_manager.engines.xray.child", str(path)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_for_port(socks, process)
        yield socks
    finally:
        end_process(process)


def curl_via(socks: int, url: str, *, attempts_for: float = 20.0) -> str:
    """Fetch `url` with curl through a SOCKS5 proxy, retrying while a fresh REALITY server warms
    up (its first connection takes 6-7 s)."""
    deadline = time.monotonic() + attempts_for
    last = ""
    while True:
        done = subprocess.run(
            ["curl", "-sS", "--max-time", "10", "-x", f"socks5h://127.0.0.1:{socks}", url],
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode == 0:
            return done.stdout
        last = done.stderr.strip()
        if time.monotonic() > deadline:
            raise AssertionError(f"curl through the tunnel kept failing: {last}")
        time.sleep(0.3)


def curl_fails(socks: int, url: str) -> bool:
    """The fetch through the client does not reach the site behind the tunnel (our backends,
    Python's http.server). A refused client can still get an answer: an Xray TLS server with a
    decoy answers a removed Trojan user's bytes as a web server would (nginx's 400 page), and
    the client passes that on as if the site had sent it."""
    done = subprocess.run(
        ["curl", "-sS", "-i", "--max-time", "8", "-x", f"socks5h://127.0.0.1:{socks}", url],
        capture_output=True,
        text=True,
        errors="replace",
        check=False,
    )
    return done.returncode != 0 or "\nserver: basehttp/" not in done.stdout.lower()


@contextmanager
def singbox_client(link: str, workdir: Path, source: str | None = None) -> Iterator[int]:
    """A real sing-box client configured only from `link`; yields its local mixed (SOCKS/HTTP)
    port. `source`: the loopback address it connects to the server from (another "device")."""
    from vpn_manager.engines.singbox.engine import binary
    from vpn_manager.links import parse_link, singbox_client_config

    port = free_port()
    config = singbox_client_config(parse_link(link), port)
    if source:
        config["outbounds"][0]["inet4_bind_address"] = source
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / f"sing-box-client-{port}.json"
    path.write_text(json.dumps(config))
    process = subprocess.Popen(
        [binary(), "run", "-c", str(path), "--disable-color"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_for_port(port, process)
        yield port
    finally:
        end_process(process)


@contextmanager
def ss_local(link: str) -> Iterator[int]:
    """Debian's shadowsocks-libev client, given only the method and password of an ss:// link."""
    from vpn_manager.links import ShadowsocksLink

    if shutil.which("ss-local") is None:
        pytest.fail("ss-local is missing: install shadowsocks-libev (scripts/setup --dev does)")
    parsed = ShadowsocksLink.parse(link)
    port = free_port()
    process = subprocess.Popen(
        [
            "ss-local",
            "-s",
            parsed.host,
            "-p",
            str(parsed.port),
            "-k",
            parsed.password,
            "-m",
            parsed.method,
            "-b",
            "127.0.0.1",
            "-l",
            str(port),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_for_port(port, process)
        yield port
    finally:
        end_process(process)


def _wait_for_port(port: int, process: subprocess.Popen[bytes]) -> None:
    import socket

    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            assert process.poll() is None, f"the client exited with {process.returncode}"
            time.sleep(0.02)
    raise AssertionError(f"the client never listened on {port}")


def install_singbox(vpn: Vpn, protocol: str, name: str, *extra: str) -> Server:
    port = free_port()
    command = "proxy" if protocol in ("http", "socks5", "mixed") else "server"
    verb = "add" if command == "proxy" else "install"
    args = [command, verb, protocol, "--name", name, "--port", str(port)]
    args += ["--listen", "127.0.0.1", "--host", "127.0.0.1", "--allow-private", *extra]
    if protocol in ("trojan", "hysteria2", "tuic", "vmess"):
        args += ["--sni", "vpn.test"]
    vpn.ok(*args)
    return Server(name, port)
