"""VLESS, Trojan and VMess on Xray over every transport and security the CLI accepts, end to end,
with the client a user gets: each server installed with `vpn server install`, alice added with
`vpn user add`, and a real client run from the config that `vpn user config alice --server S
--client xray` prints fetches bytes through it; so does `--client sing-box`'s on the TLS servers
over raw, ws and httpupgrade (what the sing-box build here has), and its config for XHTTP is
refused with a sentence. Then the live changes on Trojan+WebSocket+TLS, VMess+gRPC+TLS and
VLESS over XHTTP and HTTPUpgrade with TLS: a second user added while the first streams gets in,
the first stream and the engine's PID survive, and `vpn user disable` cuts the first user's open
stream within 5 s. All on 127.0.0.1.

For speed, one home holds a server of every case (installed by a module fixture, a few at a
time), and every client is started and makes its first connection at once (a fresh REALITY
server's first connection takes seconds); each case then fetches its own bytes."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.e2e.conftest import SNI, Vpn, _wait_for_port, curl_fails, curl_via, end_home_processes
from tests.e2e.net import BACKEND_PAGE, Stream, end_process, free_port, http_backend, tls13_site
from vpn_manager.kinds import REALITY_NETWORKS, Network, Security

pytestmark = pytest.mark.usefixtures("need_root")

TLS_NAME = "vpn.test"
PAYLOAD = 20_000
FLOW_S = 0.5
"""How long a stream is watched for more bytes (the backend sends a chunk every 50 ms)."""
CASES = [
    (protocol, network, security)
    for protocol, network, security in itertools.product(
        ("vless", "trojan", "vmess"), list(Network), list(Security)
    )
    # REALITY: VLESS only (Trojan and VMess links cannot carry it), over what Xray allows.
    if security is Security.TLS or (protocol == "vless" and network in REALITY_NETWORKS)
]
SINGBOX_NETWORKS = (Network.RAW, Network.WS, Network.HTTPUPGRADE)
"""The transports of the sing-box build here (no gRPC in it; no XHTTP in sing-box at all). It
has no uTLS either, which REALITY needs: sing-box is run against the TLS servers."""
CLIENT_CASES = [("xray", *case) for case in CASES] + [
    ("sing-box", *case) for case in CASES if case[1] in SINGBOX_NETWORKS and case[2] is Security.TLS
]


def marked(case: tuple[str, str, Network, Security]) -> object:
    """A case as pytest.param, with its id."""
    return pytest.param(*case, id=case_id(case))


def name_of(protocol: str, network: Network, security: Security) -> str:
    return f"{protocol}-{network.value}-{security.value}"


def case_id(case: tuple[object, ...]) -> str:
    return "-".join(getattr(part, "value", str(part)) for part in case)


def install_args(protocol: str, network: Network, security: Security, site: int) -> list[str]:
    """`vpn server install` for one case; the transport options vary across the cases."""
    args = ["server", "install", protocol, "--name", name_of(protocol, network, security)]
    args += ["--port", str(free_port()), "--listen", "127.0.0.1", "--host", "127.0.0.1"]
    args += ["--allow-private", "--transport", network.value, "--security", security.value]
    if security is Security.REALITY:
        args += ["--sni", SNI, "--dest", f"127.0.0.1:{site}"]
    else:
        args += ["--sni", TLS_NAME]
        if network is Network.GRPC:
            args += ["--service-name", f"{protocol}.Tunnel"]
        if network in (Network.WS, Network.HTTPUPGRADE, Network.XHTTP):
            args += ["--path", f"/{protocol}-{network.value}", "--host-header", "cdn.test"]
        if network is Network.XHTTP:
            args += ["--xhttp-mode", "packet-up"]
    return args


@contextmanager
def printed_client(vpn: Vpn, user: str, server: str, client: str, workdir: Path) -> Iterator[int]:
    """The config `vpn user config USER --server S --client C` prints, saved as printed and run by
    that client (Xray through the binding's child, sing-box's binary); yields its local port."""
    from vpn_manager.engines.singbox.engine import binary

    port = free_port()
    printed = vpn.ok(
        "user", "config", user, "--server", server, "--client", client, "--socks-port", str(port)
    ).stdout
    json.loads(printed)  # the whole of stdout is the config
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / f"{client}-{server}-{user}.json"
    path.write_text(printed)
    if client == "xray":
        argv = [sys.executable, "-m", "vpn_manager.engines.xray.child", str(path)]
    else:
        argv = [binary(), "run", "-c", str(path), "--disable-color"]
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_for_port(port, process)
        yield port
    finally:
        end_process(process)


@pytest.fixture(scope="module")
def backend_port() -> Iterator[int]:
    with http_backend() as port:
        yield port


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Vpn]:
    """One home with a server of every case and alice on all of them."""
    root = tmp_path_factory.mktemp("streams")
    vpn = Vpn(root / "home")
    try:
        with tls13_site(root, SNI) as site, ThreadPoolExecutor(3) as pool:
            list(pool.map(lambda c: vpn.ok(*install_args(c[0], c[1], c[2], site)), CASES))
            servers = [arg for case in CASES for arg in ("--server", name_of(*case))]
            vpn.ok("user", "add", "alice", *servers)
            yield vpn
    finally:
        end_home_processes(vpn.home)


@dataclass
class Client:
    port: int
    first: str
    """What its first fetch (of the backend's page) got, or why it failed."""


@pytest.fixture(scope="module")
def clients(
    home: Vpn, backend_port: int, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Client]]:
    """Every case's client from its printed config, all started at once, each with its first
    fetch done (a fresh REALITY server's first connection is slow: they wait side by side)."""
    workdir = tmp_path_factory.mktemp("clients")
    page = f"http://127.0.0.1:{backend_port}/"

    lock = threading.Lock()

    def start(stack: ExitStack, case: tuple[str, str, Network, Security]) -> Client:
        client, protocol, network, security = case
        server = name_of(protocol, network, security)
        running = printed_client(home, "alice", server, client, workdir)
        try:
            port = running.__enter__()
        except AssertionError as problem:
            return Client(0, f"the client did not start: {problem}")
        with lock:
            stack.push(running.__exit__)
        try:
            first = curl_via(port, page)
        except AssertionError as problem:
            first = str(problem)
        return Client(port, first)

    with ExitStack() as stack, ThreadPoolExecutor(8) as pool:
        started = list(pool.map(lambda case: start(stack, case), CLIENT_CASES))
        yield dict(zip(map(case_id, CLIENT_CASES), started, strict=True))


@pytest.mark.parametrize(
    ("client", "protocol", "network", "security"), [marked(case) for case in CLIENT_CASES]
)
def test_the_printed_client_config_moves_bytes(
    clients: dict[str, Client],
    backend_port: int,
    client: str,
    protocol: str,
    network: Network,
    security: Security,
) -> None:
    started = clients[case_id((client, protocol, network, security))]
    assert started.first == BACKEND_PAGE.decode(), started.first
    url = f"http://127.0.0.1:{backend_port}/bytes/{PAYLOAD}"
    assert curl_via(started.port, url, attempts_for=0) == "x" * PAYLOAD


def test_singbox_is_refused_for_xhttp_in_one_sentence(home: Vpn) -> None:
    for case in CASES:
        if case[1] is not Network.XHTTP:
            continue
        server = name_of(*case)
        done = home("user", "config", "alice", "--server", server, "--client", "sing-box")
        assert done.code != 0, done.stdout
        assert done.stdout == ""
        assert f"sing-box has no XHTTP transport, so it cannot reach alice@{server}." in done.stderr
        assert "Traceback" not in done.stderr


def pid_of(vpn: Vpn, server: str) -> int:
    status = vpn.json("server", "status", server)
    assert isinstance(status, dict)
    assert status["healthy"], status
    assert status["engine"] == "xray", status
    return int(status["pid"])


@pytest.mark.parametrize(
    ("protocol", "network"),
    [
        ("trojan", Network.WS),
        ("vmess", Network.GRPC),
        ("vless", Network.XHTTP),
        ("vless", Network.HTTPUPGRADE),
    ],
)
def test_live_add_and_disable_leave_other_users_alone(
    vpn: Vpn, backend: int, tmp_path: Path, protocol: str, network: Network
) -> None:
    vpn.ok(*install_args(protocol, network, Security.TLS, 0))
    server = name_of(protocol, network, Security.TLS)
    vpn.ok("user", "add", "alice", "--server", server)
    pid = pid_of(vpn, server)
    page = f"http://127.0.0.1:{backend}/"
    with printed_client(vpn, "alice", server, "xray", tmp_path / "alice") as alice:
        assert curl_via(alice, page) == BACKEND_PAGE.decode()
        stream = Stream(alice, backend)
        try:
            assert stream.flowing(FLOW_S), "alice's download does not flow"
            vpn.ok("user", "add", "bob", "--server", server)
            assert pid_of(vpn, server) == pid, "adding a user restarted the engine"
            assert stream.flowing(FLOW_S), "adding bob disturbed alice's open connection"
            with printed_client(vpn, "bob", server, "xray", tmp_path / "bob") as bob:
                assert curl_via(bob, page, attempts_for=5) == BACKEND_PAGE.decode()
                bob_stream = Stream(bob, backend)
                try:
                    assert bob_stream.flowing(FLOW_S)
                    # Per-user counters (StatsService): each user's bytes under their name.
                    # The engine has sent alice at least what her client has read by now.
                    got = stream.received
                    usage = vpn.json("server", "usage", server)
                    assert isinstance(usage, list)
                    down = {row["name"]: row["download_bytes"] for row in usage}
                    assert down["alice"] >= got > 10_000, (got, usage)
                    assert down["bob"] > 0, usage
                    vpn.ok("user", "disable", "alice")
                    deadline = time.monotonic() + 5
                    while stream.ended is None and time.monotonic() < deadline:
                        time.sleep(0.1)
                    assert stream.ended is not None, "alice's open stream still carries traffic"
                    assert curl_fails(alice, page)
                    assert bob_stream.flowing(FLOW_S), "disabling alice cut bob too"
                    assert pid_of(vpn, server) == pid
                finally:
                    bob_stream.close()
            vpn.ok("user", "enable", "alice")
            assert curl_via(alice, page) == BACKEND_PAGE.decode()
        finally:
            stream.close()
