"""The Docker runtime's pure parts, without a Docker engine: what a server looks like inside a
container, the container and compose options made from it, stats arithmetic, time parsing, and
which engines count as this machine's."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from vpn_manager.engines.base import Engine
from vpn_manager.engines.registry import engine_for, engine_of_new
from vpn_manager.errors import InvalidInput
from vpn_manager.runtimes.base import ContainerLaunch
from vpn_manager.runtimes.docker.hosts import is_remote
from vpn_manager.runtimes.docker.options import (
    compose_service,
    container_name,
    create_options,
    labels,
    network_name,
)
from vpn_manager.runtimes.docker.views import timestamp, usage
from vpn_manager.services.servers import ServerService
from vpn_manager.settings import DockerSettings, Paths
from vpn_manager.specs import ServerSpec
from vpn_manager.storage import Database


def service(tmp_path: Path) -> ServerService:
    paths = Paths.from_env({}, home=tmp_path)
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'vpn.db'}")  # never opened here
    return ServerService(db, paths, docker=DockerSettings())


def container_launch(servers: ServerService, engine: Engine, spec: ServerSpec) -> ContainerLaunch:
    """The container a Docker server is launched in."""
    found = servers.launch(engine, spec).container
    assert found is not None
    return found


def spec(protocol: str, runtime: str = "docker", listen: str = "127.0.0.1") -> ServerSpec:
    settings: dict[str, object] = {"api_port": 40001, "allow_private": False}
    secret: dict[str, object] = {"api_secret": "s3cret"}
    if protocol == "shadowsocks":
        settings |= {"method": "aes-256-gcm", "ssm_port": 40002}
    return ServerSpec(
        name="edge",
        protocol=protocol,
        listen=listen,
        port=8388,
        host="127.0.0.1",
        settings=settings,
        secret=secret,
        runtime=runtime,
        image="example/sing-box:1" if runtime == "docker" else None,
    )


def test_inside_a_container_the_engine_listens_everywhere_and_logs_to_its_output(
    tmp_path: Path,
) -> None:
    servers = service(tmp_path)
    rendered = json.loads(servers.render(engine_for("sing-box"), spec("shadowsocks"), []))
    assert rendered["inbounds"][0]["listen"] == "0.0.0.0"
    assert {s["listen"] for s in rendered["services"]} == {"0.0.0.0"}
    assert rendered["log"]["output"] == "/dev/stderr"
    native = json.loads(
        servers.render(engine_for("sing-box"), spec("shadowsocks", runtime="native"), [])
    )
    assert native["inbounds"][0]["listen"] == "127.0.0.1"
    assert {s["listen"] for s in native["services"]} == {"127.0.0.1"}
    assert native["log"]["output"].endswith("edge.error.log")
    v6 = json.loads(servers.render(engine_for("sing-box"), spec("mixed", listen="::1"), []))
    assert v6["inbounds"][0]["listen"] == "::"


@pytest.mark.parametrize(
    ("protocol", "protos"),
    [("shadowsocks", {"tcp", "udp"}), ("hysteria2", {"udp"}), ("mixed", {"tcp"})],
)
def test_published_ports(tmp_path: Path, protocol: str, protos: set[str]) -> None:
    servers = service(tmp_path)
    launch = container_launch(
        servers, engine_for(engine_of_new(protocol, "docker")), spec(protocol)
    )
    main = {p.proto for p in launch.ports if p.host_port == 8388}
    assert main == protos
    control = [p for p in launch.ports if p.host_port != 8388]
    assert {p.host_port for p in control} >= {40001}
    assert all(p.host_ip == "127.0.0.1" and p.proto == "tcp" for p in control)
    assert launch.image == "example/sing-box:1"
    assert launch.binary == "sing-box"
    assert launch.health == ["tools", "fetch", "http://127.0.0.1:40001/"]


def wireguard_spec(subnet6: str | None = None) -> ServerSpec:
    settings = {
        "interface": "wgabc123",
        "subnet": "10.13.13.0/24",
        "subnet6": subnet6,
        "public_key": "x" * 43 + "=",
    }
    return ServerSpec(
        name="wg",
        protocol="wireguard",
        listen="0.0.0.0",
        port=51820,
        host="vpn.example.org",
        settings=settings,
        secret={},
        runtime="docker",
    )


def test_wireguard_container(tmp_path: Path) -> None:
    """wireguard-go in the foreground as the main process, with what a TUN interface and
    forwarding need; the UDP port only; the health check is `wg show`; the default image is
    the docker.images.wireguard setting."""
    servers = service(tmp_path)
    launch = container_launch(servers, engine_for("wireguard-go"), wireguard_spec())
    assert launch.image == DockerSettings().images.wireguard
    assert (launch.binary, launch.args) == ("wireguard-go", ["-f", "wgabc123"])
    assert [(p.host_ip, p.host_port, p.proto) for p in launch.ports] == [("0.0.0.0", 51820, "udp")]
    assert launch.health_test == ["CMD", "wg", "show", "wgabc123", "listen-port"]
    assert launch.cap_add == ["NET_ADMIN"]
    assert launch.devices == ["/dev/net/tun"]
    assert launch.sysctls == {"net.ipv4.ip_forward": "1"}
    v6 = container_launch(servers, engine_for("wireguard-go"), wireguard_spec("fd20::/64"))
    assert v6.sysctls["net.ipv6.conf.all.forwarding"] == "1"
    home = str(tmp_path / "data")
    tags = labels("wg", "wireguard-go", home)
    options = create_options("vpn-wg", launch, tags, network_name(home))
    compose = compose_service("vpn-wg", launch, tags)
    assert options["cap_add"] == compose["cap_add"] == ["NET_ADMIN"]
    assert options["devices"] == ["/dev/net/tun:/dev/net/tun:rwm"]
    assert compose["devices"] == ["/dev/net/tun:/dev/net/tun"]
    assert options["sysctls"] == compose["sysctls"] == {"net.ipv4.ip_forward": "1"}
    assert options["healthcheck"]["test"] == compose["healthcheck"]["test"]
    # Other engines ask for none of it.
    plain = container_launch(servers, engine_for("sing-box"), spec("shadowsocks"))
    assert not {"cap_add", "devices", "sysctls"} & set(create_options("x", plain, {}, "n"))


def test_wireguard_commands_run_where_the_server_runs(tmp_path: Path) -> None:
    """One engine, one seam: natively its helpers run here, in Docker in the container."""
    from vpn_manager.engines.wireguard.engine import WireGuardEngine
    from vpn_manager.proc import HOST
    from vpn_manager.runtimes.docker.exec import ContainerCommands

    servers = service(tmp_path)
    docker = servers.engine(wireguard_spec())
    assert isinstance(docker, WireGuardEngine)
    assert isinstance(docker.run, ContainerCommands)
    assert docker.run.server == "wg"
    assert docker.tool("wg") == "wg"  # on the image's PATH
    native = servers.engine(dataclasses.replace(wireguard_spec(), runtime="native"))
    assert isinstance(native, WireGuardEngine)
    assert native.run is HOST


def test_container_and_compose_options_agree(tmp_path: Path) -> None:
    servers = service(tmp_path)
    launch = container_launch(servers, engine_for("sing-box"), spec("shadowsocks"))
    home = str(tmp_path / "data")
    name = container_name("edge", home)
    assert name.startswith("vpn-edge-")
    assert name != container_name("edge", "/another/home")
    tags = labels("edge", "sing-box", home)
    options = create_options(name, launch, tags, network_name(home))
    compose = compose_service(name, launch, tags)
    assert options["restart_policy"] == {"Name": "unless-stopped"}
    assert compose["restart"] == "unless-stopped"
    assert options["entrypoint"] == compose["entrypoint"] == ["sing-box"]
    assert options["command"] == compose["command"]
    assert options["ports"]["8388/udp"] == ("127.0.0.1", 8388)
    assert "127.0.0.1:8388:8388/udp" in compose["ports"]
    assert all(v["mode"] == "ro" for v in options["volumes"].values())
    assert all(v["read_only"] for v in compose["volumes"])
    assert options["healthcheck"]["test"] == compose["healthcheck"]["test"]
    assert options["labels"] == compose["labels"] == tags


def test_usage_from_a_stats_sample() -> None:
    sample = {
        "cpu_stats": {
            "cpu_usage": {"total_usage": 3_000_000},
            "system_cpu_usage": 20_000_000,
            "online_cpus": 2,
        },
        "precpu_stats": {"cpu_usage": {"total_usage": 1_000_000}, "system_cpu_usage": 10_000_000},
        "memory_stats": {"usage": 10_000, "limit": 1_000_000, "stats": {"inactive_file": 4_000}},
        "networks": {"eth0": {"rx_bytes": 5, "tx_bytes": 7}, "eth1": {"rx_bytes": 1}},
    }
    assert usage(sample) == {
        "cpu_percent": 40.0,  # 2 ms of 10 ms on 2 cores
        "memory_bytes": 6_000,
        "memory_limit_bytes": 1_000_000,
        "net_rx_bytes": 6,
        "net_tx_bytes": 7,
    }


def test_docker_times() -> None:
    parsed = timestamp("2026-11-26T03:24:22.948345621Z")
    assert parsed is not None
    assert parsed.isoformat() == "2026-11-26T03:24:22.948345+00:00"
    assert timestamp("0001-01-01T00:00:00Z") is None
    assert timestamp(None) is None


@pytest.mark.parametrize(
    "host",
    [
        None,
        "unix:///var/run/docker.sock",
        "fd://",
        "npipe:////./pipe/docker_engine",
        "tcp://127.0.0.1:2375",
        "tcp://127.1.2.3:2375",
        "tcp://localhost:2375",
        "tcp://[::1]:2375",
    ],
)
def test_engines_on_this_machine(host: str | None) -> None:
    assert is_remote(host) is False


@pytest.mark.parametrize(
    "host", ["ssh://vpn@192.0.2.1", "ssh://root@127.0.0.1:2222", "ssh://localhost"]
)
def test_ssh_engines_are_remote_even_on_loopback(host: str) -> None:
    assert is_remote(host) is True


@pytest.mark.parametrize("host", ["tcp://192.0.2.1:2376", "tcp://docker.example.org:2375"])
def test_tcp_engines_elsewhere_are_refused_with_ssh_as_the_way(host: str) -> None:
    with pytest.raises(InvalidInput, match=r"can only be reached over ssh://") as caught:
        is_remote(host, host)
    assert caught.value.message.endswith("network.")  # one sentence, saying why
    assert "ssh://user@host" in (caught.value.hint or "")


async def test_xray_in_a_container_listens_everywhere_and_is_valid(tmp_path: Path) -> None:
    """No Xray image can be built here (Xray is a Python binding on this machine, not a binary):
    the config an Xray container would get is at least rendered for a container and accepted
    by the real Xray."""
    from vpn_manager.engines.ports import free_port
    from vpn_manager.models.server import ServerCreate

    servers = service(tmp_path)
    engine = engine_for("xray")
    create = ServerCreate.model_validate(
        {"name": "x", "protocol": "vless-reality", "port": 8443, "sni": "www.example.com"}
    )
    settings, secret = engine.new_server(create, free_port, tmp_path / "keys")
    xray = ServerSpec(
        name="x",
        protocol="vless-reality",
        listen="127.0.0.1",
        port=8443,
        host="127.0.0.1",
        settings=settings,
        secret=secret,
        runtime="docker",
        image="ghcr.io/xtls/xray-core:latest",
    )
    text = servers.render(engine, xray, [])
    data = json.loads(text)
    assert data["inbounds"][0]["listen"] == "0.0.0.0"
    # The API is a unix socket in the server's private directory, mounted read-write; no TCP
    # API port is published.
    control = servers.control_dir("x")
    assert "listen" not in data["api"]
    assert data["inbounds"][1]["listen"] == f"{control}/xray-api.sock,0666"
    assert data["routing"]["rules"] == [{"inboundTag": ["api-in"], "outboundTag": "api"}]
    assert data["log"]["access"] == "/dev/stdout"
    assert data["log"]["error"] == "/dev/stderr"
    launch = container_launch(servers, engine, xray)
    assert launch.control_dir == control
    assert [p.container_port for p in launch.ports] == [8443]
    options = create_options("c", launch, {}, "n")
    assert options["volumes"][str(control)] == {"bind": str(control), "mode": "rw"}
    assert all(v["mode"] == "ro" for k, v in options["volumes"].items() if k != str(control))
    assert launch.binary == "xray"
    assert launch.args == ["run", "-c", str(servers.files("x").config)]
    assert launch.health is None  # distroless: `status` says "no healthcheck"
    (tmp_path / "scratch").mkdir()
    await engine.validate(text, tmp_path / "scratch")
