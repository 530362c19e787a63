"""What a TLS server on Xray answers whoever is not a client: the decoy. For every protocol x
transport with TLS the CLI gives a decoy, a plain HTTPS GET without credentials (curl) gets the
small local page with status 200 on `/`, and nginx's 404 page on other paths (the transport's
own where HTTP/1.1 cannot reach it: gRPC, XHTTP), and a real Xray client still moves bytes
through the same port. With `--decoy HOST:PORT` the GET gets that site's page
instead, and `vpn server set --decoy local` brings the local page back. VMess over raw TCP has no
decoy (its streams look like a probe's): `--decoy` is refused there. All on 127.0.0.1."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import Vpn, curl_via, end_home_processes, link_of, xray_client
from tests.e2e.net import BACKEND_PAGE, free_port, http_backend
from vpn_manager.engines.xray.decoy import NOT_FOUND, PAGE
from vpn_manager.kinds import Network

pytestmark = pytest.mark.usefixtures("need_root")

TLS_NAME = "vpn.test"
CASES = [
    (protocol, network)
    for protocol in ("vless", "trojan", "vmess")
    for network in Network
    if not (protocol == "vmess" and network is Network.RAW)
]


def stored(vpn: Vpn, server: str) -> dict[str, Any]:
    """The server as `vpn server list` shows it."""
    shown = vpn.json("server", "list")
    assert isinstance(shown, list)
    (found,) = [s for s in shown if s["name"] == server]
    return dict(found)


def name_of(protocol: str, network: Network) -> str:
    return f"{protocol}-{network.value}"


def install_args(protocol: str, network: Network, *extra: str) -> list[str]:
    args = ["server", "install", protocol, "--name", name_of(protocol, network)]
    args += ["--port", str(free_port()), "--listen", "127.0.0.1", "--host", "127.0.0.1"]
    args += ["--allow-private", "--transport", network.value, "--security", "tls"]
    args += ["--sni", TLS_NAME, *extra]
    if network in (Network.WS, Network.HTTPUPGRADE, Network.XHTTP):
        args += ["--path", f"/{protocol}-{network.value}"]
    return args


def https_get(port: int, path: str = "/", *, http2: bool = False) -> tuple[int, bytes]:
    """A plain HTTPS GET as a browser or a probe makes it: no credentials, any certificate."""
    version = "--http2" if http2 else "--http1.1"
    url = f"https://127.0.0.1:{port}{path}"
    done = subprocess.run(
        ["curl", "-sk", version, "--max-time", "10", "-o", "-", "-w", "\n%{http_code}", url],
        capture_output=True,
        timeout=20,
        check=False,
    )
    body, _, code = done.stdout.rpartition(b"\n")
    return int(code or b"0"), body


def transport_path(vpn: Vpn, server: str) -> str:
    settings = stored(vpn, server)["settings"]
    if settings["network"] == "grpc":
        return f"/{settings['service_name']}/Tun"
    return str(settings.get("path") or "/")


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Vpn]:
    vpn = Vpn(tmp_path_factory.mktemp("decoy") / "home")
    try:
        with ThreadPoolExecutor(2) as pool:
            list(pool.map(lambda c: vpn.ok(*install_args(*c)), CASES))
        servers = [arg for case in CASES for arg in ("--server", name_of(*case))]
        vpn.ok("user", "add", "alice", *servers)
        yield vpn
    finally:
        end_home_processes(vpn.home)


@pytest.fixture(scope="module")
def backend_port() -> Iterator[int]:
    with http_backend() as port:
        yield port


@pytest.mark.parametrize(("protocol", "network"), CASES, ids=str)
def test_a_probe_gets_the_decoy_and_a_client_gets_through(
    home: Vpn, backend_port: int, tmp_path: Path, protocol: str, network: Network
) -> None:
    server = name_of(protocol, network)
    port = int(stored(home, server)["port"])
    assert https_get(port) == (200, PAGE)
    assert https_get(port, "/index.html") == (200, PAGE)
    if network not in (Network.GRPC, Network.XHTTP):
        # The server offers HTTP/1.1 only: a client that would rather speak HTTP/2 (browsers,
        # curl) gets the page too.
        assert https_get(port, http2=True) == (200, PAGE)
    # Any other path gets nginx's 404 page, as on a freshly installed web server.
    assert https_get(port, "/admin/") == (404, NOT_FOUND)
    if network in (Network.GRPC, Network.XHTTP):
        # The transport's own path (gRPC: its method) asked for with a plain GET is just
        # another path: HTTP/1.1 never reaches gRPC or XHTTP (their clients speak HTTP/2).
        path = transport_path(home, server)
        assert https_get(port, path) == (404, NOT_FOUND)
        assert https_get(port, path.rstrip("/") + "/") == (404, NOT_FOUND)
    with xray_client(link_of(home, "alice", server), tmp_path) as socks:
        url = f"http://127.0.0.1:{backend_port}/bytes/50000"
        assert curl_via(socks, url) == "x" * 50_000


# What is left showing (the README says so): Xray's fallbacks see the TLS name, the ALPN and
# an HTTP/1.1 request line, never HTTP/2 nor headers, and Xray's clients offer the same ALPN as a
# browser (h2, http/1.1: uTLS's Chrome). So HTTP/2 goes to gRPC and XHTTP, which answer it
# themselves, and a plain GET of the ws or httpupgrade path (the request line of an upgrade)
# reaches the transport. Checked here so that the README stays true.
LEFT_SHOWING = [
    ("vless", Network.GRPC, "/", True, (415, b"")),
    ("trojan", Network.XHTTP, "/", True, (404, b"")),
    ("trojan", Network.XHTTP, "PATH/", True, (400, b"")),  # XHTTP's own: PATH/…
    ("vmess", Network.WS, "PATH", False, (400, b"Bad Request\n")),
    ("vless", Network.HTTPUPGRADE, "PATH", False, (0, b"")),  # closed without an answer
]


@pytest.mark.parametrize(("protocol", "network", "path", "http2", "answer"), LEFT_SHOWING)
def test_what_is_left_showing(
    home: Vpn, protocol: str, network: Network, path: str, http2: bool, answer: tuple[int, bytes]
) -> None:
    server = name_of(protocol, network)
    port = int(stored(home, server)["port"])
    if path.startswith("PATH"):
        path = transport_path(home, server) + path.removeprefix("PATH")
    assert https_get(port, path, http2=http2) == answer


def test_decoy_site_and_back_to_the_local_page(vpn: Vpn, backend: int, tmp_path: Path) -> None:
    """`server set --decoy` goes through the settings transaction: validated, written, the
    engine restarted on it (a new PID, as the README says); the users' link is unchanged and
    their client gets through again at once."""
    installed = vpn.ok(*install_args("trojan", Network.WS, "--decoy", f"127.0.0.1:{backend}"))
    assert re.search(rf"^decoy +127\.0\.0\.1:{backend}$", installed.stdout, re.M)
    server = name_of("trojan", Network.WS)
    vpn.ok("user", "add", "alice", "--server", server)
    link = link_of(vpn, "alice", server)
    port = int(stored(vpn, server)["port"])
    assert https_get(port) == (200, BACKEND_PAGE)
    before = vpn.json("server", "status", server)
    assert isinstance(before, dict)
    changed = vpn.ok("server", "set", server, "--decoy", "local")
    assert re.search(r"^decoy +local$", changed.stdout, re.M)
    assert "No user's link to" in changed.stdout + changed.stderr
    after = vpn.json("server", "status", server)
    assert isinstance(after, dict)
    assert after["pid"] != before["pid"]
    assert after["healthy"] is True
    assert https_get(port) == (200, PAGE)
    assert link_of(vpn, "alice", server) == link
    with xray_client(link, tmp_path) as socks:
        assert curl_via(socks, f"http://127.0.0.1:{backend}/") == BACKEND_PAGE.decode()
    # A bad decoy: one sentence, nothing changed, the engine left as it was.
    refused = vpn("server", "set", server, "--decoy", "nowhere")
    assert refused.code != 0
    assert refused.stderr.count("\n") == 1
    assert "give local" in refused.stderr
    assert "Traceback" not in refused.stderr
    same = vpn.json("server", "status", server)
    assert isinstance(same, dict)
    assert same["pid"] == after["pid"]
    assert stored(vpn, server)["settings"]["decoy"] == "local"


def test_vmess_over_raw_refuses_a_decoy(vpn: Vpn) -> None:
    result = vpn(*install_args("vmess", Network.RAW, "--decoy", "127.0.0.1:8080"))
    assert result.code != 0
    assert "VMess over raw TCP cannot have a decoy" in result.stderr
    assert "Traceback" not in result.stderr
    assert vpn.json("server", "list") == []
    # Without --decoy it installs, and says it has none (and why) rather than leave it unsaid.
    installed = vpn.ok(*install_args("vmess", Network.RAW))
    assert re.search(r"^decoy +none$", installed.stdout, re.M)
    assert "has no decoy: VMess over raw TCP cannot tell its streams" in installed.stderr


def test_a_container_refuses_the_local_page(vpn: Vpn) -> None:
    """Nothing in the engine's image serves the local page: `--decoy local` with --runtime
    docker is refused in one sentence before anything is stored."""
    result = vpn(*install_args("trojan", Network.WS, "--runtime", "docker", "--decoy", "local"))
    assert result.code != 0
    assert result.stderr.strip() == (
        "error: A server in a container cannot serve the local decoy page: give --decoy "
        "HOST:PORT, an HTTP site the container reaches."
    )
    assert vpn.json("server", "list") == []


def test_an_xray_binary_runs_beside_the_local_page(vpn: Vpn, backend: int, tmp_path: Path) -> None:
    """With an `xray` on PATH the engine's child runs it and serves the page itself. The `xray`
    here is the real Xray (the binding) behind the binary's `run -c CONFIG` command line."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    shim = bin_dir / "xray"
    shim.write_text(
        f"#!/bin/sh\n[ \"$1 $2\" = 'run -c' ] || exit 64\nexec {sys.executable} -c "
        "'import sys, xray; xray.startFromJSON(open(sys.argv[1]).read())' \"$3\"\n"
    )
    shim.chmod(0o755)
    vpn.env["PATH"] = f"{bin_dir}:{os.environ['PATH']}"
    vpn.ok(*install_args("vless", Network.HTTPUPGRADE))
    vpn.ok("user", "add", "alice", "--server", name_of("vless", Network.HTTPUPGRADE))
    server = name_of("vless", Network.HTTPUPGRADE)
    status = vpn.json("server", "status", server)
    assert isinstance(status, dict)
    pid = int(status["pid"])
    argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    assert b"--binary" in argv
    assert str(shim).encode() in argv
    port = int(stored(vpn, server)["port"])
    assert https_get(port) == (200, PAGE)
    with xray_client(link_of(vpn, "alice", server), tmp_path / "client") as socks:
        assert curl_via(socks, f"http://127.0.0.1:{backend}/") == BACKEND_PAGE.decode()
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    assert len(children) == 1
    vpn.ok("server", "stop", server)
    deadline = time.monotonic() + 5
    while Path(f"/proc/{children[0]}").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not Path(f"/proc/{children[0]}").exists(), "the xray binary outlived its engine"
