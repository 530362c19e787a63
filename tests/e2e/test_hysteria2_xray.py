"""Hysteria2 on Xray, end to end on 127.0.0.1: `vpn server install hysteria2` gives an Xray server,
and sing-box clients built from the printed `hysteria2://` links alone move bytes through it. A
second user added while the first streams gets in, the first stream and the engine's PID survive;
`vpn user disable` stops the first user's open stream within 5 s (its QUIC flow's packets are
dropped: Xray checks a user only when the connection authenticates) while the other user's stream
goes on, the PID still the same. An existing sing-box Hysteria2 server keeps running on sing-box
(tests/e2e/test_singbox.py)."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import Vpn, curl_fails, curl_via, link_of, singbox_client, xray_running
from tests.e2e.net import BACKEND_PAGE, Stream, free_port
from vpn_manager.engines import flowcuts

pytestmark = pytest.mark.usefixtures("need_root")

FLOW_S = 0.5  # how long a stream is watched for more bytes (the backend sends every 50 ms)


def install_hysteria2(vpn: Vpn, name: str = "hy") -> int:
    port = free_port()
    vpn.ok(
        *("server", "install", "hysteria2", "--name", name, "--port", str(port)),
        *("--listen", "127.0.0.1", "--host", "127.0.0.1", "--sni", "vpn.test", "--allow-private"),
    )
    return port


def status_of(vpn: Vpn, server: str) -> dict[str, object]:
    status = vpn.json("server", "status", server)
    assert isinstance(status, dict)
    assert status["healthy"], status
    return status


def pid_of(vpn: Vpn, server: str) -> int:
    status = status_of(vpn, server)
    assert status["engine"] == "xray", status
    return int(str(status["pid"]))


def stopped(stream: Stream, within: float = 5.0) -> bool:
    """Does the stream stop moving bytes within `within` seconds (and stay stopped)?"""
    deadline = time.monotonic() + within
    while stream.flowing(FLOW_S):
        if time.monotonic() > deadline:
            return False
    return not stream.flowing(1.0)


def test_users_change_live_and_a_disabled_users_stream_is_cut(
    vpn: Vpn, backend: int, tmp_path: Path
) -> None:
    port = install_hysteria2(vpn)
    assert status_of(vpn, "hy")["engine"] == "xray"
    vpn.ok("user", "add", "alice", "--server", "hy")
    link = link_of(vpn, "alice", "hy")
    assert link.startswith("hysteria2://")
    assert "&insecure=1&pinSHA256=" in link  # self-signed: pinned, as a sing-box server's link
    pid = pid_of(vpn, "hy")
    page = f"http://127.0.0.1:{backend}/"
    with singbox_client(link, tmp_path / "alice") as alice:
        assert curl_via(alice, page, attempts_for=5) == BACKEND_PAGE.decode()
        stream = Stream(alice, backend)
        try:
            assert stream.flowing(FLOW_S), "alice's download does not flow"
            added = vpn.ok("user", "add", "bob", "--server", "hy")
            assert "hy: applied live." in added.stderr
            assert pid_of(vpn, "hy") == pid, "adding a user restarted the engine"
            assert stream.flowing(FLOW_S), "adding bob disturbed alice's open connection"
            with singbox_client(link_of(vpn, "bob", "hy"), tmp_path / "bob") as bob:
                assert curl_via(bob, page, attempts_for=5) == BACKEND_PAGE.decode()
                bob_stream = Stream(bob, backend)
                try:
                    assert bob_stream.flowing(FLOW_S)
                    # Per-user counters (StatsService) over QUIC: the engine has sent alice at
                    # least what her client has read by now.
                    got = stream.received
                    usage = vpn.json("server", "usage", "hy")
                    assert isinstance(usage, list)
                    down = {row["name"]: row["download_bytes"] for row in usage}
                    assert down["alice"] >= got > 10_000, (got, usage)
                    assert down["bob"] > 0, usage
                    disabled = vpn.ok("user", "disable", "alice")
                    assert "hy: applied live." in disabled.stderr
                    assert stopped(stream), "alice's open stream still carries traffic"
                    assert asyncio.run(flowcuts.dropped(port)), "no flow of alice's is dropped"
                    assert curl_fails(alice, page)
                    assert bob_stream.flowing(FLOW_S), "disabling alice cut bob too"
                    assert pid_of(vpn, "hy") == pid
                finally:
                    bob_stream.close()
        finally:
            stream.close()
    # Enabled again (live): a client of hers gets in at once (her old client's connection is
    # dropped until it idles out; a new one comes from another port).
    vpn.ok("user", "enable", "alice")
    with singbox_client(link, tmp_path / "alice-again") as alice:
        assert curl_via(alice, page, attempts_for=5) == BACKEND_PAGE.decode()
    assert pid_of(vpn, "hy") == pid


def printed_xray_client(vpn: Vpn, user: str, server: str, workdir: Path) -> Any:
    """A real Xray client run from what `vpn user config USER --client xray` prints."""
    port = free_port()
    printed = vpn.ok(
        "user", "config", user, "--server", server, "--client", "xray", "--socks-port", str(port)
    ).stdout
    workdir.mkdir(parents=True, exist_ok=True)
    return xray_running(json.loads(printed), workdir / "xray-client.json", port)


def test_an_xray_client_from_the_printed_config(vpn: Vpn, backend: int, tmp_path: Path) -> None:
    """`--client xray` on a Hysteria2 server: Xray's hysteria outbound, trusting the self-signed
    certificate by the link's pin; its bytes are counted under the user."""
    install_hysteria2(vpn)
    vpn.ok("user", "add", "alice", "--server", "hy")
    with printed_xray_client(vpn, "alice", "hy", tmp_path) as socks:
        body = curl_via(socks, f"http://127.0.0.1:{backend}/bytes/300000", attempts_for=10)
        assert len(body) == 300_000
    usage = vpn.json("server", "usage", "hy")
    assert isinstance(usage, list)
    assert [row["download_bytes"] >= 300_000 for row in usage if row["name"] == "alice"] == [True]


def test_a_deleted_user_is_refused_and_the_server_keeps_its_pid(
    vpn: Vpn, backend: int, tmp_path: Path
) -> None:
    """A user deleted while idle: refused at the next connection (a new QUIC connection is
    checked against the users), the engine never restarted."""
    install_hysteria2(vpn)
    vpn.ok("user", "add", "alice", "bob", "--server", "hy")
    pid = pid_of(vpn, "hy")
    page = f"http://127.0.0.1:{backend}/"
    alice_link, bob_link = link_of(vpn, "alice", "hy"), link_of(vpn, "bob", "hy")
    deleted = vpn.ok("user", "delete", "alice", "--yes")
    assert "hy: applied live." in deleted.stderr
    with singbox_client(alice_link, tmp_path / "alice") as alice:
        assert curl_fails(alice, page)
    with singbox_client(bob_link, tmp_path / "bob") as bob:
        assert curl_via(bob, page, attempts_for=5) == BACKEND_PAGE.decode()
    assert pid_of(vpn, "hy") == pid
