"""The Docker runtime's pure parts, without a Docker engine: what a server looks like inside a
container, the container and compose options made from it, stats arithmetic, time parsing, and
which engines count as this machine's."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vpn_manager.engines.base import ServerSpec
from vpn_manager.engines.registry import engine_for
from vpn_manager.errors import InvalidInput
from vpn_manager.runtimes.docker import (
    _timestamp,
    _usage,
    compose_service,
    container_name,
    create_options,
    is_remote,
    labels,
    network_name,
)
from vpn_manager.services.servers import ServerService
from vpn_manager.settings import DockerSettings, Paths
from vpn_manager.storage import Database


def service(tmp_path: Path) -> ServerService:
    paths = Paths.from_env({}, home=tmp_path)
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'vpn.db'}")  # never opened here
    return ServerService(db, paths, docker=DockerSettings())


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
    rendered = json.loads(servers._render(engine_for("shadowsocks"), spec("shadowsocks"), []))
    assert rendered["inbounds"][0]["listen"] == "0.0.0.0"
    assert {s["listen"] for s in rendered["services"]} == {"0.0.0.0"}
    assert rendered["log"]["output"] == "/dev/stderr"
    native = json.loads(
        servers._render(engine_for("shadowsocks"), spec("shadowsocks", runtime="native"), [])
    )
    assert native["inbounds"][0]["listen"] == "127.0.0.1"
    assert {s["listen"] for s in native["services"]} == {"127.0.0.1"}
    assert native["log"]["output"].endswith("edge.error.log")
    v6 = json.loads(servers._render(engine_for("mixed"), spec("mixed", listen="::1"), []))
    assert v6["inbounds"][0]["listen"] == "::"


@pytest.mark.parametrize(
    ("protocol", "protos"),
    [("shadowsocks", {"tcp", "udp"}), ("hysteria2", {"udp"}), ("mixed", {"tcp"})],
)
def test_published_ports(tmp_path: Path, protocol: str, protos: set[str]) -> None:
    servers = service(tmp_path)
    launch = servers._container_launch(engine_for(protocol), spec(protocol))
    main = {p.proto for p in launch.ports if p.host_port == 8388}
    assert main == protos
    control = [p for p in launch.ports if p.host_port != 8388]
    assert {p.host_port for p in control} >= {40001}
    assert all(p.host_ip == "127.0.0.1" and p.proto == "tcp" for p in control)
    assert launch.image == "example/sing-box:1"
    assert launch.binary == "sing-box"
    assert launch.health == ["tools", "fetch", "http://127.0.0.1:40001/"]


def test_wireguard_cannot_run_in_docker(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="cannot run in Docker"):
        service(tmp_path)._container_launch(engine_for("wireguard"), spec("wireguard"))


def test_container_and_compose_options_agree(tmp_path: Path) -> None:
    servers = service(tmp_path)
    launch = servers._container_launch(engine_for("shadowsocks"), spec("shadowsocks"))
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
    assert _usage(sample) == {
        "cpu_percent": 40.0,  # 2 ms of 10 ms on 2 cores
        "memory_bytes": 6_000,
        "memory_limit_bytes": 1_000_000,
        "net_rx_bytes": 6,
        "net_tx_bytes": 7,
    }


def test_docker_times() -> None:
    parsed = _timestamp("2026-11-26T03:24:22.948345621Z")
    assert parsed is not None
    assert parsed.isoformat() == "2026-11-26T03:24:22.948345+00:00"
    assert _timestamp("0001-01-01T00:00:00Z") is None
    assert _timestamp(None) is None


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
    engine = engine_for("vless-reality")
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
    text = servers._render(engine, xray, [])
    data = json.loads(text)
    assert data["inbounds"][0]["listen"] == "0.0.0.0"
    assert data["api"]["listen"] == f"0.0.0.0:{settings['api_port']}"
    assert data["log"]["access"] == "/dev/stdout"
    assert data["log"]["error"] == "/dev/stderr"
    launch = servers._container_launch(engine, xray)
    assert launch.binary == "xray"
    assert launch.args == ["run", "-c", str(servers.files("x").config)]
    assert launch.health is None  # distroless: `status` says "no healthcheck"
    (tmp_path / "scratch").mkdir()
    await engine.validate(text, tmp_path / "scratch")
