"""WireGuard end to end, in network namespaces the tests create and delete: `vpn` runs inside a
"server" namespace (so the interface, wireguard-go and the nftables table it makes live there),
and clients bring up WireGuard with the real wg-quick from the printed .conf in their own
namespaces, joined to the server by veth pairs."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.e2e.conftest import Vpn
from tests.e2e.netns import (
    PAGE,
    Download,
    FetchFailed,
    Namespace,
    dns_servers,
    fetch,
    http_server,
    network,
    require_root_and_tools,
    wg_dump,
    wg_quick_client,
)

SUBNET = "10.13.13.0/24"
SERVER_IP = "10.13.13.1"
PORT = 51820


@pytest.fixture(autouse=True)
def _root_and_tools() -> None:
    require_root_and_tools()


@contextmanager
def second_client(server: Namespace, third_octet: int) -> Iterator[Namespace]:
    """Another client namespace joined to the server by its own veth pair."""
    client = Namespace("c2")
    try:
        tag = client.name[-11:-3]
        left, right = f"vs2-{tag}", f"vc2-{tag}"
        subprocess.run(
            [
                "ip",
                "-n",
                server.name,
                "link",
                "add",
                left,
                "type",
                "veth",
                "peer",
                "name",
                right,
                "netns",
                client.name,
            ],
            check=True,
            capture_output=True,
        )
        server.run(["ip", "address", "add", f"10.223.{third_octet}.1/24", "dev", left])
        server.run(["ip", "link", "set", left, "up"])
        client.run(["ip", "address", "add", f"10.223.{third_octet}.2/24", "dev", right])
        client.run(["ip", "link", "set", right, "up"])
        client.run(["ip", "route", "add", "default", "via", f"10.223.{third_octet}.1"])
        yield client
    finally:
        client.delete()


def install(vpn: Vpn, server: Namespace) -> str:
    vpn.ok(
        "server",
        "install",
        "wireguard",
        "--name",
        "wg",
        "--port",
        str(PORT),
        "--host",
        str(server.address),
        "--subnet",
        SUBNET,
        "--allowed-ips",
        SUBNET,
    )
    status = vpn.json("server", "status", "wg")
    assert isinstance(status, dict)
    assert status["healthy"], status
    servers = vpn.json("server", "list")
    assert isinstance(servers, list)
    interface: str = servers[0]["settings"]["interface"]
    return interface


def conf_of(vpn: Vpn, user: str) -> str:
    return vpn.ok("user", "config", user, "--server", "wg").stdout


def test_client_from_printed_conf_then_remove_leaves_nothing(tmp_path: Path) -> None:
    with network() as (server, client):
        vpn = Vpn(tmp_path / "home", prefix=server.command([]))
        interface = install(vpn, server)
        vpn.ok("user", "add", "alice", "--server", "wg")
        conf = conf_of(vpn, "alice")
        assert f"Endpoint = {server.address}:{PORT}" in conf
        assert "Address = 10.13.13.2/32" in conf
        assert dns_servers(conf) == ["1.1.1.1"]
        # The QR code is the .conf text the WireGuard apps scan.
        png = tmp_path / "alice.png"
        vpn.ok("user", "link", "alice", "--server", "wg", "--png", str(png))
        decoded = subprocess.run(
            ["zbarimg", "--raw", "-q", str(png)], capture_output=True, text=True, check=True
        ).stdout
        assert decoded.strip() == conf.strip()
        with http_server(server, SERVER_IP, 8080) as url, wg_quick_client(client, conf):
            assert fetch(client, url + "/") == PAGE
        rules = server.run(["nft", "list", "ruleset"]).stdout
        assert f"vpnmanager_{interface}" in rules
        vpn.ok("server", "remove", "wg", "--yes")
        assert server.run(["ip", "link", "show", interface], check=False).returncode != 0
        assert f"vpnmanager_{interface}" not in server.run(["nft", "list", "ruleset"]).stdout
        left = [
            pid
            for pid in server.pids()
            if "wireguard-go" in Path(f"/proc/{pid}/cmdline").read_text(errors="replace")
        ]
        assert left == [], "wireguard-go is still running after remove"


def test_second_peer_live_and_disable_cuts_at_once(tmp_path: Path) -> None:
    with network() as (server, alice_ns), second_client(server, 77) as bob_ns:
        vpn = Vpn(tmp_path / "home", prefix=server.command([]))
        interface = install(vpn, server)
        vpn.ok("user", "add", "alice", "--server", "wg")
        pid = vpn.json("server", "status", "wg")["pid"]  # type: ignore[index]
        with (
            http_server(server, SERVER_IP, 8080) as url,
            wg_quick_client(alice_ns, conf_of(vpn, "alice")),
            Download(alice_ns, url + "/stream") as alice,
        ):
            alice.wait_for(20_000)
            added = vpn.ok("user", "add", "bob", "--server", "wg")
            assert "applied live" in added.stderr
            assert vpn.json("server", "status", "wg")["pid"] == pid  # type: ignore[index]
            assert alice.flowing(), "adding bob disturbed alice's transfer"
            bob_conf = conf_of(vpn, "bob")
            assert "Address = 10.13.13.3/32" in bob_conf
            with wg_quick_client(bob_ns, bob_conf):
                assert fetch(bob_ns, url + "/") == PAGE
                # Byte counts: bob downloads 1,000,000 bytes. WireGuard counts what it sent to
                # bob's peer: every inner packet (the payload plus its IP and TCP headers, ~52
                # bytes) plus WireGuard's own 32 bytes (header and tag) and padding to 16. With
                # full ~1368-byte segments (MTU 1420) that is about 6 %; on a busy machine TCP sends
                # smaller segments and retransmits, which WireGuard counts too (seen: up to 21 %).
                # Add the handshake, keepalives and the page above (seen: 31 % in all on a machine
                # with a load of 7 on 2 cores). At least the payload, at most 60 % more: double
                # counting, or counting another peer, would break either bound.
                body = fetch(bob_ns, url + "/bytes/1000000")
                assert len(body) == 1_000_000
                rows = vpn.json("server", "usage", "wg")
                assert isinstance(rows, list)
                usage = {r["name"]: r for r in rows}
                sent = usage["bob"]["download_bytes"]
                assert 1_000_000 <= sent <= 1_600_000, sent
                assert usage["bob"]["upload_bytes"] > 0
                # One poll of the service puts the same bytes in bob's totals.
                vpn.ok("serve", "--once")
                bob = vpn.json("user", "show", "bob")
                assert isinstance(bob, dict)
                assert bob["download_bytes"] >= sent
                dump = {p["public_key"]: p for p in wg_dump(server, interface)}
                assert len(dump) == 2
                vpn.ok("user", "disable", "alice")
                assert not alice.flowing(within=2.0), "alice's traffic still flows"
                with pytest.raises(FetchFailed):
                    fetch(alice_ns, url + "/", timeout=3)
                assert fetch(bob_ns, url + "/") == PAGE, "disabling alice broke bob"
                assert len(wg_dump(server, interface)) == 1
                assert vpn.json("server", "status", "wg")["pid"] == pid  # type: ignore[index]
        vpn.ok("server", "remove", "wg", "--yes")
