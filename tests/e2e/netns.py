"""Network namespaces for end-to-end tests of tunnels (WireGuard first).

`network()` makes a "server" and a "client" namespace joined by a veth pair and deletes both
afterwards, then checks that nothing is left behind. Inside them: `http_server` (a known page,
`/bytes/N` and a slow `/stream`), `wg_quick_client` (a real `wg-quick` client from a .conf text),
`fetch` and `Download` (curl in a namespace), and `wg_dump` (`wg show IF dump`, parsed).

Every command runs through `ip netns exec`, which gives it a mount namespace of its own; the
harness also bind-mounts a private directory of the namespace over `/run/wireguard` there.
Userspace WireGuard (wireguard-go) keeps its control socket in `/run/wireguard/IFNAME.sock`, which
is NOT network-namespaced: without that, two namespaces (two xdist workers) with a `wgs0` each would
fight over one socket ("UAPI listen error: unix socket in use"), and `wg show` in a namespace would
list and talk to interfaces of the host and of other namespaces. Processes started with
`Namespace.run`/`Namespace.popen` (and their children, such as the wireguard-go that wg-quick
starts) see only their own namespace's interfaces.

Nothing here sends traffic anywhere but inside the namespaces it creates.
"""

from __future__ import annotations

import contextlib
import os
import random
import re
import secrets
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import Any, TypedDict

import pytest

from tests.e2e.net import end_process

PREFIX = "vpnt-"
PAGE = "hello from inside the namespace\n"
"""What `http_server` answers on every path but `/bytes/N` and `/stream`."""

WIREGUARD_RUN = Path("/run/wireguard")
_IN_NAMESPACE = 'mount --bind "$0" /run/wireguard && exec "$@"'
_IFNAME = re.compile(r"^[a-zA-Z0-9_=+.-]{1,15}$")

_TOOLS = {
    "ip": "iproute2",
    "wg": "wireguard-tools",
    "wg-quick": "wireguard-tools",
    "wireguard-go": "wireguard-go",
    "nft": "nftables",
    "curl": "curl",
    "mount": "mount",
}


def require_root_and_tools() -> None:
    """Fail (never skip) naming everything these tests need that this machine lacks."""
    missing: list[str] = []
    if os.geteuid() != 0:
        missing.append(f"root (running as uid {os.geteuid()}; namespaces need CAP_SYS_ADMIN)")
    for tool, package in _TOOLS.items():
        if shutil.which(tool) is None:
            missing.append(f"{tool} (Debian package {package})")
    tun = Path("/dev/net/tun")
    if not tun.is_char_device():
        missing.append("/dev/net/tun (wireguard-go needs TUN devices)")
    if missing:
        pytest.fail(
            "the network-namespace tests need: " + ", ".join(missing) + ". Install with "
            "`apt-get install -y --no-install-recommends iproute2 wireguard-tools wireguard-go "
            "nftables curl` and run as root.",
            pytrace=False,
        )


class NamespaceError(AssertionError):
    """A command in a namespace failed, or a namespace could not be made or removed."""


class Namespace:
    """A network namespace named `vpnt-` + random hex (+ `-label`), with `lo` up.

    Delete it with `delete()` (or use it as a context manager): that ends every process still in
    it and removes it.
    """

    def __init__(self, label: str = "") -> None:
        if label and not re.fullmatch(r"[a-z0-9]{1,4}", label):
            raise ValueError(f"label must be 1-4 lowercase letters or digits, not {label!r}")
        self.address: str | None = None
        """This namespace's address on the veth pair, once `network()` has made one."""
        self._children: list[subprocess.Popen[Any]] = []
        self.deleted = False
        WIREGUARD_RUN.mkdir(mode=0o755, parents=True, exist_ok=True)
        for _ in range(5):
            name = PREFIX + secrets.token_hex(4) + (f"-{label}" if label else "")
            made = subprocess.run(
                ["ip", "netns", "add", name], capture_output=True, text=True, check=False
            )
            if made.returncode == 0:
                break
            if "exists" not in made.stderr:
                raise NamespaceError(f"ip netns add {name} failed: {made.stderr.strip()}")
        else:
            raise NamespaceError("could not find a free namespace name")
        self.name = name
        self.inode = os.stat(f"/run/netns/{name}").st_ino
        self.wireguard_dir = Path(tempfile.mkdtemp(prefix=f"{name}-wg-"))
        """Seen as /run/wireguard by everything run in this namespace (wireguard-go sockets)."""
        try:
            self.run(["ip", "link", "set", "lo", "up"])
        except BaseException:
            self.delete()
            raise

    def __repr__(self) -> str:
        return f"Namespace({self.name!r}, address={self.address!r})"

    def __enter__(self) -> Namespace:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.delete()

    def command(self, argv: Sequence[str]) -> list[str]:
        """The host command line that runs `argv` inside this namespace."""
        prefix = ["ip", "netns", "exec", self.name, "sh", "-c", _IN_NAMESPACE]
        return [*prefix, str(self.wireguard_dir), *argv]

    def run(
        self,
        argv: Sequence[str],
        *,
        check: bool = True,
        timeout: float = 30,
        input: str | None = None,
        env: Mapping[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run `argv` in the namespace and capture its output. With `check`, a non-zero exit
        raises NamespaceError with stderr. (A command that leaves a daemon holding its stdout or
        stderr makes this wait until `timeout`.)"""
        done = subprocess.run(
            self.command(argv),
            capture_output=True,
            text=True,
            timeout=timeout,
            input=input,
            env=env,
            stdin=None if input is not None else subprocess.DEVNULL,
            check=False,
        )
        if check and done.returncode != 0:
            raise NamespaceError(
                f"`{' '.join(argv)}` in {self.name} exited with {done.returncode}: "
                f"{(done.stderr or done.stdout).strip()}"
            )
        return done

    def popen(self, argv: Sequence[str], **kwargs: Any) -> subprocess.Popen[Any]:
        """Start `argv` in the namespace (keyword arguments go to subprocess.Popen). The process
        is ended by `delete()` if it is still running; its pid is the pid of `argv` itself."""
        kwargs.setdefault("stdin", subprocess.DEVNULL)
        process: subprocess.Popen[Any] = subprocess.Popen(self.command(argv), **kwargs)
        self._children.append(process)
        return process

    def pids(self) -> list[int]:
        """Live (not zombie) processes in the namespace, from `ip netns pids`."""
        if self.deleted:
            return _processes_in(self.inode)
        listed = subprocess.run(
            ["ip", "netns", "pids", self.name], capture_output=True, text=True, check=False
        )
        return [int(pid) for pid in listed.stdout.split() if _alive(int(pid))]

    def _targets(self) -> set[int]:
        running = {child.pid for child in self._children if child.poll() is None}
        return running | set(self.pids())

    def delete(self) -> None:
        """End every process in the namespace (SIGTERM, then SIGKILL after a second), reap the
        ones this object started, and delete the namespace. Safe to call twice."""
        if self.deleted:
            return
        for sig, grace in ((signal.SIGTERM, 1.0), (signal.SIGKILL, 3.0)):
            # Our own children too: one just started may not have entered the namespace yet.
            targets = self._targets()
            if not targets:
                break
            for pid in targets:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, sig)
            deadline = time.monotonic() + grace
            while self._targets() and time.monotonic() < deadline:
                time.sleep(0.01)
        for child in self._children:
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.wait(1)
        removed = subprocess.run(
            ["ip", "netns", "delete", self.name], capture_output=True, text=True, check=False
        )
        self.deleted = True
        shutil.rmtree(self.wireguard_dir, ignore_errors=True)
        if removed.returncode != 0:
            raise NamespaceError(f"ip netns delete {self.name} failed: {removed.stderr.strip()}")

    def leftovers(self) -> list[str]:
        """What of this namespace is still there: its name, processes in it, our children
        still running, its /run/wireguard directory."""
        found: list[str] = []
        listed = _host(["ip", "netns", "list"])
        if any(line.split()[0] == self.name for line in listed.splitlines() if line.strip()):
            found.append(f"namespace {self.name} still listed by `ip netns list`")
        for pid in _processes_in(self.inode):
            found.append(f"process {pid} ({_cmdline(pid)}) still in {self.name}")
        for child in self._children:
            if child.poll() is None:
                found.append(f"child {child.pid} ({_cmdline(child.pid)}) still running")
        if self.wireguard_dir.exists():
            found.append(f"{self.wireguard_dir} still exists")
        return found


def _host(argv: Sequence[str]) -> str:
    """The output of a read-only command on the host (empty if it fails)."""
    return subprocess.run(argv, capture_output=True, text=True, check=False).stdout


def _state(pid: int) -> str | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[0]


def _alive(pid: int) -> bool:
    return _state(pid) not in (None, "Z", "X")


def _cmdline(pid: int) -> str:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return "?"
    return raw.replace(b"\0", b" ").decode(errors="replace").strip()


def _processes_in(inode: int) -> list[int]:
    """Live processes whose network namespace is `inode` (works after the name is gone)."""
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            if os.stat(f"/proc/{entry.name}/ns/net").st_ino != inode:
                continue
        except OSError:
            continue
        if _alive(int(entry.name)):
            found.append(int(entry.name))
    return found


_subnets_lock = threading.Lock()
_subnets_in_use: set[int] = set()


def _pick_subnet() -> int:
    """A third octet X for 10.222.X.0/24 that this process is not using and the host has no
    address in. (Each namespace has its own addresses, so workers cannot clash anyway; distinct
    subnets keep logs unambiguous and leave room for joining networks later.)"""
    host = _host(["ip", "-4", "-o", "addr"])
    taken = {int(x) for x in re.findall(r"inet 10\.222\.(\d+)\.", host)}
    with _subnets_lock:
        free = [x for x in range(1, 255) if x not in taken | _subnets_in_use]
        if not free:
            raise NamespaceError("no free 10.222.X.0/24 subnet")
        x = random.choice(free)
        _subnets_in_use.add(x)
        return x


@contextmanager
def network() -> Iterator[tuple[Namespace, Namespace]]:
    """A server and a client namespace joined by a veth pair: server 10.222.X.1/24, client
    10.222.X.2/24 with its default route via the server (so split and full tunnels have a route;
    the server does not forward). Both are deleted on exit, even after a failure, and then it is
    checked that no namespace, veth or process of theirs is left (an AssertionError, or a note
    on the exception already raised)."""
    x = _pick_subnet()
    made: list[Namespace] = []
    veths: list[str] = []
    failure: BaseException | None = None
    try:
        server = Namespace("s")
        made.append(server)
        client = Namespace("c")
        made.append(client)
        tag = server.name[len(PREFIX) : len(PREFIX) + 8]
        server_if, client_if = f"vs-{tag}", f"vc-{tag}"
        veths += [server_if, client_if]
        # Made directly inside the namespaces: the host never sees these names.
        subprocess.run(
            [
                *("ip", "-n", server.name, "link", "add", server_if, "type", "veth"),
                *("peer", "name", client_if, "netns", client.name),
            ],
            check=True,
            capture_output=True,
        )
        server.address, client.address = f"10.222.{x}.1", f"10.222.{x}.2"
        for ns, ifname in ((server, server_if), (client, client_if)):
            ns.run(["ip", "address", "add", f"{ns.address}/24", "dev", ifname])
            ns.run(["ip", "link", "set", ifname, "up"])
        client.run(["ip", "route", "add", "default", "via", server.address])
        yield server, client
    except BaseException as exc:
        failure = exc
        raise
    finally:
        problems: list[str] = []
        for ns in made:
            try:
                ns.delete()
            except NamespaceError as exc:
                problems.append(str(exc))
        for ns in made:
            problems += ns.leftovers()
        host_links = _host(["ip", "-o", "link", "show"])
        problems += [f"veth {name} left on the host" for name in veths if name in host_links]
        with _subnets_lock:
            _subnets_in_use.discard(x)
        if problems:
            message = "network() left things behind: " + "; ".join(problems)
            if failure is None:
                raise AssertionError(message)
            failure.add_note(message)


_HTTP_SERVER = r"""
import socket, sys, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PAGE = sys.argv[3].encode()

class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        try:
            if self.path.startswith("/bytes/"):
                count = int(self.path.rsplit("/", 1)[1])
                self.send_response(200)
                self.send_header("Content-Length", str(count))
                self.end_headers()
                chunk = b"x" * 65536
                while count > 0:
                    self.wfile.write(chunk[: min(count, len(chunk))])
                    count -= len(chunk)
            elif self.path.startswith("/stream"):
                self.send_response(200)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Connection", "close")
                self.end_headers()
                deadline = time.monotonic() + 120
                while time.monotonic() < deadline:
                    self.wfile.write(b"s" * 1024)
                    self.wfile.flush()
                    time.sleep(0.05)
                self.close_connection = True
            else:
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(PAGE)))
                self.end_headers()
                self.wfile.write(PAGE)
        except OSError:
            self.close_connection = True

    def log_message(self, *args):
        pass

class Server(ThreadingHTTPServer):
    daemon_threads = True
    address_family = socket.AF_INET6 if ":" in sys.argv[1] else socket.AF_INET

    def handle_error(self, request, client_address):
        pass

server = Server((sys.argv[1], int(sys.argv[2])), Handler)
print("ready", flush=True)
server.serve_forever()
"""


@contextmanager
def http_server(ns: Namespace, address: str, port: int) -> Iterator[str]:
    """Serve HTTP on address:port inside `ns` (which must have that address) until exit; yields
    the base URL. `/` (any path) is PAGE, `/bytes/N` is N bytes, `/stream` sends 1 KiB every
    50 ms for up to two minutes. Returns once the socket listens."""
    with tempfile.TemporaryFile() as errors:
        process = ns.popen(
            [sys.executable, "-c", _HTTP_SERVER, address, str(port), PAGE],
            stdout=subprocess.PIPE,
            stderr=errors,
        )
        assert process.stdout is not None
        try:
            ready, _, _ = select.select([process.stdout], [], [], 15)
            line = process.stdout.readline() if ready else b""
            if line.strip() != b"ready":
                process.kill()
                process.wait()
                errors.seek(0)
                raise NamespaceError(
                    f"http_server on {address}:{port} in {ns.name} did not start: "
                    + errors.read().decode(errors="replace").strip()[-2000:]
                )
            host = f"[{address}]" if ":" in address else address
            yield f"http://{host}:{port}"
        finally:
            if process.poll() is None:
                end_process(process)
            process.stdout.close()


class FetchFailed(AssertionError):
    """curl in a namespace failed (no route, refused, timed out, HTTP error)."""


def fetch(ns: Namespace, url: str, timeout: float = 10.0) -> str:
    """GET `url` with curl inside `ns`; the body, or FetchFailed with curl's reason."""
    done = ns.run(
        ["curl", "-sS", "--fail", "--max-time", str(timeout), url],
        check=False,
        timeout=timeout + 10,
    )
    if done.returncode != 0:
        raise FetchFailed(
            f"curl {url} in {ns.name} failed ({done.returncode}): {done.stderr.strip()}"
        )
    return done.stdout


class Download:
    """A long download (normally `http_server`'s /stream) by curl inside a namespace, read in a
    thread: records the bytes received over time and when the last arrived.

    `ended` is None while curl runs, else why it stopped. A tunnel that stops carrying packets
    does not end the download: it stalls (`flowing()` turns False, `ended` stays None).
    """

    def __init__(self, ns: Namespace, url: str) -> None:
        self.url = url
        self.received = 0
        self.started = time.monotonic()
        self.last = self.started
        self.samples: list[tuple[float, int]] = []
        """(time.monotonic(), total bytes) after each read."""
        self.ended: str | None = None
        self._process = ns.popen(
            ["curl", "-sS", "-N", "--max-time", "600", url],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        assert self._process.stdout is not None
        assert self._process.stderr is not None
        fd = self._process.stdout.fileno()
        while chunk := os.read(fd, 65536):
            now = time.monotonic()
            self.received += len(chunk)
            self.last = now
            self.samples.append((now, self.received))
        reason = self._process.stderr.read().decode(errors="replace").strip()
        code = self._process.wait()
        self.ended = f"curl exited with {code}" + (f": {reason}" if reason else "")

    def flowing(self, within: float = 2.0) -> bool:
        """Do bytes still arrive? Waits `within` seconds and answers whether any arrived."""
        before = self.received
        time.sleep(within)
        return self.ended is None and self.received > before

    def wait_for(self, count: int, timeout: float = 10.0) -> None:
        """Wait until at least `count` bytes have arrived."""
        deadline = time.monotonic() + timeout
        while self.received < count:
            if self.ended is not None or time.monotonic() > deadline:
                raise AssertionError(
                    f"{self.url}: {self.received} of {count} bytes, ended: {self.ended}"
                )
            time.sleep(0.01)

    def close(self) -> None:
        if self._process.poll() is None:
            self._process.terminate()
        try:
            self._process.wait(5)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        self._thread.join(5)
        for pipe in (self._process.stdout, self._process.stderr):
            if pipe is not None:
                pipe.close()

    def __enter__(self) -> Download:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


class WgPeer(TypedDict):
    public_key: str
    preshared_key: str | None
    endpoint: str | None
    allowed_ips: list[str]
    latest_handshake: int
    """Unix time of the latest handshake; 0 if there was none."""
    rx: int
    tx: int
    persistent_keepalive: int | None


def wg_dump(ns: Namespace, ifname: str) -> list[WgPeer]:
    """The peers of `ifname` in `ns`, from `wg show IFNAME dump`."""
    lines = ns.run(["wg", "show", ifname, "dump"]).stdout.splitlines()
    peers: list[WgPeer] = []
    for line in lines[1:]:  # the first line is the interface itself
        key, psk, endpoint, allowed, handshake, rx, tx, keepalive = line.split("\t")
        peers.append(
            WgPeer(
                public_key=key,
                preshared_key=None if psk == "(none)" else psk,
                endpoint=None if endpoint == "(none)" else endpoint,
                allowed_ips=[] if allowed == "(none)" else allowed.split(","),
                latest_handshake=int(handshake),
                rx=int(rx),
                tx=int(tx),
                persistent_keepalive=None if keepalive == "off" else int(keepalive),
            )
        )
    return peers


def wg_keypair() -> tuple[str, str]:
    """A fresh WireGuard (private, public) key pair from `wg genkey` / `wg pubkey`."""
    private = subprocess.run(["wg", "genkey"], capture_output=True, text=True, check=True).stdout
    public = subprocess.run(
        ["wg", "pubkey"], input=private, capture_output=True, text=True, check=True
    ).stdout
    return private.strip(), public.strip()


_DNS_LINE = re.compile(r"^\s*dns\s*=(.*)$", re.IGNORECASE)


def dns_servers(conf_text: str) -> list[str]:
    """The values of the DNS= lines of a wg-quick .conf (servers and search domains)."""
    found: list[str] = []
    for line in conf_text.splitlines():
        if match := _DNS_LINE.match(line.split("#", 1)[0]):
            found += [value.strip() for value in match.group(1).split(",") if value.strip()]
    return found


def strip_dns(conf_text: str) -> str:
    """`conf_text` without its DNS= lines."""
    kept = [line for line in conf_text.splitlines() if not _DNS_LINE.match(line.split("#", 1)[0])]
    return "\n".join(kept) + "\n"


class WgQuickFailed(AssertionError):
    """`wg-quick up` failed (it has already removed what it made)."""


@contextmanager
def wg_quick_client(ns: Namespace, conf_text: str, ifname: str = "wgc0") -> Iterator[None]:
    """Bring up a WireGuard client in `ns` with the real `wg-quick up` from `conf_text`, and
    `wg-quick down` on exit.

    Without a kernel module wg-quick starts `wireguard-go IFNAME` by itself (no environment
    variable needed). DNS= lines are removed first: wg-quick hands them to `resolvconf`, which is
    not installed here (wg-quick then fails with 127 and removes the interface), and which would
    rewrite the host's /etc/resolv.conf if it were, since namespaces share /etc. Check the DNS
    line of a generated config with `dns_servers(conf_text)` instead.
    """
    if not _IFNAME.match(ifname):
        raise ValueError(f"wg-quick needs an interface name of 1-15 of [a-zA-Z0-9_=+.-]: {ifname}")
    directory = Path(tempfile.mkdtemp(prefix=f"{ns.name}-wgq-"))  # mode 0700
    path = directory / f"{ifname}.conf"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as conf:
        conf.write(strip_dns(conf_text))
    # With LOG_LEVEL set, wireguard-go's daemon keeps wg-quick's stdout/stderr open and run()
    # would wait for them until its timeout.
    env = {k: v for k, v in os.environ.items() if k != "LOG_LEVEL"}
    try:
        up = ns.run(["wg-quick", "up", str(path)], check=False, env=env)
        if up.returncode != 0:
            raise WgQuickFailed(
                f"wg-quick up {ifname} in {ns.name} exited with {up.returncode}:\n"
                + up.stderr.strip()
            )
        try:
            yield
        finally:
            if not ns.deleted:
                _wg_quick_down(ns, path, ifname, env)
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def _wg_quick_down(ns: Namespace, path: Path, ifname: str, env: Mapping[str, str]) -> None:
    down = ns.run(["wg-quick", "down", str(path)], check=False, env=env)
    if down.returncode != 0 and ns.run(["ip", "link", "show", ifname], check=False).returncode == 0:
        ns.run(["ip", "link", "delete", ifname], check=False)
