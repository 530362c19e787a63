"""The control APIs of a server in a container answer us and no other local user: sing-box's
api and ssm-api ports are published on the host's 127.0.0.1 (through docker-proxy here), and the
server's nftables table refuses another user's connections to them before Docker handles them."""

from __future__ import annotations

import json
import subprocess
from typing import Any

from tests.docker.conftest import DockerVpn
from tests.e2e.other_user import callers, singbox_services
from vpn_manager.engines import guard

STARTED = "/daemon.StartedService/GetStartedAt"


def test_published_api_ports_refuse_other_local_users(dvpn: DockerVpn) -> None:
    server = dvpn.install("shadowsocks", "ss")
    dvpn.ok("user", "add", "alice", "--server", server.name)
    config: dict[str, Any] = json.loads(
        (dvpn.home / "state" / "rendered" / server.name / "config.json").read_text()
    )
    services = singbox_services(config)
    assert services["ssm-api"]["listen"] == "0.0.0.0"  # inside the container
    (container,) = dvpn.containers()
    bindings = dvpn.client.containers.get(container).attrs["HostConfig"]["PortBindings"]
    ssm_port, api_port = services["ssm-api"]["listen_port"], services["api"]["listen_port"]
    for port in (ssm_port, api_port):
        assert bindings[f"{port}/tcp"] == [{"HostIp": "127.0.0.1", "HostPort": str(port)}]
    ssm = f"http://127.0.0.1:{ssm_port}/server/v1"
    api = f"127.0.0.1:{api_port}"
    secret = services["api"]["secret"]
    with callers() as (nobody, us):
        assert us.http("GET", ssm + "/users").get("status") == 200
        assert us.grpc(api, STARTED, b"", secret).get("grpc-status") == "0"
        for method, url, body in (
            ("GET", ssm + "/users", None),
            ("POST", ssm + "/users", {"username": "rogue", "uPSK": "rogue-password"}),
            ("DELETE", ssm + "/users/user-1", None),
        ):
            theirs = nobody.http(method, url, body)
            assert not theirs["reached"], (method, url, theirs)
        theirs = nobody.grpc(api, STARTED, b"", secret)
        assert not theirs["reached"], theirs
        users = json.loads(us.http("GET", ssm + "/users")["body"])["users"]
        assert [u["username"] for u in users] == ["user-1"]
    dvpn.ok("user", "add", "bob", "--server", server.name)
    dvpn.ok("server", "usage", server.name)
    result = dvpn.ok("--format", "json", "server", "status", server.name)
    status = json.loads(result.stdout)
    assert status["healthy"], status
    assert status["warnings"] == []
    dvpn.ok("server", "stop", server.name)
    table = guard.table(dvpn.home_label, server.name)
    listed = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True, check=True)
    assert table not in listed.stdout
