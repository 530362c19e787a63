"""VLESS+REALITY end to end: real Xray server and clients, real traffic, all on 127.0.0.1."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import signal
import socket
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from tests.e2e.conftest import (
    SNI,
    Vpn,
    curl_fails,
    curl_via,
    install,
    link_of,
    xray_client,
)
from tests.e2e.net import BACKEND_PAGE, TARGET_PAGE, Stream, free_port, tls_get
from tests.e2e.other_user import xray_api_addresses
from vpn_manager.engines.base import Files
from vpn_manager.engines.xray.api import XrayApi
from vpn_manager.engines.xray.engine import XrayEngine
from vpn_manager.errors import EngineError
from vpn_manager.links import VlessRealityLink, xray_client_config
from vpn_manager.specs import ServerSpec

pytestmark = pytest.mark.usefixtures("need_root")


def pid_of(vpn: Vpn, server: str) -> int:
    status = vpn.json("server", "status", server)
    assert isinstance(status, dict)
    assert status["healthy"], status
    return int(status["pid"])


def test_client_from_printed_link_fetches_a_page(
    vpn: Vpn, reality_site: int, backend: int, tmp_path: Path
) -> None:
    server = install(vpn, reality_site)
    vpn.ok("user", "add", "alice", "--server", server.name)
    link = link_of(vpn, "alice", server.name)
    assert link.startswith("vless://")
    assert link.endswith(f"#alice@{server.name}")  # the label: the app tells servers apart
    with xray_client(link, tmp_path / "alice") as socks:
        assert curl_via(socks, f"http://127.0.0.1:{backend}/") == BACKEND_PAGE.decode()
        assert curl_via(socks, f"http://127.0.0.1:{backend}/bytes/200000") == "x" * 200_000
    # `vpn user config` prints the same client config, ready to run.
    printed = json.loads(vpn.ok("user", "config", "alice", "--server", server.name).stdout)
    assert printed == xray_client_config(VlessRealityLink.parse(link), 1080)
    singbox = json.loads(
        vpn.ok("user", "config", "alice", "--server", server.name, "--client", "sing-box").stdout
    )
    assert singbox["outbounds"][0]["tls"]["reality"]["public_key"] in link
    # Per-user counters exist from the first connection: alice's download is counted as hers.
    servers = vpn.json("server", "list")
    assert isinstance(servers, list)

    config = json.loads((vpn.home / "state/rendered" / server.name / "config.json").read_text())
    (api_socket,) = xray_api_addresses(config)  # the server's private unix socket

    async def read() -> dict[str, tuple[int, int]]:
        async with XrayApi(0, unix=api_socket) as api:
            return await api.user_traffic()

    traffic = asyncio.run(read())
    assert set(traffic) == {"user-1"}
    uplink, downlink = traffic["user-1"]
    assert uplink > 0
    assert downlink >= 200_000
    # Anyone else who knocks on the port gets the real site's page: REALITY passes them through.
    answer = tls_get(server.port, SNI)
    assert answer.startswith(b"HTTP/1.1 200")
    assert answer.endswith(TARGET_PAGE)


def test_live_add_and_disable_leave_other_users_alone(
    vpn: Vpn, reality_site: int, backend: int, tmp_path: Path
) -> None:
    server = install(vpn, reality_site)
    vpn.ok("user", "add", "alice", "--server", server.name)
    alice_link = link_of(vpn, "alice", server.name)
    pid = pid_of(vpn, server.name)
    with xray_client(alice_link, tmp_path / "alice") as alice:
        curl_via(alice, f"http://127.0.0.1:{backend}/")  # warm up the fresh server
        stream = Stream(alice, backend)
        try:
            assert stream.flowing(), "alice's download does not flow"
            vpn.ok("user", "add", "bob", "--server", server.name)
            bob_link = link_of(vpn, "bob", server.name)
            assert pid_of(vpn, server.name) == pid, "adding a user restarted the engine"
            assert stream.flowing(), "adding bob disturbed alice's open connection"
            with xray_client(bob_link, tmp_path / "bob") as bob:
                assert curl_via(bob, f"http://127.0.0.1:{backend}/") == BACKEND_PAGE.decode()
                bob_stream = Stream(bob, backend)
                try:
                    assert bob_stream.flowing()
                    vpn.ok("user", "disable", "alice")
                    deadline = time.monotonic() + 5
                    while stream.ended is None and time.monotonic() < deadline:
                        time.sleep(0.1)
                    assert stream.ended is not None, "alice's open tunnel still carries traffic"
                    assert curl_fails(alice, f"http://127.0.0.1:{backend}/")
                    assert bob_stream.flowing(), "disabling alice cut bob too"
                    assert curl_via(bob, f"http://127.0.0.1:{backend}/", attempts_for=0)
                    assert pid_of(vpn, server.name) == pid
                finally:
                    bob_stream.close()
            vpn.ok("user", "enable", "alice")
            assert curl_via(alice, f"http://127.0.0.1:{backend}/") == BACKEND_PAGE.decode()
        finally:
            stream.close()
    config = json.loads((vpn.home / "state" / "rendered" / server.name / "config.json").read_text())
    emails = [c["email"] for c in config["inbounds"][0]["settings"]["clients"]]
    assert len(emails) == 2, "the rendered config must hold both users, so restarts keep them"


def test_invalid_change_rolls_back_and_keeps_serving(
    vpn: Vpn, reality_site: int, backend: int, tmp_path: Path
) -> None:
    server = install(vpn, reality_site)
    vpn.ok("user", "add", "alice", "--server", server.name)
    config_file = vpn.home / "state" / "rendered" / server.name / "config.json"
    before = config_file.read_bytes()
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        taken = holder.getsockname()[1]
        result = vpn("server", "set", server.name, "--port", str(taken), "--yes")
    assert result.code == 8, result.stderr
    assert "rolled back" in result.stderr
    assert "Traceback" not in result.stderr
    assert config_file.read_bytes() == before
    shown = vpn.json("server", "list")
    assert isinstance(shown, list)
    assert shown[0]["port"] == server.port
    with xray_client(link_of(vpn, "alice", server.name), tmp_path / "alice") as socks:
        assert curl_via(socks, f"http://127.0.0.1:{backend}/") == BACKEND_PAGE.decode()


def test_restart_and_sigkill_keep_every_user(
    vpn: Vpn, reality_site: int, backend: int, tmp_path: Path
) -> None:
    server = install(vpn, reality_site)
    vpn.ok("user", "add", "alice", "bob", "--server", server.name)
    links = {name: link_of(vpn, name, server.name) for name in ("alice", "bob")}
    vpn.ok("server", "restart", server.name)
    os.kill(pid_of(vpn, server.name), signal.SIGKILL)
    deadline = time.monotonic() + 5
    running = True
    while running and time.monotonic() < deadline:
        status = vpn.json("server", "status", server.name)
        assert isinstance(status, dict)
        running = bool(status["running"])
        time.sleep(0.05)
    assert not running, "a SIGKILLed engine must show as not running"
    vpn.ok("server", "start", server.name)
    for name, link in links.items():
        assert link_of(vpn, name, server.name) == link, "links must survive restarts"
        with xray_client(link, tmp_path / name) as socks:
            assert curl_via(socks, f"http://127.0.0.1:{backend}/") == BACKEND_PAGE.decode()
    # Rotating the keys changes every link: the old one stops working, the new one works.
    rotated = vpn.ok("server", "rotate-keys", server.name, "--yes")
    assert "link" in rotated.stderr
    new_link = link_of(vpn, "alice", server.name)
    assert new_link != links["alice"]
    with xray_client(links["alice"], tmp_path / "old") as socks:
        assert curl_fails(socks, f"http://127.0.0.1:{backend}/")
    with xray_client(new_link, tmp_path / "new") as socks:
        assert curl_via(socks, f"http://127.0.0.1:{backend}/") == BACKEND_PAGE.decode()


def test_qr_png_decodes_to_the_link(vpn: Vpn, reality_site: int, tmp_path: Path) -> None:
    server = install(vpn, reality_site)
    vpn.ok("user", "add", "alice", "--server", server.name)
    png = tmp_path / "alice.png"
    link = vpn.ok("user", "link", "alice", "--png", str(png)).stdout.strip()
    assert png.stat().st_mode & 0o777 == 0o600
    decoded = subprocess.run(
        ["zbarimg", "--raw", "-q", str(png)], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert decoded == link


def test_bad_input_changes_nothing(vpn: Vpn, reality_site: int) -> None:
    server = install(vpn, reality_site)
    vpn.ok("user", "add", "alice", "--server", server.name)
    vpn.ok("user", "add", "carol")
    before = vpn.json("server", "list")
    config_file = vpn.home / "state" / "rendered" / server.name / "config.json"
    config = config_file.read_bytes()
    pid = pid_of(vpn, server.name)
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        taken = str(holder.getsockname()[1])
        base = ["server", "install", "vless-reality", "--listen", "127.0.0.1", "--sni", SNI]
        cases = [
            ([*base, "--name", "x", "--port", taken], 5, "taken"),
            ([*base, "--name", "x", "--port", "70000"], 3, "port"),
            ([*base, "--name", "x", "--port", "0"], 3, "port"),
            ([*base, "--name", server.name, "--port", str(free_port())], 5, "already exists"),
            ([*base, "--name", "x", "--port", str(server.port)], 5, "already used"),
            (
                ["server", "install", "wireguard-x", "--name", "x", "--port", "1", "--sni", SNI],
                3,
                "protocol",
            ),
            (
                ["server", "install", "vless-reality", "--name", "x", "--port", "1", "--sni", "no"],
                3,
                "sni",
            ),
            ([*base, "--name", "x", "--port", str(free_port()), "--dest", "nohost"], 3, "dest"),
            ([*base, "--name", "x", "--port", str(free_port()), "--dest", "a:99999"], 3, "dest"),
            (["user", "link", "carol", "--server", server.name], 4, "not on server"),
            (["user", "revoke", "carol", server.name], 4, "not on server"),
            (["user", "add", "dave", "--server", "nope"], 4, "no server"),
            (["server", "status", "nope"], 4, "no server"),
        ]
        for args, code, words in cases:
            result = vpn(*args)
            assert result.code == code, (args, result.code, result.stderr)
            lines = result.stderr.strip().splitlines()
            assert lines[0].startswith("error:"), (args, lines)
            assert words in lines[0].lower(), (args, lines)
            assert "Traceback" not in result.stderr
    assert vpn.json("server", "list") == before
    assert config_file.read_bytes() == config
    assert pid_of(vpn, server.name) == pid
    users = vpn.json("user", "list")
    assert isinstance(users, list)
    assert [u["name"] for u in users] == ["alice", "carol"], "a failed add must leave no user"


def test_the_engine_refuses_a_broken_config(tmp_path: Path) -> None:
    """Validation is Xray's own verdict: a config it cannot run (here a private key of the wrong
    length) is refused before anything is written."""
    spec = ServerSpec(
        name="broken",
        protocol="vless-reality",
        listen="127.0.0.1",
        port=free_port(),
        host="127.0.0.1",
        settings={
            "sni": SNI,
            "dest": "127.0.0.1:9",
            "short_ids": ["abcd"],
            "api_port": free_port(),
            "public_key": "x",
        },
        secret={"private_key": "too-short"},
    )
    engine = XrayEngine()
    files = Files(tmp_path / "c.json", tmp_path / "a.log", tmp_path / "e.log")
    with pytest.raises(EngineError, match="refused the config"):
        asyncio.run(engine.validate(engine.render(spec, [], files), tmp_path))
    good = ServerSpec(
        **{
            **spec.__dict__,
            "secret": {"private_key": "4FntWLkKlvSV44OGaN0WmHJeH5r5B1XTdNUUp5yKfHU"},
        }
    )
    asyncio.run(engine.validate(engine.render(good, [], files), tmp_path))
    # The form with the API on a unix socket in the server's private directory (a throwaway
    # directory of its own for the candidate's socket).
    private = dataclasses.replace(good, control_dir=str(tmp_path / "api"))
    asyncio.run(engine.validate(engine.render(private, [], files), tmp_path))
    assert not (tmp_path / "api").exists()


def test_adding_a_user_who_is_there_sets_the_key_given(vpn: Vpn, reality_site: int) -> None:
    """A user revoked and granted again by two commands at once reaches the engine as an add of
    a user it still has under the old key: the add must leave the new key there, and an add
    with the key the engine has is done. Asked through the engine's own API."""
    from vpn_manager.engines.xray.config import INBOUND_TAG

    server = install(vpn, reality_site)
    vpn.ok("user", "add", "alice", "bob", "--server", server.name)
    config = json.loads((vpn.home / "state/rendered" / server.name / "config.json").read_text())
    (api_socket,) = xray_api_addresses(config)
    clients = {c["email"]: c for c in config["inbounds"][0]["settings"]["clients"]}
    new = {**clients["user-1"], "id": str(uuid.uuid4())}

    async def add_then_read(entries: list[dict[str, object]]) -> dict[str, str]:
        async with XrayApi(0, unix=api_socket) as api:
            await api.add_users(INBOUND_TAG, entries)
            return await api.user_keys(INBOUND_TAG)

    assert asyncio.run(add_then_read([clients["user-2"]]))["user-2"] == clients["user-2"]["id"]
    keys = asyncio.run(add_then_read([new]))
    assert keys == {"user-1": new["id"], "user-2": clients["user-2"]["id"]}
