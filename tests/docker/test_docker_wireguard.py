"""WireGuard servers in Docker end to end, against the machine's real Docker engine: the server
runs our scratch WireGuard image (wireguard-go as the container's main process; `ip`, `wg` and
`nft` run in the container by Docker exec), published on the host end of a veth pair; clients are
real `wg-quick` tunnels from the printed .conf, in network namespaces the test creates and
deletes, and reach an HTTP backend on the host's address in the home's Docker network through
the tunnel and the container's NAT. No packet leaves this machine."""

from __future__ import annotations

import ipaddress
import os
import re
import secrets
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.docker import wgimage
from tests.docker.conftest import TEST_LABEL, DockerVpn, backend_on, docker_home
from tests.e2e.net import BACKEND_PAGE, free_port
from tests.e2e.netns import (
    Download,
    FetchFailed,
    Namespace,
    fetch,
    require_root_and_tools,
    wg_quick_client,
)

if TYPE_CHECKING:
    from docker import DockerClient

PAGE = BACKEND_PAGE.decode()
SUBNET = "10.13.13.0/24"
# What the clients route through the tunnel: the peers' subnet and the private ranges Docker
# takes its networks from (the backend listens on the host's address in the home's network,
# which exists only once the server is installed).
ALLOWED = f"{SUBNET}, 172.16.0.0/12, 192.168.0.0/16"


@pytest.fixture(scope="module")
def wireguard_image(docker_client: DockerClient) -> Iterator[str]:
    require_root_and_tools()
    tag = wgimage.build(docker_client, TEST_LABEL)
    try:
        yield tag
    finally:
        docker_client.images.remove(tag, force=True)


@pytest.fixture(scope="module")
def busybox_image(docker_client: DockerClient) -> Iterator[str]:
    """The same image with BusyBox as `ip`, as Alpine-based images (the default one) have it."""
    require_root_and_tools()
    tag = wgimage.build(docker_client, TEST_LABEL, busybox_ip=True)
    try:
        yield tag
    finally:
        docker_client.images.remove(tag, force=True)


@pytest.fixture
def wvpn(tmp_path: Path, wireguard_image: str, docker_client: DockerClient) -> Iterator[DockerVpn]:
    with home(tmp_path, wireguard_image, docker_client) as runner:
        yield runner


@contextmanager
def home(tmp_path: Path, image: str, docker_client: DockerClient) -> Iterator[DockerVpn]:
    """A vpn home for Docker servers of `image`; whatever it made is removed afterwards."""
    with docker_home(DockerVpn(tmp_path / "home", image, docker_client), docker_client) as runner:
        yield runner


@contextmanager
def joined_to_host(label: str) -> Iterator[Namespace]:
    """A namespace joined to the host by a veth pair: the host end gets 10.224.X.1/24, the
    namespace end 10.224.X.2/24 (its `address` is the host end's, where it reaches the host),
    with its default route to the host. Deleting the namespace deletes the pair."""
    taken = set(re.findall(r"inet 10\.224\.(\d+)\.", _host(["ip", "-4", "-o", "addr"])))
    octet = secrets.choice([x for x in range(1, 255) if str(x) not in taken])
    ns = Namespace(label)
    host_end = f"vh{ns.name[5:13]}{label}"
    try:
        subprocess.run(
            ["ip", "link", "add", host_end, "type", "veth", "peer", "name", "wan0",
             "netns", ns.name],
            check=True, capture_output=True,
        )  # fmt: skip
        subprocess.run(
            ["ip", "address", "add", f"10.224.{octet}.1/24", "dev", host_end],
            check=True,
            capture_output=True,
        )
        subprocess.run(["ip", "link", "set", host_end, "up"], check=True, capture_output=True)
        ns.run(["ip", "address", "add", f"10.224.{octet}.2/24", "dev", "wan0"])
        ns.run(["ip", "link", "set", "wan0", "up"])
        ns.run(["ip", "route", "add", "default", "via", f"10.224.{octet}.1"])
        ns.address = f"10.224.{octet}.1"
        yield ns
    finally:
        subprocess.run(["ip", "link", "delete", host_end], capture_output=True, check=False)
        ns.delete()
        assert host_end not in _host(["ip", "-o", "link", "show"]), f"{host_end} was left"


def _host(argv: list[str]) -> str:
    return subprocess.run(argv, capture_output=True, text=True, check=False).stdout


def install(wvpn: DockerVpn, address: str, name: str = "wg") -> int:
    port = free_port()
    wvpn.ok("server", "install", "wireguard", "--name", name, "--port", str(port),
            "--listen", address, "--host", address, "--subnet", SUBNET,
            "--allowed-ips", ALLOWED, "--mtu", "1280", "--allow-private",
            "--runtime", "docker", "--image", wvpn.image)  # fmt: skip
    return port


def status(wvpn: DockerVpn, name: str = "wg") -> dict[str, Any]:
    data = wvpn.json("server", "status", name)
    assert isinstance(data, dict)
    return data


def usage(wvpn: DockerVpn, name: str = "wg") -> dict[str, dict[str, int]]:
    rows = wvpn.json("server", "usage", name)
    assert isinstance(rows, list)
    return {r["name"]: r for r in rows}


def conf_of(wvpn: DockerVpn, user: str) -> str:
    return wvpn.ok("user", "config", user, "--server", "wg").stdout


def handshake(ns: Namespace) -> int:
    """The client's latest handshake (Unix time; 0 before the first)."""
    shown = ns.run(["wg", "show", "wgc0", "latest-handshakes"]).stdout.split()
    return int(shown[1]) if len(shown) == 2 else 0


def container_dump(wvpn: DockerVpn, interface: str) -> list[list[str]]:
    """`wg show IF dump` run in the server's container: one row per peer."""
    (name,) = wvpn.containers()
    done = wvpn.client.containers.get(name).exec_run(["wg", "show", interface, "dump"])
    output = done.output
    assert isinstance(output, bytes)
    assert done.exit_code == 0, output
    return [line.split("\t") for line in output.decode().splitlines()[1:]]


def wait_for(check: Callable[[], bool], within: float, what: str) -> None:
    deadline = time.monotonic() + within
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} within {within:.0f} s")
        time.sleep(0.2)


def test_traffic_is_counted_and_peers_change_live(wvpn: DockerVpn) -> None:
    with joined_to_host("a") as alice_ns, joined_to_host("b") as bob_ns:
        assert alice_ns.address is not None
        port = install(wvpn, alice_ns.address)
        interface = _interface(wvpn)
        wvpn.ok("user", "add", "alice", "--server", "wg")
        alice_conf = conf_of(wvpn, "alice")
        assert f"Endpoint = {alice_ns.address}:{port}" in alice_conf
        gateway = backend_address(wvpn)
        pid = status(wvpn)["pid"]
        with backend_on(gateway) as backend, wg_quick_client(alice_ns, alice_conf):
            url = f"http://{gateway}:{backend}"
            assert fetch(alice_ns, url + "/") == PAGE
            assert handshake(alice_ns) > 0
            body = fetch(alice_ns, url + "/bytes/1000000")
            assert len(body) == 1_000_000
            # What WireGuard sent to alice's peer: the payload plus IP/TCP headers and its own
            # overhead (see tests/e2e/test_wireguard.py): at least the payload, at most 30 % more.
            sent = usage(wvpn)["alice"]["download_bytes"]
            assert 1_000_000 <= sent <= 1_300_000, sent
            assert usage(wvpn)["alice"]["upload_bytes"] > 0
            served = wvpn("--format", "json", "serve", "--once")
            assert served.code == 0, served.stderr
            alice = wvpn.json("user", "show", "alice")
            assert isinstance(alice, dict)
            assert alice["download_bytes"] >= sent

            with Download(alice_ns, url + "/stream") as stream:
                stream.wait_for(20_000)
                # A second peer, live: the same container, alice's transfer undisturbed.
                added = wvpn.ok("user", "add", "bob", "--server", "wg")
                assert "applied live" in added.stderr
                assert status(wvpn)["pid"] == pid
                assert stream.flowing(), "adding bob disturbed alice's transfer"
                assert len(container_dump(wvpn, interface)) == 2
                bob_conf = conf_of(wvpn, "bob")
                assert "Address = 10.13.13.3/32" in bob_conf
                with wg_quick_client(bob_ns, bob_conf):
                    assert fetch(bob_ns, url + "/") == PAGE
                    assert handshake(bob_ns) > 0
                    # alice removed live: her stream stops at once, bob's tunnel goes on.
                    revoked = wvpn.ok("user", "revoke", "alice", "wg")
                    assert "applied live" in revoked.stderr
                    assert not stream.flowing(within=2.0), "alice's traffic still flows"
                    with pytest.raises(FetchFailed):
                        fetch(alice_ns, url + "/", timeout=3)
                    assert fetch(bob_ns, url + "/") == PAGE, "removing alice broke bob"
                    peers = container_dump(wvpn, interface)
                    assert [p[0] for p in peers] == [_public_key(bob_conf)]
                    assert status(wvpn)["pid"] == pid


def test_container_shape_restart_by_docker_stop_start_remove(wvpn: DockerVpn) -> None:
    with joined_to_host("c") as ns:
        assert ns.address is not None
        port = install(wvpn, ns.address)
        first = status(wvpn)
        assert first["healthy"], first
        assert first["runtime"] == "docker"
        interface = _check_container(wvpn, ns.address, port)
        wait_for(
            lambda: status(wvpn)["container"]["health"] == "healthy",
            20,
            "the container's health check (wg show) never said healthy",
        )
        wvpn.ok("user", "add", "carol", "--server", "wg")
        conf = conf_of(wvpn, "carol")
        gateway = backend_address(wvpn)
        with backend_on(gateway) as backend:
            url = f"http://{gateway}:{backend}/"
            with wg_quick_client(ns, conf):
                assert fetch(ns, url) == PAGE

            # wireguard-go dies: Docker starts it again with an interface that has no address,
            # peers or NAT; `vpn serve` sets them up again, once.
            os.kill(first["pid"], signal.SIGKILL)
            wait_for(
                lambda: status(wvpn)["container"]["restarts"] >= 1 and status(wvpn)["running"],
                20,
                "Docker did not restart the killed wireguard-go",
            )
            assert container_dump(wvpn, interface) == []
            healed = wvpn("--format", "json", "serve", "--once")
            assert healed.code == 0, healed.stderr
            assert "set up again what its start sets up" in healed.stderr
            assert len(container_dump(wvpn, interface)) == 1
            with wg_quick_client(ns, conf):
                assert fetch(ns, url) == PAGE

            # Stop: no container, no tunnel. Start: a new container from the same config.
            wvpn.ok("server", "stop", "wg")
            assert wvpn.containers() == []
            assert not status(wvpn)["running"]
            with wg_quick_client(ns, conf), pytest.raises(FetchFailed):
                fetch(ns, url, timeout=3)
            wvpn.ok("server", "start", "wg")
            assert status(wvpn)["healthy"]
            with wg_quick_client(ns, conf):
                assert fetch(ns, url) == PAGE
            assert "wireguard-go" in wvpn.ok("server", "logs", "wg", "-n", "200").stdout

        exported = wvpn.ok("server", "export-compose", "--file", "-").stdout
        service = _compose_service(exported)
        assert service["cap_add"] == ["NET_ADMIN"]
        assert service["devices"] == ["/dev/net/tun:/dev/net/tun"]
        assert service["sysctls"] == {"net.ipv4.ip_forward": "1"}
        assert service["healthcheck"]["test"] == ["CMD", "wg", "show", interface, "listen-port"]

        wvpn.ok("server", "remove", "--yes", "wg")
        assert wvpn.containers() == []
        assert wvpn.networks() == []
        assert wvpn.volumes() == []
        assert wvpn.json("server", "list") == []


def test_an_image_whose_ip_is_busybox(
    tmp_path: Path, busybox_image: str, docker_client: DockerClient
) -> None:
    """Every `ip` command the engine runs works with BusyBox's `ip` too."""
    with home(tmp_path, busybox_image, docker_client) as wvpn, joined_to_host("d") as ns:
        assert ns.address is not None
        install(wvpn, ns.address)
        assert status(wvpn)["healthy"]
        wvpn.ok("user", "add", "dave", "--server", "wg")
        gateway = backend_address(wvpn)
        with backend_on(gateway) as backend, wg_quick_client(ns, conf_of(wvpn, "dave")):
            assert fetch(ns, f"http://{gateway}:{backend}/") == PAGE
        assert usage(wvpn)["dave"]["download_bytes"] > len(BACKEND_PAGE)
        wvpn.ok("server", "remove", "--yes", "wg")
        assert wvpn.containers() == []


def _interface(wvpn: DockerVpn) -> str:
    servers = wvpn.json("server", "list")
    assert isinstance(servers, list)
    interface: str = servers[0]["settings"]["interface"]
    return interface


def backend_address(wvpn: DockerVpn) -> str:
    """The host's address in the home's Docker network, inside what clients route through the
    tunnel."""
    gateway = wvpn.gateway()
    assert any(
        ipaddress.ip_address(gateway) in ipaddress.ip_network(net)
        for net in ("172.16.0.0/12", "192.168.0.0/16")
    ), f"the home's network ({gateway}) is outside what the clients route through the tunnel"
    return gateway


def _check_container(wvpn: DockerVpn, address: str, port: int) -> str:
    """The container as the runtime made it; returns the WireGuard interface's name."""
    (name,) = wvpn.containers()
    attrs = wvpn.client.containers.get(name).attrs
    host_config = attrs["HostConfig"]
    assert host_config["CapAdd"] == ["NET_ADMIN"]
    assert [d["PathOnHost"] for d in host_config["Devices"]] == ["/dev/net/tun"]
    assert host_config["Sysctls"] == {"net.ipv4.ip_forward": "1"}
    assert host_config["PortBindings"] == {
        f"{port}/udp": [{"HostIp": address, "HostPort": str(port)}]
    }
    assert host_config["RestartPolicy"]["Name"] == "unless-stopped"
    assert attrs["Config"]["Entrypoint"] == ["wireguard-go"]
    assert all(m["RW"] is False for m in attrs["Mounts"])
    interface: str = attrs["Config"]["Cmd"][-1]
    assert attrs["Config"]["Cmd"] == ["-f", interface]
    assert interface == _interface(wvpn)
    # The interface and its NAT table live in the container, not on this machine.
    shown = subprocess.run(["ip", "link", "show", interface], capture_output=True, check=False)
    assert shown.returncode != 0
    assert f"vpnmanager_{interface}" not in _host(["nft", "list", "tables"])
    return interface


def _public_key(conf: str) -> str:
    """The peer's public key as the server knows it (from the client's private key)."""
    private = re.search(r"^PrivateKey = (\S+)$", conf, re.MULTILINE)
    assert private is not None
    return subprocess.run(
        ["wg", "pubkey"], input=private.group(1), capture_output=True, text=True, check=True
    ).stdout.strip()


def _compose_service(text: str) -> dict[str, Any]:
    import yaml

    document = yaml.safe_load(text)
    assert isinstance(document, dict)
    service: dict[str, Any] = document["services"]["wg"]
    return service
