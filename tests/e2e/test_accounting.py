"""Accounting and limits end to end: real engines, real traffic, `vpn serve` doing the work."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import (
    VPN,
    Server,
    Vpn,
    curl_fails,
    curl_via,
    install,
    install_singbox,
    link_of,
    singbox_client,
    xray_client,
)
from tests.e2e.net import BACKEND_PAGE, Stream, free_port, socks_connect
from vpn_manager.engines.base import Counter
from vpn_manager.engines.singbox.api import ConnectionFollower, SingBoxApi

pytestmark = pytest.mark.usefixtures("need_root")


def user(vpn: Vpn, name: str) -> dict[str, Any]:
    data = vpn.json("user", "show", name)
    assert isinstance(data, dict)
    return data


def wait_status(vpn: Vpn, name: str, status: str, within: float = 10) -> None:
    """Wait for the running service to give a user this status."""
    deadline = time.monotonic() + within
    while user(vpn, name)["status"] != status and time.monotonic() < deadline:
        time.sleep(0.25)
    assert user(vpn, name)["status"] == status


def downloaded(vpn: Vpn, name: str) -> int:
    return int(user(vpn, name)["download_bytes"])


def test_xray_bytes_counted_in_one_poll_and_across_a_kill(
    vpn: Vpn, reality_site: int, backend: int, tmp_path: Path
) -> None:
    server = install(vpn, reality_site)
    vpn.ok("user", "add", "alice", "--server", server.name)
    link = link_of(vpn, "alice", server.name)
    with xray_client(link, tmp_path / "alice") as socks:
        curl_via(socks, f"http://127.0.0.1:{backend}/")  # warm up the fresh REALITY server
        vpn.ok("serve", "--once")
        before = downloaded(vpn, "alice")
        body = curl_via(socks, f"http://127.0.0.1:{backend}/bytes/500000", attempts_for=0)
        assert len(body) == 500_000
        vpn.ok("serve", "--once")
        # Xray counts the proxied bytes: the body and the response headers (~150 bytes).
        counted = downloaded(vpn, "alice") - before
        assert 500_000 <= counted <= 502_000, counted
        vpn.ok("serve", "--once")
        assert downloaded(vpn, "alice") - before == counted, "a poll with no traffic added bytes"
        # Kill the engine in the middle of a transfer; the service restarts it.
        stream = Stream(socks, backend)
        try:
            assert stream.flowing()
            vpn.ok("serve", "--once")
            counted_before_kill = downloaded(vpn, "alice")
            received_at_poll = stream.received
            status = vpn.json("server", "status", server.name)
            assert isinstance(status, dict)
            os.kill(int(status["pid"]), signal.SIGKILL)
            time.sleep(0.5)
            after_kill = stream.received
        finally:
            stream.close()
        vpn.ok("serve", "--once")  # restarts the engine and counts its (new) counters
        restarted = vpn.json("server", "status", server.name)
        assert isinstance(restarted, dict)
        assert restarted["healthy"]
        assert restarted["pid"] != status["pid"]
        total = downloaded(vpn, "alice")
        # Nothing counted is lost; what moved between the last poll and the kill died with the
        # engine's counters; nothing is counted twice.
        assert counted_before_kill <= total <= counted_before_kill + (after_kill - received_at_poll)
        body = curl_via(socks, f"http://127.0.0.1:{backend}/bytes/300000", attempts_for=20)
        assert len(body) == 300_000
        vpn.ok("serve", "--once")
        grown = downloaded(vpn, "alice") - total
        assert 300_000 <= grown <= 302_000, grown
    # The hourly history holds the same bytes, and exports as CSV.
    lines = vpn.ok("stats", "--since", "1d", "--format", "csv").stdout.splitlines()
    assert lines[0] == "hour,user,server,upload_bytes,download_bytes"
    history = sum(int(line.split(",")[4]) for line in lines[1:] if ",alice," in line)
    assert history == downloaded(vpn, "alice")
    # `vpn monitor traffic` draws the live table (two refreshes, then it stops).
    shown = vpn.ok("monitor", "traffic", "--count", "2", "--interval", "0.2").stdout
    assert "alice" in shown
    assert "TOTAL" in shown


@pytest.mark.parametrize("protocol", ["shadowsocks", "tuic", "hysteria2"])
def test_bytes_counted_in_one_poll(vpn: Vpn, backend: int, tmp_path: Path, protocol: str) -> None:
    """sing-box's Shadowsocks (ssm-api) and TUIC (api service, QUIC); Xray's Hysteria2
    (StatsService, QUIC)."""
    server = install_singbox(vpn, protocol, protocol)
    vpn.ok("user", "add", "alice", "--server", server.name)
    with singbox_client(link_of(vpn, "alice", server.name), tmp_path / "alice") as socks:
        body = curl_via(socks, f"http://127.0.0.1:{backend}/bytes/400000", attempts_for=5)
        assert len(body) == 400_000
        time.sleep(0.3)  # sing-box updates a connection's counters after it closes
        vpn.ok("serve", "--once")
        counted = downloaded(vpn, "alice")
        assert 400_000 <= counted <= 402_000, counted
        vpn.ok("serve", "--once")
        assert downloaded(vpn, "alice") == counted, "a poll with no traffic added bytes"
    # Traffic counted (and so a first use stored): every read command still works, on both of
    # the database's read paths (the sqlite3 fast read and SQLAlchemy).
    listed = vpn.json("user", "list")
    assert isinstance(listed, list)
    assert [u["name"] for u in listed] == ["alice"]
    assert listed[0]["first_used_at"] is not None
    shown = vpn.json("user", "show", "alice")
    assert isinstance(shown, dict)
    assert shown["first_used_at"] == listed[0]["first_used_at"]
    assert "alice" in vpn.ok("user", "list").stdout
    assert '"alice"' in vpn.ok("user", "export").stdout


def test_a_raised_quota_lets_a_limited_user_back_in_at_once(
    vpn: Vpn, backend: int, tmp_path: Path
) -> None:
    """No service is running: `vpn user update --quota` itself puts alice back on the engine."""
    server = install_singbox(vpn, "trojan", "trojan")
    vpn.ok("user", "add", "alice", "--server", server.name, "--quota", "300KB")
    with singbox_client(link_of(vpn, "alice", server.name), tmp_path / "alice") as socks:
        body = curl_via(socks, f"http://127.0.0.1:{backend}/bytes/400000", attempts_for=5)
        assert len(body) == 400_000
        time.sleep(0.3)  # sing-box updates a connection's counters after it closes
        # One round counts her bytes and shuts her out; no service runs after it.
        assert serve_once(vpn)["limited"] == {"alice": "over-quota"}
        assert curl_fails(socks, f"http://127.0.0.1:{backend}/")
        changed = vpn.json("user", "update", "alice", "--quota", "100MB")
        assert isinstance(changed, dict)
        assert changed["status"] == "active"
        assert curl_via(socks, f"http://127.0.0.1:{backend}/", attempts_for=3) == (
            BACKEND_PAGE.decode()
        )


def fetch_closed(socks: int, backend: int, size: int) -> int:
    """One connection through the client: an HTTP/1.0 GET the backend answers and closes."""
    with socks_connect(socks, "127.0.0.1", backend) as conn:
        conn.sendall(f"GET /bytes/{size} HTTP/1.0\r\nHost: backend\r\n\r\n".encode())
        received = 0
        while chunk := conn.recv(65536):
            received += len(chunk)
    return received


def test_the_service_counts_every_closed_connection(vpn: Vpn, backend: int, tmp_path: Path) -> None:
    """sing-box's connection snapshot keeps only the last few closed connections, so a poll
    alone misses most of 600 short ones; the running service follows sing-box's connection
    events between its polls (5 s apart here) and counts every byte."""
    server = install_singbox(vpn, "mixed", "px")  # a sing-box server on a TCP port
    vpn.ok("user", "add", "alice", "--server", server.name)
    log = tmp_path / "serve.log"
    metrics = free_port()
    service = serve_in_background(vpn, log, metrics, interval=5)
    try:
        with singbox_client(link_of(vpn, "alice", server.name), tmp_path / "alice") as socks:
            rounds_seen(metrics, server.name, 2)  # it follows the server from then on
            moved = sum(fetch_closed(socks, backend, 1000) for _ in range(600))
            deadline = time.monotonic() + 15
            while downloaded(vpn, "alice") < moved and time.monotonic() < deadline:
                time.sleep(0.5)
        counted = downloaded(vpn, "alice")
        assert moved <= counted <= moved + 1000, (moved, counted, log.read_text()[-2000:])
    finally:
        service.terminate()
        service.wait(10)


def api_of(vpn: Vpn, server: str) -> SingBoxApi:
    """The sing-box server's api service, as its rendered configuration names it."""
    for path in Path(vpn.env["VPN_HOME"]).rglob("*.json"):
        if server not in path.parts and not path.name.startswith(server):
            continue
        try:
            config = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(config, dict):
            for service in config.get("services", []):
                if service.get("type") == "api":
                    return SingBoxApi(service["listen_port"], service["secret"])
    raise AssertionError(f"no rendered sing-box configuration for {server}")


def test_a_busy_follower_misses_no_closed_connection(
    vpn: Vpn, backend: int, tmp_path: Path
) -> None:
    """sing-box drops connection events while its sender waits for the reader (it queues only
    64), so the follower must take in what comes while its process is busy elsewhere: here its
    event loop is blocked for all of 300 short connections, and every one is still seen closed,
    with the bytes the client read."""
    install_singbox(vpn, "mixed", "px")
    vpn.ok("user", "add", "alice", "--server", "px")
    api = api_of(vpn, "px")

    async def follow(socks: int) -> tuple[int, list[Counter]]:
        follower = ConnectionFollower(api)
        follower.start()
        try:
            await asyncio.sleep(1)  # subscribed, the first snapshot read
            moved = sum(fetch_closed(socks, backend, 1000) for _ in range(300))  # blocks the loop
            seen: list[Counter] = []
            deadline = time.monotonic() + 10
            while len(seen) < 300 and time.monotonic() < deadline:
                await asyncio.sleep(0.2)
                seen += follower.take()
            return moved, seen
        finally:
            await follower.stop()

    with singbox_client(link_of(vpn, "alice", "px"), tmp_path / "alice") as socks:
        moved, seen = asyncio.run(follow(socks))
    assert len(seen) == 300, len(seen)
    assert sum(c.down for c in seen) == moved


def rounds_seen(metrics: int, server: str, rounds: int, within: float = 40) -> None:
    """Wait until the service's metrics have shown `rounds` good rounds that saw `server` up (a
    loaded machine can take seconds to start the service). After its first round the service
    starts following the server's events, on a connection of its own: the second round is
    the first known to follow."""
    up = f'vpn_server_up{{server="{server}"}} 1'
    seen: set[str] = set()
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        scraped = subprocess.run(
            ["curl", "-sS", "--max-time", "2", f"http://127.0.0.1:{metrics}/metrics"],
            capture_output=True,
            text=True,
            check=False,
        ).stdout
        stamps = [
            line.split()[-1]
            for line in scraped.splitlines()
            if line.startswith("vpn_last_good_round_timestamp_seconds ")
        ]
        if up in scraped and stamps:
            seen.add(stamps[0])
            if len(seen) >= rounds:
                return
        time.sleep(0.2)
    raise AssertionError(f"the service did not do {rounds} rounds with {server} up in {within} s")


def serve_in_background(
    vpn: Vpn, log: Path, metrics: int, interval: float = 1
) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            *vpn.prefix,
            str(VPN),
            "serve",
            "--interval",
            str(interval),
            "--metrics-port",
            str(metrics),
        ],
        env=vpn.env,
        stdout=subprocess.DEVNULL,
        stderr=log.open("wb"),
    )


def test_quota_cuts_the_open_transfer_and_expiry_refuses(
    vpn: Vpn, reality_site: int, backend: int, tmp_path: Path
) -> None:
    server = install(vpn, reality_site)
    vpn.ok("user", "add", "alice", "--server", server.name, "--quota", "150KB")
    vpn.ok("user", "add", "bob", "--server", server.name)
    metrics = free_port()
    service = serve_in_background(vpn, tmp_path / "serve.log", metrics)
    try:
        with (
            xray_client(link_of(vpn, "alice", server.name), tmp_path / "alice") as alice,
            xray_client(link_of(vpn, "bob", server.name), tmp_path / "bob") as bob,
        ):
            curl_via(alice, f"http://127.0.0.1:{backend}/")
            curl_via(bob, f"http://127.0.0.1:{backend}/")
            stream = Stream(alice, backend)  # 20 kB/s: crosses 150 kB in about 7 s
            try:
                wait_status(vpn, "alice", "over-quota", within=30)
                crossed = time.monotonic()
                while stream.ended is None and time.monotonic() < crossed + 5:
                    time.sleep(0.1)
                assert stream.ended is not None, "alice's open transfer survived her quota"
            finally:
                stream.close()
            assert curl_fails(alice, f"http://127.0.0.1:{backend}/")
            assert curl_via(bob, f"http://127.0.0.1:{backend}/", attempts_for=0) == (
                BACKEND_PAGE.decode()
            )
            # Raising the quota lets her back in (the running service re-enables her).
            vpn.ok("user", "update", "alice", "--quota", "100MB")
            wait_status(vpn, "alice", "active")
            assert curl_via(alice, f"http://127.0.0.1:{backend}/", attempts_for=10)
            # An expired user is refused; extending the expiry lets them in again.
            # (An expiry in the past is refused as input: give one two seconds ahead.)
            soon = datetime.now(UTC) + timedelta(seconds=2)
            vpn.ok("user", "update", "bob", "--expires", soon.isoformat(timespec="seconds"))
            wait_status(vpn, "bob", "expired")
            assert curl_fails(bob, f"http://127.0.0.1:{backend}/")
            vpn.ok("user", "update", "bob", "--expires", "30d")
            wait_status(vpn, "bob", "active")
            assert curl_via(bob, f"http://127.0.0.1:{backend}/", attempts_for=10)
        # The service's Prometheus metrics, on 127.0.0.1 only.
        scraped = subprocess.run(
            ["curl", "-sS", f"http://127.0.0.1:{metrics}/metrics"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        alice_bytes = downloaded(vpn, "alice")
        assert f'vpn_user_download_bytes_total{{user="alice"}} {alice_bytes}' in scraped
        assert f'vpn_server_up{{server="{server.name}"}} 1' in scraped
        assert 'vpn_users{status="active"} 2' in scraped
        assert "# TYPE vpn_server_download_bytes_total counter" in scraped
    finally:
        service.send_signal(signal.SIGTERM)
        try:
            service.wait(10)
        except subprocess.TimeoutExpired:
            service.kill()
            service.wait()
    log = (tmp_path / "serve.log").read_text()
    assert "alice is now over-quota" in log, log
    assert "Traceback" not in log


def engine_of(vpn: Vpn, server: str) -> str:
    status = vpn.json("server", "status", server)
    assert isinstance(status, dict)
    return str(status["engine"])


def serve_once(vpn: Vpn) -> dict[str, Any]:
    done = vpn.json("serve", "--once")
    assert isinstance(done, dict)
    return done


def device_case(vpn: Vpn, engine: str, reality_site: int) -> tuple[Server, Any]:
    """The server of a device-limit case and the client made from a printed link for it."""
    if engine == "xray":
        return install(vpn, reality_site), xray_client
    if engine == "xray-trojan-ws-tls":
        server = Server("tj", free_port())
        vpn.ok(
            *("server", "install", "trojan", "--name", server.name, "--port", str(server.port)),
            *("--transport", "ws", "--path", "/tj", "--security", "tls", "--sni", "vpn.test"),
            *("--listen", "127.0.0.1", "--host", "127.0.0.1", "--allow-private"),
        )
        assert engine_of(vpn, server.name) == "xray"
        return server, xray_client  # built from alice's printed trojan:// link (ws, its pin)
    if engine == "xray-hysteria2":
        server = install_singbox(vpn, "hysteria2", "hy")  # Xray's now
        assert engine_of(vpn, server.name) == "xray"
        return server, singbox_client  # from alice's printed hysteria2:// link
    return install_singbox(vpn, "mixed", "px"), singbox_client  # sing-box, on a TCP port


def cut_within(stream: Stream, seconds: float, quic: bool) -> bool:
    """Is the stream cut within `seconds`: ended, or on QUIC (whose client notices a dropped
    connection only when it idles out) no longer moving bytes, and staying so?"""
    deadline = time.monotonic() + seconds
    if quic:
        while stream.flowing(0.5) and time.monotonic() < deadline:
            pass
        return not stream.flowing(1.0)
    while stream.ended is None and time.monotonic() < deadline:
        time.sleep(0.1)
    return stream.ended is not None


@pytest.mark.parametrize("engine", ["xray", "xray-trojan-ws-tls", "xray-hysteria2", "sing-box"])
def test_a_device_over_the_limit_is_cut_and_kept_out(
    vpn: Vpn, reality_site: int, backend: int, tmp_path: Path, engine: str
) -> None:
    """alice may use one device. Her first device (127.0.0.2) keeps streaming; the second
    (127.0.0.3, connected later) is cut within one round of the service and kept off the
    server's port for the ban; bob, on the same server, is untouched. On Xray: VLESS+REALITY
    over raw TCP, Trojan over WebSocket with TLS, and Hysteria2 (QUIC: the second device's
    connection stops carrying bytes, its flow's packets dropped; its client notices only when
    the connection idles out, so its stream stalls rather than ends)."""
    from vpn_manager.engines import bans

    server, client = device_case(vpn, engine, reality_site)
    vpn.ok("user", "add", "alice", "--server", server.name, "--devices", "1")
    vpn.ok("user", "add", "bob", "--server", server.name)
    alice_link = link_of(vpn, "alice", server.name)
    url = f"http://127.0.0.1:{backend}/"
    try:
        with (
            client(alice_link, tmp_path / "phone", source="127.0.0.2") as phone,
            client(alice_link, tmp_path / "laptop", source="127.0.0.3") as laptop,
            client(link_of(vpn, "bob", server.name), tmp_path / "bob", source="127.0.0.4") as bob,
        ):
            curl_via(phone, url)  # also warms up a fresh REALITY server
            first = Stream(phone, backend)
            second = None
            try:
                assert first.flowing()
                curl_via(laptop, url, attempts_for=5)
                second = Stream(laptop, backend)
                assert second.flowing()
                done = serve_once(vpn)
                assert done["devices_cut"] == {"alice": ["127.0.0.3"]}, done
                assert cut_within(second, 5, quic=engine == "xray-hysteria2"), (
                    "the second device's open transfer survived"
                )
                assert first.flowing(), "the first device was cut too"
                assert curl_fails(laptop, url), "the second device got back in during its ban"
                assert curl_via(bob, url, attempts_for=0) == BACKEND_PAGE.decode()
                assert "127.0.0.3" in asyncio_run(bans.banned(server.port))
            finally:
                first.close()
                if second is not None:
                    second.close()
            # Raising the limit lifts the ban at the service's next round: the second device
            # gets in again long before the ban would have ended.
            vpn.ok("user", "update", "alice", "--devices", "2")
            assert serve_once(vpn)["devices_cut"] == {}
            assert "127.0.0.3" not in asyncio_run(bans.banned(server.port))
            # A QUIC client first waits out its dropped connection (idle timeout, 30 s).
            again = 60 if engine == "xray-hysteria2" else 10
            assert curl_via(laptop, url, attempts_for=again) == BACKEND_PAGE.decode()
            assert serve_once(vpn)["devices_cut"] == {}
    finally:
        asyncio_run(bans.unban_port(server.port))


def asyncio_run(work: Any) -> Any:
    import asyncio

    return asyncio.run(work)


def test_bytes_moved_before_a_reload_or_restart_are_counted(
    vpn: Vpn, backend: int, tmp_path: Path
) -> None:
    """A sing-box reload forgets its connection list and a restart zeroes every counter; the
    reading taken just before each is counted by the next poll."""
    # sing-box, on TCP: over QUIC (TUIC) the client may not notice the reload before its idle
    # timeout, and the fetch after it would wait for that.
    server = install_singbox(vpn, "mixed", "tj")
    vpn.ok("user", "add", "alice", "--server", server.name)
    with singbox_client(link_of(vpn, "alice", server.name), tmp_path / "alice") as socks:
        url = f"http://127.0.0.1:{backend}/bytes/"
        assert len(curl_via(socks, url + "200000", attempts_for=5)) == 200_000
        time.sleep(0.3)  # sing-box updates a connection's counters after it closes
        assert "reloaded" in vpn.ok("user", "add", "bob", "--server", server.name).stderr
        assert len(curl_via(socks, url + "100000", attempts_for=5)) == 100_000
        time.sleep(0.3)
        vpn.ok("server", "restart", server.name)
        done = vpn.json("serve", "--once")
        assert isinstance(done, dict)
    counted = downloaded(vpn, "alice")
    assert 300_000 <= counted <= 302_000, counted
    vpn.ok("serve", "--once")
    assert downloaded(vpn, "alice") == counted, "a spooled reading was counted twice"
