"""VLESS, Trojan and VMess on Xray over every transport and security the CLI accepts, end to end:
each server installed with `vpn server install`, a user added with `vpn user add`, and a real
Xray client (built from the stored settings: tests/e2e/xray_stream.py) fetches a page through
it. Then the live changes on Trojan+WebSocket+TLS and VMess+gRPC+TLS: a second user added while
the first streams gets in, the first stream and the engine's PID survive, and `vpn user disable`
cuts the first user's open stream within 5 s. All on 127.0.0.1."""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.e2e.conftest import SNI, Vpn, curl_fails, curl_via, end_home_processes
from tests.e2e.net import BACKEND_PAGE, Stream, free_port, http_backend, tls13_site
from tests.e2e.xray_stream import outbound, stream_client
from vpn_manager.kinds import REALITY_NETWORKS, Network, Security

pytestmark = pytest.mark.usefixtures("need_root")

TLS_NAME = "vpn.test"
CASES = [
    (protocol, network, security)
    for protocol, network, security in itertools.product(
        ("vless", "trojan", "vmess"), list(Network), list(Security)
    )
    if security is Security.TLS or network in REALITY_NETWORKS
]


def name_of(protocol: str, network: Network, security: Security) -> str:
    return f"{protocol}-{network.value}-{security.value}"


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


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Vpn]:
    """One home with a server of every case and alice on all of them (the installs are what
    takes time; each case then runs its own client)."""
    root = tmp_path_factory.mktemp("streams")
    vpn = Vpn(root / "home")
    try:
        with tls13_site(root, SNI) as site, ThreadPoolExecutor(2) as pool:
            # Two at a time (commands on one home may run at once): the installs are most of
            # the time this module takes.
            list(pool.map(lambda c: vpn.ok(*install_args(c[0], c[1], c[2], site)), CASES))
            servers = [arg for case in CASES for arg in ("--server", name_of(*case))]
            vpn.ok("user", "add", "alice", *servers)
            yield vpn
    finally:
        end_home_processes(vpn.home)


@pytest.fixture(scope="module")
def backend_port() -> Iterator[int]:
    with http_backend() as port:
        yield port


@pytest.mark.parametrize(("protocol", "network", "security"), CASES, ids=str)
def test_a_client_moves_bytes(
    home: Vpn,
    backend_port: int,
    tmp_path: Path,
    protocol: str,
    network: Network,
    security: Security,
) -> None:
    server = name_of(protocol, network, security)
    with stream_client(outbound(home, "alice", server), tmp_path) as socks:
        url = f"http://127.0.0.1:{backend_port}/bytes/50000"
        assert curl_via(socks, url) == "x" * 50_000


def pid_of(vpn: Vpn, server: str) -> int:
    status = vpn.json("server", "status", server)
    assert isinstance(status, dict)
    assert status["healthy"], status
    assert status["engine"] == "xray", status
    return int(status["pid"])


@pytest.mark.parametrize(("protocol", "network"), [("trojan", Network.WS), ("vmess", Network.GRPC)])
def test_live_add_and_disable_leave_other_users_alone(
    vpn: Vpn, backend: int, tmp_path: Path, protocol: str, network: Network
) -> None:
    vpn.ok(*install_args(protocol, network, Security.TLS, 0))
    server = name_of(protocol, network, Security.TLS)
    vpn.ok("user", "add", "alice", "--server", server)
    pid = pid_of(vpn, server)
    page = f"http://127.0.0.1:{backend}/"
    with stream_client(outbound(vpn, "alice", server), tmp_path / "alice") as alice:
        assert curl_via(alice, page) == BACKEND_PAGE.decode()
        stream = Stream(alice, backend)
        try:
            assert stream.flowing(), "alice's download does not flow"
            vpn.ok("user", "add", "bob", "--server", server)
            assert pid_of(vpn, server) == pid, "adding a user restarted the engine"
            assert stream.flowing(), "adding bob disturbed alice's open connection"
            with stream_client(outbound(vpn, "bob", server), tmp_path / "bob") as bob:
                assert curl_via(bob, page, attempts_for=5) == BACKEND_PAGE.decode()
                bob_stream = Stream(bob, backend)
                try:
                    assert bob_stream.flowing()
                    # Per-user counters (StatsService): each user's bytes under their name.
                    usage = vpn.json("server", "usage", server)
                    assert isinstance(usage, list)
                    down = {row["name"]: row["download_bytes"] for row in usage}
                    assert down["alice"] > 100_000, usage
                    assert down["bob"] > 0, usage
                    vpn.ok("user", "disable", "alice")
                    deadline = time.monotonic() + 5
                    while stream.ended is None and time.monotonic() < deadline:
                        time.sleep(0.1)
                    assert stream.ended is not None, "alice's open stream still carries traffic"
                    assert curl_fails(alice, page)
                    assert bob_stream.flowing(), "disabling alice cut bob too"
                    assert pid_of(vpn, server) == pid
                finally:
                    bob_stream.close()
            vpn.ok("user", "enable", "alice")
            assert curl_via(alice, page) == BACKEND_PAGE.decode()
        finally:
            stream.close()
