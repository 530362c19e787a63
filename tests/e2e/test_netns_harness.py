"""The network-namespace harness itself, proven with plain wireguard-go, wg and wg-quick and
hand-made configs (no vpn_manager code): a wireguard-go server in one namespace, a wg-quick client
in the other, HTTP through split and full tunnels, live peer removal, and teardown that leaves
nothing."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.e2e.netns import (
    PAGE,
    PREFIX,
    WIREGUARD_RUN,
    Download,
    FetchFailed,
    Namespace,
    WgQuickFailed,
    dns_servers,
    fetch,
    http_server,
    network,
    require_root_and_tools,
    strip_dns,
    wg_dump,
    wg_keypair,
    wg_quick_client,
)

LISTEN_PORT = 51820
HTTP_PORT = 8080
SERVER_TUNNEL_IP = "10.13.13.1"
CLIENT_TUNNEL_IP = "10.13.13.2"


@pytest.fixture(scope="session", autouse=True)
def _root_and_tools() -> None:
    require_root_and_tools()


@dataclass
class Lab:
    server: Namespace
    client: Namespace
    server_public: str
    client_public: str
    client_conf: str
    url: str


def client_conf(
    private: str, server_public: str, endpoint: str, allowed_ips: str = "10.13.13.0/24"
) -> str:
    return f"""\
[Interface]
PrivateKey = {private}
Address = {CLIENT_TUNNEL_IP}/32
DNS = {SERVER_TUNNEL_IP}

[Peer]
PublicKey = {server_public}
Endpoint = {endpoint}
AllowedIPs = {allowed_ips}
PersistentKeepalive = 25
"""


@contextmanager
def wireguard_go_server(ns: Namespace, private: str, client_public: str) -> Iterator[None]:
    """`wireguard-go -f wgs0` in `ns`, configured with `wg setconf` for one client."""
    process = ns.popen(
        ["wireguard-go", "-f", "wgs0"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 10
        while not (ns.wireguard_dir / "wgs0.sock").exists():
            assert process.poll() is None, f"wireguard-go exited with {process.returncode}"
            assert time.monotonic() < deadline, "wireguard-go never opened its socket"
            time.sleep(0.005)
        conf = (
            f"[Interface]\nPrivateKey = {private}\nListenPort = {LISTEN_PORT}\n\n"
            f"[Peer]\nPublicKey = {client_public}\nAllowedIPs = {CLIENT_TUNNEL_IP}/32\n"
        )
        ns.run(["wg", "setconf", "wgs0", "/dev/stdin"], input=conf)
        ns.run(["ip", "address", "add", f"{SERVER_TUNNEL_IP}/24", "dev", "wgs0"])
        ns.run(["ip", "link", "set", "wgs0", "up"])
        yield
    finally:
        process.terminate()
        process.wait(5)


@contextmanager
def tunnel(allowed_ips: str = "10.13.13.0/24") -> Iterator[Lab]:
    """network() + a wireguard-go server + a wg-quick client + an HTTP server behind the tunnel."""
    server_private, server_public = wg_keypair()
    client_private, client_public = wg_keypair()
    with network() as (server, client):
        assert server.address is not None
        endpoint = f"{server.address}:{LISTEN_PORT}"
        conf = client_conf(client_private, server_public, endpoint, allowed_ips)
        with (
            wireguard_go_server(server, server_private, client_public),
            http_server(server, SERVER_TUNNEL_IP, HTTP_PORT) as url,
            wg_quick_client(client, conf),
        ):
            yield Lab(server, client, server_public, client_public, conf, url)


def route_device(ns: Namespace, address: str) -> str:
    words = ns.run(["ip", "-o", "route", "get", address]).stdout.split()
    return words[words.index("dev") + 1]


def test_fetch_through_a_split_tunnel() -> None:
    resolv_before = Path("/etc/resolv.conf").read_bytes()
    started = time.monotonic()
    with tunnel() as lab:
        up = time.monotonic() - started
        assert fetch(lab.client, lab.url + "/") == PAGE
        assert len(fetch(lab.client, lab.url + "/bytes/300000")) == 300_000
        first_fetches = time.monotonic() - started - up

        # wg-quick fell back to wireguard-go by itself (no kernel module, no environment).
        commands = [Path(f"/proc/{pid}/cmdline").read_bytes() for pid in lab.client.pids()]
        assert b"wireguard-go\0wgc0\0" in commands

        now = time.time()
        [server_peer] = wg_dump(lab.server, "wgs0")
        assert server_peer["public_key"] == lab.client_public
        assert server_peer["endpoint"] is not None
        assert server_peer["endpoint"].startswith(f"{lab.client.address}:")
        assert server_peer["allowed_ips"] == [f"{CLIENT_TUNNEL_IP}/32"]
        assert now - 10 < server_peer["latest_handshake"] <= now + 1
        assert server_peer["tx"] > 300_000
        assert server_peer["rx"] > 0
        [client_peer] = wg_dump(lab.client, "wgc0")
        assert client_peer["public_key"] == lab.server_public
        assert client_peer["endpoint"] == f"{lab.server.address}:{LISTEN_PORT}"
        assert client_peer["allowed_ips"] == ["10.13.13.0/24"]
        assert client_peer["persistent_keepalive"] == 25
        assert client_peer["rx"] > 300_000
        assert now - 10 < client_peer["latest_handshake"] <= now + 1

        # Split tunnel: only 10.13.13.0/24 goes into it; the rest (and the endpoint) does not.
        assert route_device(lab.client, SERVER_TUNNEL_IP) == "wgc0"
        assert route_device(lab.client, "192.0.2.1").startswith("vc-")
        assert route_device(lab.client, lab.server.address or "").startswith("vc-")

        # The DNS line is the caller's to check; it never reached resolvconf or the host.
        assert dns_servers(lab.client_conf) == [SERVER_TUNNEL_IP]
    total = time.monotonic() - started
    assert Path("/etc/resolv.conf").read_bytes() == resolv_before
    print(f"\nup {up:.3f}s, first fetches {first_fetches:.3f}s, total with teardown {total:.3f}s")


def test_full_tunnel() -> None:
    """AllowedIPs = 0.0.0.0/0: wg-quick's fwmark rules and nft table, all inside the client
    namespace; everything but the endpoint goes into the tunnel."""
    with tunnel("0.0.0.0/0") as lab:
        assert fetch(lab.client, lab.url + "/") == PAGE
        assert route_device(lab.client, "192.0.2.1") == "wgc0"
        assert "wg-quick-wgc0" in lab.client.run(["nft", "list", "tables"]).stdout
        [client_peer] = wg_dump(lab.client, "wgc0")
        assert client_peer["allowed_ips"] == ["0.0.0.0/0"]
        assert client_peer["rx"] > 0
    assert "wg-quick" not in _host("nft", "list", "tables")


def test_removing_the_peer_stops_the_clients_traffic_at_once() -> None:
    with tunnel() as lab, Download(lab.client, lab.url + "/stream") as download:
        download.wait_for(5 * 1024)
        assert download.flowing(0.5)
        removed = time.monotonic()
        lab.server.run(["wg", "set", "wgs0", "peer", lab.client_public, "remove"])
        assert not download.flowing(1.0)
        assert download.ended is None, "a dead tunnel stalls the download, it does not end it"
        lag = download.last - removed
        assert lag < 0.3, f"bytes still arrived {lag:.3f}s after the peer was removed"
        assert wg_dump(lab.server, "wgs0") == []
        with pytest.raises(FetchFailed):
            fetch(lab.client, lab.url + "/", timeout=1.0)
    print(f"\nlast byte {lag * 1000:.0f} ms after removal; {download.received} bytes in all")


def test_teardown_leaves_nothing() -> None:
    host_sockets = sorted(p.name for p in WIREGUARD_RUN.iterdir())
    with tunnel() as lab:
        server, client = lab.server, lab.client
        # Things a test might forget: a running download, and a process we are not the parent of.
        download = Download(client, lab.url + "/stream")
        download.wait_for(1024)
        server.run(["sh", "-c", "setsid sleep 300 </dev/null >/dev/null 2>&1 &"])
        pids = server.pids() + client.pids()
        assert len(pids) >= 5  # wireguard-go x2, http server, curl, sleep
        wg_dirs = [server.wireguard_dir, client.wireguard_dir]
        assert sorted(p.name for p in client.wireguard_dir.iterdir()) == ["wgc0.sock"]
    time.sleep(0.05)
    download.close()
    assert download.ended is not None
    names = _host("ip", "netns", "list")
    assert server.name not in names
    assert client.name not in names
    links = _host("ip", "-o", "link")
    assert " vs-" not in links
    assert " vc-" not in links
    assert server.pids() == []
    assert client.pids() == []
    for pid in pids:
        state = _state(pid)
        assert state in (None, "Z"), f"process {pid} is still {state}"
    assert not any(path.exists() for path in wg_dirs)
    assert sorted(p.name for p in WIREGUARD_RUN.iterdir()) == host_sockets


def _fail_inside_a_network(names: list[str], kept: list[Namespace]) -> None:
    with network() as (server, client):
        kept += [server, client]
        names += [server.name, client.name]
        server.popen(["sleep", "300"])
        client.run(["sh", "-c", "setsid sleep 300 </dev/null >/dev/null 2>&1 &"])
        raise RuntimeError("the test failed")


def test_teardown_after_a_failure_in_the_test() -> None:
    names: list[str] = []
    kept: list[Namespace] = []
    with pytest.raises(RuntimeError, match="the test failed") as failure:
        _fail_inside_a_network(names, kept)
    assert not getattr(failure.value, "__notes__", None)  # nothing left behind to report
    listed = _host("ip", "netns", "list")
    assert len(names) == 2
    assert not any(name in listed for name in names)
    assert [ns.leftovers() for ns in kept] == [[], []]


def test_two_networks_at_once_do_not_share_wireguard_sockets() -> None:
    """Two labs with the same interface names (as two xdist workers would have) run side by
    side; each `wg` sees only its own namespace's interfaces."""
    with tunnel() as one, tunnel() as two:
        assert one.server.address != two.server.address
        assert fetch(one.client, one.url + "/") == PAGE
        assert fetch(two.client, two.url + "/") == PAGE
        assert one.server.run(["wg", "show", "interfaces"]).stdout.split() == ["wgs0"]
        assert two.client.run(["wg", "show", "interfaces"]).stdout.split() == ["wgc0"]
        assert [p["public_key"] for p in wg_dump(one.server, "wgs0")] == [one.client_public]
        assert [p["public_key"] for p in wg_dump(two.server, "wgs0")] == [two.client_public]
        assert not (WIREGUARD_RUN / "wgs0.sock").exists()


def test_a_failing_wg_quick_up_is_reported_and_cleaned_up() -> None:
    _, server_public = wg_keypair()
    bad = client_conf("not a key", server_public, "10.222.0.1:51820")
    with network() as (_, client):
        with (
            pytest.raises(WgQuickFailed, match="Key is not the correct length"),
            wg_quick_client(client, bad),
        ):
            pass
        assert "wgc0" not in client.run(["ip", "-o", "link"]).stdout
        assert client.pids() == []


def test_namespace_alone() -> None:
    with Namespace() as ns:
        assert ns.name.startswith(PREFIX)
        assert ns.address is None
        assert "state UNKNOWN" in ns.run(["ip", "-o", "link", "show", "lo"]).stdout
        assert ns.run(["cat", "/proc/self/comm"]).stdout == "cat\n"
        with pytest.raises(AssertionError, match="exited with 3"):
            ns.run(["sh", "-c", "echo boom >&2; exit 3"])
        sleeper = ns.popen(["sleep", "300"])
        # popen returns before `ip netns exec` has entered the namespace and exec'd the command.
        deadline = time.monotonic() + 5
        while _cmdline(sleeper.pid) != "sleep 300" and time.monotonic() < deadline:
            time.sleep(0.005)
        assert ns.pids() == [sleeper.pid]
        # What the check after teardown would report, were it still there:
        found = ns.leftovers()
        assert any(ns.name in line and "ip netns list" in line for line in found)
        assert any(f"process {sleeper.pid} (sleep 300)" in line for line in found)
    assert sleeper.returncode is not None
    assert ns.leftovers() == []


def test_dns_lines_are_read_and_stripped() -> None:
    conf = "[Interface]\nAddress = 10.0.0.2/32\n dns= 10.0.0.1 , vpn.test # ours\nMTU = 1380\n"
    assert dns_servers(conf) == ["10.0.0.1", "vpn.test"]
    assert strip_dns(conf) == "[Interface]\nAddress = 10.0.0.2/32\nMTU = 1380\n"
    assert dns_servers(strip_dns(conf)) == []


def test_missing_tools_are_named(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(pytest.fail.Exception) as failure:
        require_root_and_tools()
    for tool in ("ip", "wg", "wg-quick", "wireguard-go", "nft", "curl"):
        assert f"{tool} (Debian package" in str(failure.value)


def _state(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return None


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
    except OSError:
        return ""


def _host(*argv: str) -> str:
    return subprocess.run(argv, capture_output=True, text=True, check=False).stdout
