"""Time the real `vpn` console script against the numbers in the product spec.

Every row runs a command as a subprocess of this interpreter's venv, with VPN_HOME (and HOME and the
XDG directories) pointed into a temporary directory that this script creates and deletes. Each row
gets one untimed warm-up run, then --runs timed runs; wall clock is measured with
time.perf_counter() around subprocess.run() (api-user-add instead times one request of its own
to a running `vpn web`). A row passes when its median meets its target.

Usage, from the repository root:

    .venv/bin/python bench/run.py [--runs N] [--users N] [--only ID[,ID...]] [--json FILE]

To add a row, append a Row(...) to ROWS in the "Rows" section: an id (for --only and the JSON), a
label, the argv to run, and optionally a target, a setup for its home directory, whether every run
needs a fresh home, and how many users the home must hold after the warm-up.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Literal, Protocol

if __package__ in (None, ""):  # run as `python bench/run.py`: make the `bench` package importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.postgres import PostgresError, PostgresServer

REPO_ROOT = Path(__file__).resolve().parent.parent
COMMAND_TIMEOUT_S = 900.0
"""A command that runs longer than this is a failure, not a slow measurement."""

Unit = Literal["ms", "s", "MB", "req/s"]
Backend = Literal["sqlite", "postgres"]


class BenchError(Exception):
    """Something went wrong that makes the measurement meaningless; the bench stops."""


class CommandFailed(BenchError):
    def __init__(self, argv: Sequence[str], problem: str, stderr: bytes | str | None) -> None:
        text = stderr.decode("utf-8", "replace") if isinstance(stderr, bytes) else stderr or ""
        self.argv = list(argv)
        self.problem = problem
        self.stderr = text
        super().__init__(f"`{show_argv(argv)}` {problem}")


def show_argv(argv: Sequence[str]) -> str:
    """The command as a person would type it; long lists of arguments are elided."""
    words = [Path(argv[0]).name, *argv[1:]] if argv else []
    if len(words) > 10:
        words = [*words[:5], "...", words[-1], f"({len(words) - 3} arguments)"]
    return " ".join(words)


# --------------------------------------------------------------------------------------------
# The environment every command runs in
# --------------------------------------------------------------------------------------------


@dataclass
class Bench:
    """What the rows share: the interpreter, the `vpn` script, the temp root and the user count."""

    python: Path
    vpn: Path
    users: int
    root: Path
    postgres: PostgresServer | None = None
    """The bench's own PostgreSQL server, for the PostgreSQL column (None: --no-postgres)."""
    _names: list[str] | None = None
    _populated: dict[Backend, Path] = field(default_factory=dict)
    _homes: int = 0
    databases: dict[Path, tuple[str, bool]] = field(default_factory=dict)
    """Per home on PostgreSQL: its database's name, and whether to reach it over the unix socket."""
    _backend: int | None = None
    keepers: dict[Path, Keeper] = field(default_factory=dict)
    """Per home: a client connection held open across the timed runs (Shadowsocks rows)."""
    apis: dict[Path, ApiClient] = field(default_factory=dict)
    """Per home: a running `vpn web` and a connection to its API (the api-user-add row)."""

    def stop_web(self) -> None:
        """Stop every `vpn web` still running (a row stopped by an error leaves one)."""
        while self.apis:
            self.apis.popitem()[1].stop()

    def backend(self) -> int:
        """The port of the bench's HTTP backend on 127.0.0.1 (started on first use)."""
        if self._backend is None:
            server = ThreadingHTTPServer(("127.0.0.1", 0), BackendHandler)
            server.daemon_threads = True
            threading.Thread(target=server.serve_forever, daemon=True).start()
            self._backend = int(server.server_address[1])
        return self._backend

    def env(self, home: Path) -> dict[str, str]:
        """The caller's environment minus every VPN_ variable, with all homes in the temp root."""
        env = {k: v for k, v in os.environ.items() if not k.upper().startswith("VPN_")}
        sandbox = self.root / "user-home"
        env.update(
            HOME=str(sandbox),
            XDG_CONFIG_HOME=str(sandbox / ".config"),
            XDG_DATA_HOME=str(sandbox / ".local" / "share"),
            XDG_STATE_HOME=str(sandbox / ".local" / "state"),
            XDG_CACHE_HOME=str(sandbox / ".cache"),
            VPN_HOME=str(home),
        )
        if home in self.databases and self.postgres is not None:
            name, unix_socket = self.databases[home]
            env["VPN_DATABASE__URL"] = self.postgres.url(name, unix_socket=unix_socket)
        return env

    def run(self, argv: Sequence[str], home: Path, *, capture: bool = False) -> tuple[float, str]:
        """Run one command in `home`; return its wall time in seconds and (if captured) its stdout.

        Raises CommandFailed, with the command's stderr, when it cannot start, times out or exits
        non-zero.
        """
        env = self.env(home)
        stdout = subprocess.PIPE if capture else subprocess.DEVNULL
        start = time.perf_counter()
        try:
            proc = subprocess.run(
                list(argv),
                env=env,
                cwd=self.root,
                stdin=subprocess.DEVNULL,
                stdout=stdout,
                stderr=subprocess.PIPE,
                timeout=COMMAND_TIMEOUT_S,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise CommandFailed(
                argv, f"timed out after {COMMAND_TIMEOUT_S:.0f} s", exc.stderr
            ) from None
        except OSError as exc:
            raise CommandFailed(argv, f"could not be started: {exc}", None) from None
        elapsed = time.perf_counter() - start
        if proc.returncode != 0:
            raise CommandFailed(argv, f"exited with status {proc.returncode}", proc.stderr)
        out = proc.stdout.decode("utf-8", "replace") if capture else ""
        return elapsed, out

    def new_home(
        self, name: str, backend: Backend = "sqlite", *, unix_socket: bool = False
    ) -> Path:
        """A new, empty VPN_HOME directory inside the temp root; on PostgreSQL with a new, empty
        database of its own."""
        self._homes += 1
        home = self.root / "homes" / f"{self._homes:03d}-{name}"
        home.mkdir(parents=True)
        if backend == "postgres":
            if self.postgres is None:
                raise BenchError("a PostgreSQL home was asked for, but --no-postgres was given")
            self.databases[home] = (self.postgres.create(), unix_socket)
        return home

    def backend_of(self, home: Path) -> Backend:
        return "postgres" if home in self.databases else "sqlite"

    def remove_home(self, home: Path) -> None:
        """Delete the home, and its PostgreSQL database if it has one."""
        shutil.rmtree(home)
        if home in self.databases and self.postgres is not None:
            self.postgres.drop(self.databases.pop(home)[0])

    def user_names(self) -> list[str]:
        """The N generated user names: user00001, user00002, ..."""
        if self._names is None:
            width = max(5, len(str(self.users)))
            self._names = [f"user{i:0{width}d}" for i in range(1, self.users + 1)]
        return self._names

    def user_count(self, home: Path) -> int:
        """How many users `vpn --format json user list` shows in `home`."""
        argv = [str(self.vpn), "--format", "json", "user", "list"]
        _, out = self.run(argv, home, capture=True)
        try:
            data = json.loads(out)
        except json.JSONDecodeError as exc:
            raise BenchError(f"`{show_argv(argv)}` did not print JSON: {exc}") from None
        if isinstance(data, dict) and isinstance(data.get("users"), list):
            data = data["users"]
        if not isinstance(data, list):
            raise BenchError(f"`{show_argv(argv)}` printed JSON that is not a list of users")
        return len(data)

    def expect_users(self, home: Path, expected: int) -> None:
        found = self.user_count(home)
        if found != expected:
            raise BenchError(
                f"expected {expected:,} users in {home}, but `vpn user list` shows {found:,}"
            )

    def fill_with_users(self, home: Path) -> None:
        """Make `home` hold the N generated users: imported once into a template home (one per
        database), then copied: the home's files, and on PostgreSQL its database (CREATE
        DATABASE ... TEMPLATE)."""
        backend = self.backend_of(home)
        template = self._populated.get(backend)
        if template is None:
            template = self.new_home(f"populated-template-{backend}", backend)
            users_file = self.root / "users.json"
            users = [{"name": name} for name in self.user_names()]
            users_file.write_text(json.dumps({"users": users}), encoding="utf-8")
            progress(f"  importing {self.users:,} users into a template home ({backend}) ...")
            elapsed, _ = self.run([str(self.vpn), "user", "import", str(users_file)], template)
            self.expect_users(template, self.users)
            progress(f" {elapsed:.1f} s\n")
            self._populated[backend] = template
        shutil.copytree(template, home, dirs_exist_ok=True)
        if backend == "postgres" and self.postgres is not None:
            empty, unix_socket = self.databases[home]
            self.postgres.drop(empty)
            copy = self.postgres.create(template=self.databases[template][0])
            self.databases[home] = (copy, unix_socket)


# --------------------------------------------------------------------------------------------
# Targets
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Verdict:
    passed: bool | None
    """None when there is nothing to judge against."""
    note: str = ""

    @property
    def word(self) -> str:
        return "\N{EM DASH}" if self.passed is None else "PASS" if self.passed else "FAIL"


class Target(Protocol):
    @property
    def requires(self) -> tuple[str, ...]:
        """Ids of the rows whose results this target is judged against."""
        ...

    def describe(self) -> str: ...

    def judge(self, median_s: float, results: Mapping[str, RowResult]) -> Verdict: ...


@dataclass(frozen=True)
class Under:
    """The median must be strictly under `limit_s` seconds."""

    limit_s: float
    requires: tuple[str, ...] = ()

    def describe(self) -> str:
        if self.limit_s >= 1:
            return f"< {self.limit_s:g} s"
        return f"< {self.limit_s * 1000:g} ms"

    def judge(self, median_s: float, results: Mapping[str, RowResult]) -> Verdict:
        return Verdict(median_s < self.limit_s)


@dataclass(frozen=True)
class UnderMB:
    """The median must be strictly under `limit` megabytes (for rows with unit "MB")."""

    limit: float
    requires: tuple[str, ...] = ()

    def describe(self) -> str:
        return f"< {self.limit:g} MB"

    def judge(self, median_s: float, results: Mapping[str, RowResult]) -> Verdict:
        return Verdict(median_s < self.limit)


@dataclass(frozen=True)
class AtLeast:
    """The median must be at least `limit` (for a rate: rows with unit "req/s")."""

    limit: float
    requires: tuple[str, ...] = ()

    def describe(self) -> str:
        return f">= {self.limit:g} req/s"

    def judge(self, median_s: float, results: Mapping[str, RowResult]) -> Verdict:
        return Verdict(median_s >= self.limit)


@dataclass(frozen=True)
class WithinFactor:
    """The median must be at most `factor` times the median of another row."""

    of: str
    factor: float
    of_label: str

    @property
    def requires(self) -> tuple[str, ...]:
        return (self.of,)

    def describe(self) -> str:
        return f"<= {self.factor:g}x {self.of_label}"

    def judge(self, median_s: float, results: Mapping[str, RowResult]) -> Verdict:
        base = results.get(self.of)
        if base is None or base.median_s <= 0:
            return Verdict(None, f"no {self.of_label} result")
        ratio = median_s / base.median_s
        return Verdict(ratio <= self.factor, f"{ratio:.2f}x of {self.of_label}")


# --------------------------------------------------------------------------------------------
# Rows
# --------------------------------------------------------------------------------------------

Setup = Callable[[Bench, Path], None]
"""Prepares a VPN_HOME directory (already created, empty) before the row's runs."""
Command = Callable[[Bench, int], list[str]]
"""The argv for run number i: 0 is the warm-up, 1..runs are timed."""
Timed = Callable[[Bench, Path, int], float]
"""Work the bench does and times itself, in this process, for run number i in a home: its
seconds (for what is not a command, such as one request on a connection held open)."""


def empty_home(bench: Bench, home: Path) -> None:
    """Leave the home empty: the command starts from nothing (and creates the database)."""


def home_with_users(bench: Bench, home: Path) -> None:
    """Put the N generated users into the home."""
    bench.fill_with_users(home)


SERVER = "bench"


def install_args(bench: Bench) -> list[str]:
    """Install a VLESS+REALITY server on a free loopback port (its REALITY target is never
    contacted: no client connects during the bench)."""
    return [
        str(bench.vpn),
        "server",
        "install",
        "vless-reality",
        "--name",
        SERVER,
        "--port",
        str(free_port()),
        "--sni",
        "reality.test",
        "--dest",
        "127.0.0.1:9",
        "--listen",
        "127.0.0.1",
        "--host",
        "127.0.0.1",
    ]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def server_pid(bench: Bench, home: Path) -> int:
    _, out = bench.run(
        [str(bench.vpn), "--format", "json", "server", "status", SERVER], home, capture=True
    )
    status = json.loads(out)
    if not status.get("healthy"):
        raise BenchError(f"the bench server in {home} is not healthy: {status.get('detail')}")
    return int(status["pid"])


def home_with_server(bench: Bench, home: Path) -> None:
    """A running server and nobody on it."""
    bench.run(install_args(bench), home)


def home_with_server_and_users(bench: Bench, home: Path) -> None:
    """A running server holding the N generated users (granted live, in one batch)."""
    home_with_server(bench, home)
    progress(f"  adding {bench.users:,} users to a running server ...")
    elapsed, _ = bench.run(
        [str(bench.vpn), "user", "add", *bench.user_names(), "--server", SERVER], home
    )
    progress(f" {elapsed:.1f} s\n")
    (home / "bench-pid").write_text(str(server_pid(bench, home)))


def trojan_ws_install_args(bench: Bench) -> list[str]:
    """Install a Trojan+WebSocket+TLS server on Xray on a free loopback port (a self-signed
    certificate for the TLS name; no client connects during the bench)."""
    return [
        str(bench.vpn),
        "server",
        "install",
        "trojan",
        "--name",
        SERVER,
        "--port",
        str(free_port()),
        "--transport",
        "ws",
        "--security",
        "tls",
        "--sni",
        "vpn.test",
        "--path",
        "/bench",
        "--listen",
        "127.0.0.1",
        "--host",
        "127.0.0.1",
    ]


def home_with_trojan_ws_server_and_users(bench: Bench, home: Path) -> None:
    """A running Trojan+WS+TLS server holding the N generated users (granted live, in one
    batch), as home_with_server_and_users does for VLESS+REALITY."""
    bench.run(trojan_ws_install_args(bench), home)
    progress(f"  adding {bench.users:,} users to a running Trojan+WS+TLS server ...")
    elapsed, _ = bench.run(
        [str(bench.vpn), "user", "add", *bench.user_names(), "--server", SERVER], home
    )
    progress(f" {elapsed:.1f} s\n")
    (home / "bench-pid").write_text(str(server_pid(bench, home)))


def netns() -> str:
    """The bench's own network namespace (WireGuard needs CAP_NET_ADMIN; the namespace keeps
    its interface and rules off the host)."""
    return f"vpnbench-{os.getpid()}"


def in_netns(bench: Bench, *args: str) -> list[str]:
    """`vpn ARGS` inside the bench's network namespace."""
    return ["ip", "netns", "exec", netns(), str(bench.vpn), *args]


def home_with_wireguard_peers(bench: Bench, home: Path) -> None:
    """A WireGuard server holding the N generated users as peers, in a new network namespace."""
    if os.geteuid() != 0:
        raise BenchError("the poll row needs root (network namespaces, WireGuard)")
    subprocess.run(["ip", "netns", "add", netns()], check=True)
    subprocess.run(["ip", "-n", netns(), "link", "set", "lo", "up"], check=True)
    bench.run(
        in_netns(
            bench,
            "server",
            "install",
            "wireguard",
            "--name",
            SERVER,
            "--port",
            "51820",
            "--host",
            "10.0.0.1",
            "--subnet",
            "10.64.0.0/16",
        ),
        home,
    )
    progress(f"  adding {bench.users:,} WireGuard peers ...")
    elapsed, _ = bench.run(
        in_netns(bench, "user", "add", *bench.user_names(), "--server", SERVER), home
    )
    progress(f" {elapsed:.1f} s\n")


def remove_netns_server(bench: Bench, home: Path) -> None:
    bench.run(in_netns(bench, "server", "remove", SERVER, "--yes"), home)
    subprocess.run(["ip", "netns", "delete", netns()], check=True)


def poll_seconds(out: str) -> float:
    """`vpn --format json serve --once` reports how long its poll took."""
    return float(json.loads(out)["poll_ms"]) / 1000


SERVE_RSS = """
import os, socket, subprocess, sys, time, urllib.request
with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
service = subprocess.Popen(
    [sys.argv[1], "serve", "--interval", "2", "--metrics-port", str(port)],
    stderr=subprocess.DEVNULL,
)
time.sleep(float(sys.argv[2]))
for _ in range(3):  # as Prometheus would: the idle service is one that is scraped
    urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read()
time.sleep(1)
status = open(f"/proc/{service.pid}/status").read()
service.terminate()
service.wait(10)
print(int(status.split("VmRSS:")[1].split()[0]) / 1024)
"""


# `vpn web` under load: started on a free loopback port over the row's home, then for
# argv[3] seconds argv[4] keep-alive HTTP/1.1 connections on 127.0.0.1 fetch the subscriptions
# of the tokens in the home's tokens.json (round robin, as v2rayNG asks: the base64 links), one
# request after another on each; every response must be 200. Prints requests a second and the
# 99th percentile latency. argv[2] "rss" instead measures the process after a second of that
# load and a second of rest (RSS in MB).
WEB_LOAD = """
import asyncio, json, os, socket, subprocess, sys, time
vpn, mode, seconds, connections = sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4])
tokens = json.loads(open(os.path.join(os.environ["VPN_HOME"], "tokens.json")).read())
with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
web = subprocess.Popen([vpn, "web", "--port", str(port)], stderr=subprocess.DEVNULL)
deadline = time.monotonic() + 30
while True:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
        break
    except OSError:
        if time.monotonic() > deadline or web.poll() is not None:
            sys.exit("vpn web did not start")
        time.sleep(0.05)

async def client(index, until, latencies):
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    n = index
    while time.monotonic() < until:
        token = tokens[n % len(tokens)]
        n += connections
        start = time.perf_counter()
        request = f"GET /sub/{token} HTTP/1.1\\r\\nHost: 127.0.0.1\\r\\n"
        writer.write((request + "User-Agent: v2rayNG/1.9\\r\\n\\r\\n").encode())
        head = await reader.readuntil(b"\\r\\n\\r\\n")
        status = head.split(b" ", 2)[1]
        if status != b"200":
            raise SystemExit(f"status {status.decode()}")
        length = int(head.lower().split(b"content-length:")[1].split(b"\\r\\n")[0])
        await reader.readexactly(length)
        latencies.append(time.perf_counter() - start)
    writer.close()

async def load(duration):
    latencies = []
    until = time.monotonic() + duration
    started = time.perf_counter()
    await asyncio.gather(*(client(i, until, latencies) for i in range(connections)))
    return latencies, time.perf_counter() - started

try:
    asyncio.run(load(min(1.0, seconds)))  # warm: imports, caches, the first connections
    if mode == "rss":
        time.sleep(1)
        status = open(f"/proc/{web.pid}/status").read()
        print(int(status.split("VmRSS:")[1].split()[0]) / 1024)
    else:
        latencies, elapsed = asyncio.run(load(seconds))
        latencies.sort()
        p99 = latencies[int(len(latencies) * 0.99) - 1]
        print(json.dumps({"rps": len(latencies) / elapsed, "p99_s": p99}))
finally:
    web.terminate()
    web.wait(10)
"""


# `vpn tui` as the console script runs it (entry point → Typer → the app), with Textual's
# headless driver; the app reports when its first frame is ready (Textual's Ready event, sent
# after the first screen is composed and painted), then quits. The time counts from just before
# the bench started the process (argv[1], time.monotonic(), a clock shared by all processes), so
# interpreter start-up and every import are in it. Written with os.write: Textual captures print.
TUI_FIRST_PAINT = """
import os, sys, time
started = float(sys.argv[1])
os.environ["TEXTUAL_DRIVER"] = "textual.drivers.headless_driver:HeadlessDriver"
import vpn_manager.tui.app as tui

class FirstPaint(tui.VpnApp):
    def on_ready(self):
        super().on_ready()
        os.write(1, f"{time.monotonic() - started}\\n".encode())
        self.exit()

tui.VpnApp = FirstPaint
sys.argv = ["vpn", "tui"]
from vpn_manager.cli.entry import main
main()
"""


def first_line_seconds(out: str) -> float:
    return float(out.split(maxsplit=1)[0])


SUBSCRIBERS = 20  # users whose subscriptions the load fetches, round robin


def home_for_subscriptions(bench: Bench, home: Path) -> None:
    """The N users on one running server, and the subscription tokens of the first
    SUBSCRIBERS of them (made through `vpn user link --subscription`) in tokens.json."""
    home_with_server_and_users(bench, home)
    tokens = []
    for name in bench.user_names()[:SUBSCRIBERS]:
        _, out = bench.run(
            [str(bench.vpn), "--format", "json", "user", "link", name, "--subscription"],
            home,
            capture=True,
        )
        tokens.append(json.loads(out)["subscription_url"].rsplit("/", 1)[1])
    (home / "tokens.json").write_text(json.dumps(tokens))


def web_load(mode: str) -> Command:
    return lambda b, _: [str(b.python), "-c", WEB_LOAD, str(b.vpn), mode, "3", "16"]


def stop_servers(bench: Bench, home: Path) -> None:
    _, out = bench.run([str(bench.vpn), "--format", "json", "server", "list"], home, capture=True)
    for server in json.loads(out):
        bench.run([str(bench.vpn), "server", "stop", server["name"]], home)


def same_engine_then_stop(bench: Bench, home: Path) -> None:
    """The engine that served before the timed adds must still be the one serving: a user
    change on a server with many users must not restart it."""
    before = int((home / "bench-pid").read_text())
    after = server_pid(bench, home)
    stop_servers(bench, home)
    if before != after:
        raise BenchError(
            f"the engine restarted during `vpn user add --server` ({before} -> {after})"
        )


# The REST API's user creation: `vpn web` over a home whose running server holds the N users,
# and one kept-alive HTTP/1.1 connection to its API, made and timed by the bench itself.

API_KEY_NAME = "bench"


@dataclass
class ApiClient:
    """A running `vpn web` (the console script) and one kept-alive connection to its API."""

    process: subprocess.Popen[bytes]
    log: Path
    """Its stderr (shown when it dies)."""
    connection: http.client.HTTPConnection
    key: str
    created: int = 0
    """Users the timed POSTs created (the warm-up's too)."""

    def died(self) -> str:
        tail = self.log.read_text(encoding="utf-8", errors="replace")[-2000:].rstrip()
        return f"`vpn web` exited with status {self.process.returncode}" + (
            f"; its stderr:\n{tail}" if tail else ""
        )

    def stop(self) -> None:
        self.connection.close()
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def home_for_api(bench: Bench, home: Path) -> None:
    """The N users on one running server (as user-add-server), a write key, and `vpn web` on
    free loopback ports (subscriptions and API), with a connection to the API held open."""
    home_with_server_and_users(bench, home)
    _, out = bench.run(
        [str(bench.vpn), "api-key", "create", API_KEY_NAME, "--scope", "write"], home, capture=True
    )
    key = out.strip()
    if not key:
        raise BenchError("`vpn api-key create` printed no key")
    port = free_port()
    log = home.parent / f"web-{port}.log"
    with log.open("wb") as stderr:
        process = subprocess.Popen(
            [
                str(bench.vpn),
                "web",
                "--listen",
                "127.0.0.1",
                "--port",
                str(free_port()),
                "--api-listen",
                "127.0.0.1",
                "--api-port",
                str(port),
            ],
            env=bench.env(home),
            cwd=bench.root,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
    client = ApiClient(process, log, http.client.HTTPConnection("127.0.0.1", port, timeout=30), key)
    bench.apis[home] = client
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            if process.poll() is not None:
                raise BenchError(client.died()) from None
            if time.monotonic() > deadline:
                raise BenchError("`vpn web` did not listen on its API port within 30 s") from None
            time.sleep(0.05)
    client.connection.connect()


def post_user(bench: Bench, home: Path, run: int) -> float:
    """One POST /api/v1/users (a new name, granted the running server) on the kept-alive
    connection; its seconds, from just before the request is sent to the end of the answer.
    The answer must be 201 with the server applied live, over the same connection."""
    client = bench.apis[home]
    name = f"api{run:05d}"
    body = json.dumps({"name": name, "servers": [SERVER]})
    headers = {"Authorization": f"Bearer {client.key}", "Content-Type": "application/json"}
    sock = client.connection.sock
    try:
        start = time.perf_counter()
        client.connection.request("POST", "/api/v1/users", body, headers)
        response = client.connection.getresponse()
        data = response.read()
        elapsed = time.perf_counter() - start
    except (OSError, http.client.HTTPException) as exc:
        problem = client.died() if client.process.poll() is not None else str(exc)
        raise BenchError(f"POST /api/v1/users ({name}) failed: {problem}") from None
    if response.status != 201:
        text = data.decode("utf-8", "replace")[:500]
        raise BenchError(f"POST /api/v1/users ({name}) answered {response.status}: {text}")
    client.created += 1
    applied = json.loads(data).get("applied")
    if applied != [f"{SERVER}: applied live."]:
        raise BenchError(f"POST /api/v1/users ({name}) was not applied live: {applied!r}")
    if sock is None or response.will_close or client.connection.sock is not sock:
        raise BenchError("the API did not keep the connection alive (the row times one)")
    return elapsed


def stop_web_then_check(bench: Bench, home: Path) -> None:
    """Stop `vpn web`; every user the POSTs created is in the database, and the engine that
    served before them is still the one serving (live, never restarted)."""
    client = bench.apis.pop(home)
    client.stop()
    bench.expect_users(home, bench.users + client.created)
    same_engine_then_stop(bench, home)


# Shadowsocks rows: the server's real users, proven by a real sing-box client fetching a page
# from the bench's own HTTP backend through the server (all on 127.0.0.1).

PAGE = b"through the bench server\n"


class BackendHandler(BaseHTTPRequestHandler):
    """GET / answers PAGE; GET /stream sends 1 KiB every 50 ms until the client goes."""

    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        if self.path == "/stream":
            self.send_response(200)
            self.end_headers()
            try:
                while True:
                    self.wfile.write(b"s" * 1024)
                    self.wfile.flush()
                    time.sleep(0.05)
            except OSError:
                return
        self.send_response(200)
        self.send_header("Content-Length", str(len(PAGE)))
        self.end_headers()
        self.wfile.write(PAGE)

    def log_message(self, format: str, *args: Any) -> None:
        return


def install_shadowsocks(bench: Bench, home: Path) -> None:
    """A running Shadowsocks server (the default 2022-blake3-aes-128-gcm) on a free loopback
    port; private destinations allowed, so that clients reach the bench's backend."""
    bench.run(
        [
            str(bench.vpn),
            "server",
            "install",
            "shadowsocks",
            "--name",
            SERVER,
            "--port",
            str(free_port()),
            "--listen",
            "127.0.0.1",
            "--host",
            "127.0.0.1",
            "--allow-private",
        ],
        home,
    )


@contextmanager
def ss_client(bench: Bench, home: Path, user: str) -> Iterator[int]:
    """A sing-box client made from `user`'s printed link; yields its local SOCKS5 port."""
    from vpn_manager.engines.singbox.engine import binary
    from vpn_manager.links import parse_link, singbox_client_config

    _, link = bench.run(
        [str(bench.vpn), "user", "link", user, "--server", SERVER], home, capture=True
    )
    port = free_port()
    config = home.parent / f"client-{port}.json"
    config.write_text(json.dumps(singbox_client_config(parse_link(link.strip()), port)))
    process = subprocess.Popen(
        [binary(), "run", "-c", str(config), "--disable-color"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise BenchError(f"the sing-box client for {user} never listened") from None
                time.sleep(0.02)
        yield port
    finally:
        process.terminate()
        process.wait(10)
        config.unlink(missing_ok=True)


def through(socks: int, backend: int, path: str = "/") -> socket.socket:
    """A connection to the backend through a SOCKS5 proxy, `GET path` sent."""
    sock = socket.create_connection(("127.0.0.1", socks), timeout=5)
    try:
        sock.sendall(b"\x05\x01\x00")
        if sock.recv(2) != b"\x05\x00":
            raise OSError("the SOCKS5 proxy refused")
        sock.sendall(b"\x05\x01\x00\x01" + socket.inet_aton("127.0.0.1") + backend.to_bytes(2))
        reply = sock.recv(10)
        if len(reply) < 2 or reply[1] != 0:
            raise OSError(f"SOCKS5 connect failed: {reply!r}")
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: backend\r\n\r\n".encode())
    except BaseException:
        sock.close()
        raise
    return sock


def reaches_backend(bench: Bench, home: Path, user: str) -> None:
    """`user`'s client gets the backend's page through the server (retried for 5 s)."""
    with ss_client(bench, home, user) as socks:
        deadline = time.monotonic() + 5
        while True:
            try:
                with through(socks, bench.backend()) as sock:
                    data = b""
                    while PAGE not in data and (chunk := sock.recv(4096)):
                        data += chunk
                if PAGE in data:
                    return
                problem = f"got {data[:80]!r}"
            except OSError as exc:
                problem = str(exc)
            if time.monotonic() > deadline:
                raise BenchError(f"{user}'s client did not get through the server: {problem}")
            time.sleep(0.1)


class Keeper:
    """A user's client with a download held open through the server, read in a thread."""

    def __init__(self, bench: Bench, home: Path, user: str) -> None:
        self._client = ss_client(bench, home, user)
        socks = self._client.__enter__()
        self.sock = through(socks, bench.backend(), "/stream")
        self.received = 0
        self.ended = False
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        self.sock.settimeout(None)
        try:
            while chunk := self.sock.recv(65536):
                self.received += len(chunk)
        except OSError:
            pass
        self.ended = True

    def flowing(self) -> bool:
        before = self.received
        time.sleep(0.5)
        return not self.ended and self.received > before

    def close(self) -> None:
        self.sock.close()
        self._client.__exit__(None, None, None)


def home_with_shadowsocks(bench: Bench, home: Path) -> None:
    """A running Shadowsocks server with one user, "keeper", whose client holds a download open
    through it (to prove that the timed change leaves open connections alone)."""
    install_shadowsocks(bench, home)
    bench.run([str(bench.vpn), "user", "add", "keeper", "--server", SERVER], home)
    keeper = Keeper(bench, home, "keeper")
    bench.keepers[home] = keeper
    if not keeper.flowing():
        raise BenchError("keeper's download through the Shadowsocks server does not flow")
    (home / "bench-pid").write_text(str(server_pid(bench, home)))


def added_live(bench: Bench, home: Path) -> None:
    """After `vpn user add <N names> --server`: the same engine process, keeper's download
    still flowing, and the last user's client gets through."""
    before = int((home / "bench-pid").read_text())
    after = server_pid(bench, home)
    if before != after:
        raise BenchError(f"the engine restarted during the live add ({before} -> {after})")
    if not bench.keepers[home].flowing():
        raise BenchError("keeper's open download did not survive the live add")
    reaches_backend(bench, home, bench.user_names()[-1])


def close_keeper_then_stop(bench: Bench, home: Path) -> None:
    keeper = bench.keepers.pop(home, None)
    if keeper is not None:
        keeper.close()
    stop_servers(bench, home)


def home_with_shadowsocks_users(bench: Bench, home: Path) -> None:
    """A running Shadowsocks server holding the N generated users (added live, in one batch)."""
    install_shadowsocks(bench, home)
    progress(f"  adding {bench.users:,} users to a running Shadowsocks server ...")
    elapsed, _ = bench.run(
        [str(bench.vpn), "user", "add", *bench.user_names(), "--server", SERVER], home
    )
    progress(f" {elapsed:.1f} s\n")
    (home / "bench-pid").write_text(str(server_pid(bench, home)))


def restarted_ready(bench: Bench, home: Path) -> None:
    """After `vpn server restart`: a new engine process, and the last user's client gets
    through at once (the command returned only when every user was in)."""
    before = int((home / "bench-pid").read_text())
    after = server_pid(bench, home)
    if before == after:
        raise BenchError(f"`vpn server restart` left the same engine process ({after})")
    (home / "bench-pid").write_text(str(after))
    reaches_backend(bench, home, bench.user_names()[-1])


@dataclass(frozen=True)
class Row:
    id: str
    """Short and stable: for --only and the JSON output."""
    label: str
    """What the table shows; `{users}` becomes the user count."""
    command: Command | None
    """None for a row that times its own work (`timed`)."""
    target: Target | None = None
    setup: Setup = empty_home
    fresh_home: bool = False
    """Set up a new home before every run (untimed) instead of once for the row."""
    expect_users: Callable[[Bench], int] | None = None
    """How many users the home holds after the warm-up run; checked before timing."""
    unit: Unit = "ms"
    cleanup: Callable[[Bench, Path], None] | None = None
    """Untimed, after each run in a fresh home and once after a shared home's runs."""
    check: Callable[[Bench, Path], None] | None = None
    """Untimed, after every run (the warm-up too): raises BenchError if the run did not do
    what it should (so a fast wrong result is never reported as a time)."""
    measure: Callable[[str], float] | None = None
    """When the command reports the figure itself: its stdout → the value (seconds, or MB for
    unit "MB"), used instead of the command's wall time."""
    database: bool = True
    """The command uses the database: measured on SQLite and again on PostgreSQL."""
    own_network: bool = False
    """Runs in the bench's network namespace: PostgreSQL is reached over its unix socket."""
    timed: Timed | None = None
    """Instead of a command: what to time, done by the bench itself (`command` is None)."""

    def __post_init__(self) -> None:
        if (self.command is None) == (self.timed is None):
            raise ValueError(f"row {self.id}: give either a command or `timed`, not both")

    @property
    def requires(self) -> tuple[str, ...]:
        return self.target.requires if self.target else ()

    def title(self, users: int | None) -> str:
        """The label with the user count filled in (N when there is no count yet)."""
        return self.label.format(users="N" if users is None else f"{users:,}")


def vpn(*args: str) -> Command:
    """A command that runs `vpn ARGS...` the same way every run."""
    return lambda bench, _run: [str(bench.vpn), *args]


ROWS: list[Row] = [
    Row("baseline", "python -c pass", lambda b, _: [str(b.python), "-c", "pass"], database=False),
    Row(
        "version",
        "vpn --version",
        vpn("--version"),
        target=WithinFactor(of="baseline", factor=2.0, of_label="python"),
        database=False,
    ),
    Row("help", "vpn --help", vpn("--help"), target=Under(0.100), database=False),
    Row(
        "user-list",
        "vpn user list ({users} users)",
        vpn("user", "list"),
        target=Under(0.300),
        setup=home_with_users,
        expect_users=lambda b: b.users,
    ),
    Row(
        "user-add",
        "vpn user add NAME (into {users})",
        lambda b, run: [str(b.vpn), "user", "add", f"bench{run:05d}"],
        setup=home_with_users,
        expect_users=lambda b: b.users + 1,
    ),
    Row(
        "user-add-batch",
        "vpn user add <{users} names>",
        lambda b, _: [str(b.vpn), "user", "add", *b.user_names()],
        target=Under(10.0),
        fresh_home=True,
        expect_users=lambda b: b.users,
        unit="s",
    ),
    Row(
        "server-install",
        "vpn server install vless-reality",
        lambda b, _: install_args(b),
        fresh_home=True,
        cleanup=stop_servers,
    ),
    Row(
        "user-add-server",
        "vpn user add NAME --server (running, {users} users)",
        lambda b, run: [str(b.vpn), "user", "add", f"bench{run:05d}", "--server", SERVER],
        target=Under(0.150),
        setup=home_with_server_and_users,
        expect_users=lambda b: b.users + 1,
        cleanup=same_engine_then_stop,
    ),
    Row(
        "trojan-ws-add-server",
        "vpn user add NAME --server (running Trojan+WS+TLS, {users} users)",
        lambda b, run: [str(b.vpn), "user", "add", f"bench{run:05d}", "--server", SERVER],
        target=Under(0.150),
        setup=home_with_trojan_ws_server_and_users,
        expect_users=lambda b: b.users + 1,
        cleanup=same_engine_then_stop,
    ),
    Row(
        "poll",
        "one traffic poll, WireGuard server with {users} peers",
        lambda b, run: in_netns(b, "--format", "json", "serve", "--once"),
        target=Under(0.200),
        setup=home_with_wireguard_peers,
        cleanup=remove_netns_server,
        measure=poll_seconds,
        own_network=True,
    ),
    Row(
        "serve-rss",
        "vpn serve idle memory (RSS, engines excluded)",
        lambda b, run: [str(b.python), "-c", SERVE_RSS, str(b.vpn), "6"],
        target=UnderMB(60),
        setup=home_with_server,
        cleanup=stop_servers,
        measure=float,
        unit="MB",
    ),
    Row(
        "tui-first-paint",
        "vpn tui: first frame ({users} users)",
        lambda b, _: [str(b.python), "-c", TUI_FIRST_PAINT, repr(time.monotonic())],
        target=Under(0.500),
        setup=home_with_users,
        expect_users=lambda b: b.users,
        measure=first_line_seconds,
    ),
    Row(
        "user-add-batch-server",
        "vpn user add <{users} names> --server (live)",
        lambda b, _: [str(b.vpn), "user", "add", *b.user_names(), "--server", SERVER],
        target=Under(10.0),
        setup=home_with_server,
        fresh_home=True,
        expect_users=lambda b: b.users,
        unit="s",
        cleanup=stop_servers,
    ),
    Row(
        "ss-add-batch-server",
        "vpn user add <{users} names> --server (Shadowsocks, live)",
        lambda b, _: [str(b.vpn), "user", "add", *b.user_names(), "--server", SERVER],
        target=Under(10.0),
        setup=home_with_shadowsocks,
        fresh_home=True,
        expect_users=lambda b: b.users + 1,
        unit="s",
        check=added_live,
        cleanup=close_keeper_then_stop,
    ),
    Row(
        "sub-rps",
        "vpn web: subscriptions a second ({users} users, 16 connections)",
        web_load("load"),
        target=AtLeast(500),
        setup=home_for_subscriptions,
        measure=lambda out: float(json.loads(out)["rps"]),
        unit="req/s",
        cleanup=stop_servers,
    ),
    Row(
        "sub-p99",
        "vpn web: 99th percentile latency under that load",
        web_load("load"),
        target=Under(0.050),
        setup=home_for_subscriptions,
        measure=lambda out: float(json.loads(out)["p99_s"]),
        cleanup=stop_servers,
    ),
    Row(
        "web-rss",
        "vpn web memory (RSS, after a second of load)",
        web_load("rss"),
        target=UnderMB(80),
        setup=home_for_subscriptions,
        measure=float,
        unit="MB",
        cleanup=stop_servers,
    ),
    Row(
        "api-user-add",
        "REST API: POST /api/v1/users, live apply (running, {users} users)",
        None,
        target=Under(0.015),
        setup=home_for_api,
        expect_users=lambda b: b.users + 1,
        cleanup=stop_web_then_check,
        timed=post_user,
    ),
    Row(
        "ss-restart",
        "vpn server restart (Shadowsocks, {users} users)",
        vpn("server", "restart", SERVER),
        target=Under(10.0),
        setup=home_with_shadowsocks_users,
        expect_users=lambda b: b.users,
        unit="s",
        check=restarted_ready,
        cleanup=stop_servers,
    ),
]


# --------------------------------------------------------------------------------------------
# Measuring
# --------------------------------------------------------------------------------------------


@dataclass
class RowResult:
    row: Row
    label: str
    times_s: list[float] = field(default_factory=list)
    verdict: Verdict = field(default_factory=lambda: Verdict(None))
    postgres: RowResult | None = None
    """The same row on PostgreSQL (the targets are judged on SQLite, the default)."""

    @property
    def median_s(self) -> float:
        return statistics.median(self.times_s)

    def times_json(self) -> dict[str, Any]:
        return {
            "times_ms": [round(t * 1000, 3) for t in self.times_s],
            "median_ms": round(self.median_s * 1000, 3),
            "min_ms": round(min(self.times_s) * 1000, 3),
            "max_ms": round(max(self.times_s) * 1000, 3),
        }

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.row.id,
            "name": self.label,
            **self.times_json(),
            "target": self.row.target.describe() if self.row.target else None,
            "result": self.verdict.word,
            "passed": self.verdict.passed,
            "note": self.verdict.note or None,
            "postgres": self.postgres.times_json() if self.postgres else None,
        }


def measure(
    bench: Bench,
    row: Row,
    runs: int,
    results: Mapping[str, RowResult],
    backend: Backend = "sqlite",
) -> RowResult:
    """One untimed warm-up run, then `runs` timed runs of the row, on one database."""
    result = RowResult(row, row.title(bench.users))

    def new_home(name: str) -> Path:
        return bench.new_home(name, backend, unix_socket=row.own_network)

    shared: Path | None = None
    if not row.fresh_home:
        shared = new_home(row.id)
        row.setup(bench, shared)
    progress(f"  1 warm-up + {runs} timed run{'s' if runs != 1 else ''} ")
    for run in range(runs + 1):
        home = shared
        if home is None:
            home = new_home(f"{row.id}-{run}")
            row.setup(bench, home)
        if row.timed is not None:
            elapsed = row.timed(bench, home, run)
        else:
            assert row.command is not None  # Row.__post_init__: one or the other
            elapsed, out = bench.run(row.command(bench, run), home, capture=row.measure is not None)
            if row.measure is not None:
                elapsed = row.measure(out)
        if row.check is not None:
            row.check(bench, home)
        if run == 0:
            if row.expect_users is not None:
                bench.expect_users(home, row.expect_users(bench))
        else:
            result.times_s.append(elapsed)
            progress(".")
        if shared is None:
            if row.cleanup is not None:
                row.cleanup(bench, home)
            bench.remove_home(home)
    if shared is not None and row.cleanup is not None:
        row.cleanup(bench, shared)
    if row.target is not None and backend == "sqlite":
        result.verdict = row.target.judge(result.median_s, results)
    return result


def select_rows(only: Sequence[str]) -> list[Row]:
    """The rows asked for, plus the rows their targets are judged against, in registry order."""
    if not only:
        return list(ROWS)
    by_id = {row.id: row for row in ROWS}
    wanted: set[str] = set()
    pending = list(only)
    while pending:
        row_id = pending.pop()
        if row_id not in wanted:
            wanted.add(row_id)
            pending.extend(by_id[row_id].requires)
    return [row for row in ROWS if row.id in wanted]


# --------------------------------------------------------------------------------------------
# Reporting
# --------------------------------------------------------------------------------------------


def progress(text: str) -> None:
    sys.stderr.write(text)
    sys.stderr.flush()


def cpu_model() -> str:
    try:
        lines = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        lines = []
    for key in ("model name", "Hardware", "Processor", "cpu model", "cpu"):
        for line in lines:
            name, _, value = line.partition(":")
            if name.strip() == key and value.strip():
                return value.strip()
    return platform.processor() or platform.machine() or "unknown CPU"


def git_revision() -> str | None:
    git = shutil.which("git")
    if git is None:
        return None
    try:
        proc = subprocess.run(
            [git, "-C", str(REPO_ROOT), "describe", "--always", "--dirty"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if proc.returncode != 0:
        return None
    return proc.stdout.strip() or None


def machine_info(bench: Bench) -> dict[str, Any]:
    affinity = getattr(os, "sched_getaffinity", None)
    _, version = bench.run([str(bench.vpn), "--version"], bench.new_home("version"), capture=True)
    return {
        "date": datetime.now().astimezone().isoformat(timespec="seconds"),
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "usable_cores": len(affinity(0)) if affinity else None,
        "load_average": [round(x, 2) for x in os.getloadavg()]
        if hasattr(os, "getloadavg")
        else None,
        "os": platform.platform(),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "python_path": str(bench.python),
        "vpn_version": version.strip(),
        "git": git_revision(),
        "postgres": postgres_version(bench),
    }


def postgres_version(bench: Bench) -> str | None:
    """The PostgreSQL server of the PostgreSQL column (`postgres --version`), if there is one."""
    if bench.postgres is None:
        return None
    done = subprocess.run(
        [str(bench.postgres.bindir / "postgres"), "--version"],
        capture_output=True,
        text=True,
        check=False,
    )
    return done.stdout.strip() or None


def header(info: Mapping[str, Any], runs: int, users: int) -> list[str]:
    cores = f"{info['cores']} cores"
    if info["usable_cores"] not in (None, info["cores"]):
        cores += f" ({info['usable_cores']} usable)"
    load = info["load_average"]
    load_text = f", load {load[0]:.2f}" if load else ""
    revision = f" (git {info['git']})" if info["git"] else ""
    return [
        f"vpn-manager benchmark, {info['date']}",
        f"machine: {info['cpu']}, {cores}{load_text}; {info['os']}",
        f"python:  {info['python']} ({info['python_path']})",
        f"subject: {info['vpn_version']}{revision}; {users:,} users; "
        f"median/min/max of {runs} run{'s' if runs != 1 else ''} after 1 warm-up, wall clock",
        "databases: SQLite (the default: WAL, synchronous=NORMAL); "
        + (
            f"PostgreSQL column: {info['postgres']}, private server on 127.0.0.1, "
            "default settings (fsync, synchronous_commit on)"
            if info["postgres"]
            else "no PostgreSQL column (--no-postgres)"
        ),
    ]


def fmt_time(seconds: float, unit: Unit) -> str:
    if unit == "MB":
        return f"{seconds:.1f} MB"  # a memory row's values are megabytes, not seconds
    if unit == "req/s":
        return f"{seconds:.0f} req/s"  # a rate row's values are requests a second
    return f"{seconds:.2f} s" if unit == "s" else f"{seconds * 1000:.1f} ms"


def table(results: Sequence[RowResult]) -> list[str]:
    """One line per row: the SQLite figures judged against the target, then the PostgreSQL
    median and how many times the SQLite one it is."""
    headers = ["row", "median", "min", "max", "target", "result", "PostgreSQL", "x SQLite"]
    right = [False, True, True, True, False, False, True, True]
    body = []
    dash = "\N{EM DASH}"
    for r in results:
        unit = r.row.unit
        verdict = r.verdict.word + (f" ({r.verdict.note})" if r.verdict.note else "")
        pg = r.postgres
        body.append(
            [
                r.label,
                fmt_time(r.median_s, unit),
                fmt_time(min(r.times_s), unit),
                fmt_time(max(r.times_s), unit),
                r.row.target.describe() if r.row.target else dash,
                verdict,
                fmt_time(pg.median_s, unit) if pg else dash,
                f"{pg.median_s / r.median_s:.2f}x" if pg and r.median_s > 0 else dash,
            ]
        )
    widths = [max(len(line[i]) for line in [headers, *body]) for i in range(len(headers))]

    def line(cells: Sequence[str]) -> str:
        parts = [
            cell.rjust(width) if align else cell.ljust(width)
            for cell, width, align in zip(cells, widths, right, strict=True)
        ]
        return "  ".join(parts).rstrip()

    rule = "  ".join("-" * width for width in widths)
    return [line(headers), rule, *(line(cells) for cells in body)]


# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be at least 1")
    return value


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    rows = "\n".join(f"  {row.id:<16} {row.title(None)}" for row in ROWS)
    parser = argparse.ArgumentParser(
        prog="bench/run.py",
        description="Time the `vpn` console script of this venv against the product spec.",
        epilog=f"rows (ids for --only):\n{rows}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--runs", type=positive_int, default=7, help="timed runs per row (default 7)"
    )
    parser.add_argument(
        "--users", type=positive_int, default=10_000, help="users in the database (default 10000)"
    )
    parser.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="ID",
        help="run only these rows (repeat, or separate with commas); rows a target is judged "
        "against are added",
    )
    parser.add_argument("--json", type=Path, metavar="FILE", help="also write the results here")
    parser.add_argument(
        "--strict", action="store_true", help="exit with status 3 if any row fails its target"
    )
    parser.add_argument(
        "--no-postgres",
        action="store_true",
        help="leave out the PostgreSQL column (which starts a private PostgreSQL server)",
    )
    args = parser.parse_args(argv)
    only = [part.strip() for item in args.only for part in item.split(",") if part.strip()]
    known = {row.id for row in ROWS}
    unknown = [name for name in only if name not in known]
    if unknown:
        parser.error(f"unknown row {', '.join(unknown)}; known rows: {', '.join(sorted(known))}")
    args.only = only
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    python = Path(sys.executable)
    vpn_script = python.parent / "vpn"
    if not vpn_script.is_file():
        sys.stderr.write(
            f"bench: there is no `vpn` console script at {vpn_script}; "
            "install the project into this venv first (pip install -e '.[dev]').\n"
        )
        return 1
    rows = select_rows(args.only)
    postgres: PostgresServer | None = None
    try:
        with tempfile.TemporaryDirectory(prefix="vpn-bench-", ignore_cleanup_errors=True) as tmp:
            if not args.no_postgres and any(row.database for row in rows):
                postgres = start_postgres()
            bench = Bench(
                python=python, vpn=vpn_script, users=args.users, root=Path(tmp), postgres=postgres
            )
            try:
                info = machine_info(bench)
                results: dict[str, RowResult] = {}
                for number, row in enumerate(rows, 1):
                    progress(f"[{number}/{len(rows)}] {row.title(args.users)}\n")
                    result = results[row.id] = measure(bench, row, args.runs, results)
                    progress(f" median {fmt_time(result.median_s, row.unit)}\n")
                    if row.database and postgres is not None:
                        progress("  on PostgreSQL:\n")
                        result.postgres = measure(bench, row, args.runs, results, "postgres")
                        progress(f" median {fmt_time(result.postgres.median_s, row.unit)}\n")
            finally:
                bench.stop_web()  # a row stopped by an error leaves none running
    except CommandFailed as exc:
        progress("\n")
        sys.stderr.write(f"bench: {exc}\n")
        if exc.stderr.strip():
            sys.stderr.write("its stderr:\n" + exc.stderr.rstrip() + "\n")
        return 1
    except (BenchError, PostgresError) as exc:
        progress("\n")
        sys.stderr.write(f"bench: {exc}\n")
        return 1
    except KeyboardInterrupt:
        sys.stderr.write("\nbench: interrupted.\n")
        return 130
    finally:
        if postgres is not None:
            postgres.stop()

    measured = list(results.values())
    print("\n".join([*header(info, args.runs, args.users), "", *table(measured)]))
    if args.json is not None:
        document = {**info, "runs": args.runs, "users": args.users}
        document["rows"] = [r.as_json() for r in measured]
        args.json.write_text(
            json.dumps(document, indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
        )
    failed = [r.row.id for r in measured if r.verdict.passed is False]
    return 3 if args.strict and failed else 0


def start_postgres() -> PostgresServer:
    """The private PostgreSQL server of the PostgreSQL column, started."""
    server = PostgresServer()
    progress("starting a private PostgreSQL server for the PostgreSQL column ...")
    try:
        server.start()
    except BaseException:
        server.stop()
        raise
    progress(f" port {server.port}\n")
    return server


if __name__ == "__main__":
    sys.exit(main())
