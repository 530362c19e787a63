"""The engines' control APIs answer us and no other local user: another user (nobody, uid 65534)
tries each API of a running server with a client of its own (tests/e2e/intruder.py) and is
refused, while the same client run as us gets through and our own commands keep working."""

from __future__ import annotations

import json
import subprocess
import uuid
from typing import Any

from tests.e2e.conftest import Vpn, install, install_singbox
from tests.e2e.net import free_port
from tests.e2e.other_user import callers, singbox_services, xray_api_addresses
from vpn_manager.engines import guard
from vpn_manager.engines.xray.api import add_vless_user, remove_user
from vpn_manager.engines.xray.config import FLOW, INBOUND_TAG
from vpn_manager.engines.xray.proto.app.stats.command.command_pb2 import QueryStatsRequest

HANDLER = "/xray.app.proxyman.command.HandlerService/"
STATS = "/xray.app.stats.command.StatsService/"
STARTED = "/daemon.StartedService/GetStartedAt"


def rendered(vpn: Vpn, server: str) -> dict[str, Any]:
    config: dict[str, Any] = json.loads(
        (vpn.home / "state" / "rendered" / server / "config.json").read_text()
    )
    return config


def our_commands_work(vpn: Vpn, server: str) -> None:
    """`vpn user add --server`, `vpn server usage` and `vpn server status` as before, with no
    warning about the control API."""
    vpn.ok("user", "add", f"bob-{server}", "--server", server)
    vpn.ok("server", "usage", server)
    result = vpn.ok("--format", "json", "server", "status", server)
    status = json.loads(result.stdout)
    assert status["healthy"], status["detail"]
    assert status["api_ok"], status
    assert status["warnings"] == []
    assert "Warning" not in result.stderr


def test_xray_api_refuses_other_local_users(need_root: None, vpn: Vpn, reality_site: int) -> None:
    server = install(vpn, reality_site)
    vpn.ok("user", "add", "alice", "--server", server.name)
    addresses = xray_api_addresses(rendered(vpn, server.name))
    assert addresses, "no API address in the rendered config"
    rogue = add_vless_user(INBOUND_TAG, "rogue", str(uuid.uuid4()), FLOW).SerializeToString()
    attempts = [
        (HANDLER + "AlterInbound", rogue),
        (HANDLER + "AlterInbound", remove_user(INBOUND_TAG, "user-1").SerializeToString()),
        (STATS + "QueryStats", QueryStatsRequest(pattern="").SerializeToString()),
    ]
    with callers() as (nobody, us):
        for address in addresses:
            ours_query = QueryStatsRequest(pattern="user>>>").SerializeToString()
            ours = us.grpc(address, STATS + "QueryStats", ours_query)
            assert ours.get("grpc-status") == "0", (address, ours)
            for path, body in attempts:
                theirs = nobody.grpc(address, path, body)
                assert not theirs["reached"], (address, path, theirs)
    our_commands_work(vpn, server.name)
    links = vpn.json("user", "list")
    assert isinstance(links, list)
    assert {u["name"] for u in links} == {"alice", f"bob-{server.name}"}


def test_singbox_apis_refuse_other_local_users(need_root: None, vpn: Vpn) -> None:
    server = install_singbox(vpn, "shadowsocks", "ss", "--method", "aes-256-gcm")
    vpn.ok("user", "add", "alice", "--server", server.name)
    services = singbox_services(rendered(vpn, server.name))
    ssm = f"http://127.0.0.1:{services['ssm-api']['listen_port']}/server/v1"
    api = f"127.0.0.1:{services['api']['listen_port']}"
    secret = services["api"]["secret"]
    attempts: list[tuple[str, str, object]] = [
        ("GET", ssm + "/users", None),
        ("POST", ssm + "/users", {"username": "rogue", "uPSK": "rogue-password"}),
        ("DELETE", ssm + "/users/user-1", None),
        ("GET", ssm + "/stats", None),
    ]
    with callers() as (nobody, us):
        ours = us.http("GET", ssm + "/users")
        assert ours.get("status") == 200, ours
        assert us.grpc(api, STARTED, b"", secret).get("grpc-status") == "0"
        for method, url, body in attempts:
            theirs = nobody.http(method, url, body)
            assert not theirs["reached"], (method, url, theirs)
        # Not even with the api service's secret (as if it had leaked).
        theirs = nobody.grpc(api, STARTED, b"", secret)
        assert not theirs["reached"], theirs
        users = json.loads(us.http("GET", ssm + "/users")["body"])["users"]
        assert [u["username"] for u in users] == ["user-1"]
    our_commands_work(vpn, server.name)

    # Without the firewall table (as where nft cannot be used) status says so plainly.
    table = guard.table(str(vpn.home / "data"), server.name)
    subprocess.run(["nft", "delete", "table", "inet", table], check=True)
    result = vpn.ok("server", "status", server.name)
    assert "Warning: the control API (127.0.0.1 port" in result.stderr
    assert "reachable by every local user" in result.stderr
    with callers() as (nobody, _):
        assert nobody.http("GET", ssm + "/users")["reached"]  # the warning is true
    # The service's next round makes it again (after a reboot a container is back before us).
    vpn.ok("serve", "--once")
    status = json.loads(vpn.ok("--format", "json", "server", "status", server.name).stdout)
    assert status["warnings"] == []
    with callers() as (nobody, _):
        assert not nobody.http("GET", ssm + "/users")["reached"]
    vpn.ok("server", "stop", server.name)
    listed = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True, check=True)
    assert table not in listed.stdout


def test_without_nftables_the_warning_is_plain_and_true(need_root: None, vpn: Vpn) -> None:
    """Where nft cannot be used (here: not on PATH) the server still runs, install and status
    say plainly that the API is open to every local user, and it is; the api service still
    asks for its secret."""
    vpn.env["PATH"] = ":".join(
        part for part in vpn.env.get("PATH", "").split(":") if not part.endswith("sbin")
    )
    port = free_port()
    installed = vpn.ok(
        "server", "install", "shadowsocks", "--name", "open", "--port", str(port),
        "--listen", "127.0.0.1", "--host", "127.0.0.1", "--method", "aes-256-gcm",
    )  # fmt: skip
    assert "Warning: the control API (127.0.0.1 port" in installed.stderr
    assert "nft is not installed" in installed.stderr
    # A user first: with none, sing-box resets connections to the port, which the probe may
    # take for a closed port.
    vpn.ok("user", "add", "alice", "--server", "open")
    status = json.loads(vpn.ok("--format", "json", "server", "status", "open").stdout)
    assert status["healthy"], status["detail"]
    (warning,) = status["warnings"]
    assert "reachable by every local user" in warning
    services = singbox_services(rendered(vpn, "open"))
    api = f"127.0.0.1:{services['api']['listen_port']}"
    with callers() as (nobody, _):
        ssm = f"http://127.0.0.1:{services['ssm-api']['listen_port']}/server/v1/users"
        assert nobody.http("GET", ssm).get("status") == 200
        refused = nobody.grpc(api, STARTED, b"", "not-the-secret")
        assert refused.get("grpc-status") == "16", refused  # UNAUTHENTICATED
    assert (
        guard.table(str(vpn.home / "data"), "open")
        not in subprocess.run(
            ["nft", "list", "tables"], capture_output=True, text=True, check=True
        ).stdout
    )
