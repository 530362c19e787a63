"""sing-box servers end to end: real sing-box servers, real clients built only from the printed
links or configs (sing-box, Xray, and Debian's ss-local for Shadowsocks AEAD), curl, all on
127.0.0.1."""

from __future__ import annotations

import hashlib
import json
import sqlite3
import ssl
import subprocess
import time
from pathlib import Path

import pytest

from tests.e2e.conftest import (
    Server,
    Vpn,
    curl_fails,
    curl_via,
    install_singbox,
    link_of,
    singbox_client,
    ss_local,
    xray_running,
)
from tests.e2e.net import BACKEND_PAGE, Stream, free_port, tls13_site
from vpn_manager.links import TrojanLink, VmessLink, parse_link

PAGE = BACKEND_PAGE.decode()


@pytest.mark.parametrize("method", ["aes-256-gcm", "chacha20-ietf-poly1305"])
def test_ss_local_connects_with_the_printed_link(vpn: Vpn, backend: int, method: str) -> None:
    server = install_singbox(vpn, "shadowsocks", "ss", "--method", method)
    vpn.ok("user", "add", "alice", "--server", server.name)
    link = link_of(vpn, "alice", server.name)
    assert link.startswith("ss://")
    with ss_local(link) as socks:
        assert curl_via(socks, f"http://127.0.0.1:{backend}/", attempts_for=5) == PAGE


# New Trojan, VMess and Hysteria2 servers are Xray's: these cases are a sing-box client against
# them.
@pytest.mark.parametrize(
    "protocol",
    ["shadowsocks", "trojan", "hysteria2", "tuic", "vmess"],
)
def test_singbox_client_from_the_printed_link(
    vpn: Vpn, backend: int, tmp_path: Path, protocol: str
) -> None:
    server = install_singbox(vpn, protocol, protocol)
    vpn.ok("user", "add", "alice", "bob", "--server", server.name)
    link = link_of(vpn, "alice", server.name)
    with singbox_client(link, tmp_path / "alice") as socks:
        assert curl_via(socks, f"http://127.0.0.1:{backend}/", attempts_for=5) == PAGE
        body = curl_via(socks, f"http://127.0.0.1:{backend}/bytes/300000", attempts_for=5)
        assert len(body) == 300_000
    # The bytes are counted under alice (and nothing under bob, who moved none).
    deadline = time.monotonic() + 5
    usage: dict[str, dict[str, int]] = {}
    while time.monotonic() < deadline:
        rows = vpn.json("server", "usage", server.name)
        assert isinstance(rows, list)
        usage = {row["name"]: row for row in rows}
        if usage.get("alice", {}).get("download_bytes", 0) >= 300_000:
            break
        time.sleep(0.2)
    assert usage["alice"]["download_bytes"] >= 300_000, usage
    assert usage["alice"]["upload_bytes"] > 0
    assert usage.get("bob", {"download_bytes": 0})["download_bytes"] == 0


@pytest.mark.parametrize("protocol", ["trojan", "vmess"])
def test_xray_client_reaches_a_self_signed_raw_server_by_its_pin(
    vpn: Vpn, backend: int, tmp_path: Path, protocol: str
) -> None:
    """A Trojan/VMess server over raw TCP with its self-signed certificate (an Xray server now;
    a sing-box one installed earlier writes the same link): the printed link pins that
    certificate (pcs), and `vpn user config --client xray` gives an Xray client
    that trusts it by the pin (Xray 26 will not skip the check) and moves bytes through it."""
    server = install_singbox(vpn, protocol, protocol)
    vpn.ok("user", "add", "alice", "--server", server.name)
    # The certificate the server really presents, fetched here: its SHA-256 is the link's pin.
    pem = ssl.get_server_certificate(("127.0.0.1", server.port), timeout=5)
    pin = hashlib.sha256(ssl.PEM_cert_to_DER_cert(pem)).hexdigest()
    link = parse_link(link_of(vpn, "alice", server.name))
    assert isinstance(link, TrojanLink | VmessLink)
    assert link.transport.raw
    assert (link.insecure, link.pin_sha256) == (True, pin)
    socks = free_port()
    path = tmp_path / "xray.json"
    vpn.ok(
        "user",
        "config",
        "alice",
        "--server",
        server.name,
        "--client",
        "xray",
        "--socks-port",
        str(socks),
        "--file",
        str(path),
    )
    config = json.loads(path.read_text())
    tls = config["outbounds"][0]["streamSettings"]["tlsSettings"]
    assert tls == {"serverName": "vpn.test", "pinnedPeerCertSha256": pin}
    url = f"http://127.0.0.1:{backend}"
    with xray_running(config, path, socks):
        assert curl_via(socks, f"{url}/", attempts_for=5) == PAGE
        assert curl_via(socks, f"{url}/bytes/300000", attempts_for=5) == "x" * 300_000
    # The pin is checked: the same config with another certificate's pin gets nowhere.
    tls["pinnedPeerCertSha256"] = "0" * 64
    with xray_running(config, tmp_path / "wrong-pin.json", socks):
        assert curl_fails(socks, f"{url}/")


def test_shadowsocks_user_added_live_keeps_open_connections(
    vpn: Vpn, backend: int, tmp_path: Path
) -> None:
    server = install_singbox(vpn, "shadowsocks", "ss")
    vpn.ok("user", "add", "alice", "--server", server.name)
    status = vpn.json("server", "status", server.name)
    assert isinstance(status, dict)
    with singbox_client(link_of(vpn, "alice", server.name), tmp_path / "alice") as alice:
        curl_via(alice, f"http://127.0.0.1:{backend}/", attempts_for=5)
        stream = Stream(alice, backend)
        try:
            assert stream.flowing()
            added = vpn.ok("user", "add", "bob", "--server", server.name)
            assert "applied live" in added.stderr
            assert stream.flowing(), "adding bob disturbed alice's open connection"
            with singbox_client(link_of(vpn, "bob", server.name), tmp_path / "bob") as bob:
                assert curl_via(bob, f"http://127.0.0.1:{backend}/", attempts_for=5) == PAGE
            again = vpn.json("server", "status", server.name)
            assert isinstance(again, dict)
            assert again["pid"] == status["pid"]
            # Disabling alice cuts her open connection and refuses new ones.
            vpn.ok("user", "disable", "alice")
            deadline = time.monotonic() + 5
            while stream.ended is None and time.monotonic() < deadline:
                time.sleep(0.1)
            assert stream.ended is not None, "alice's open connection survived her disabling"
            assert curl_fails(alice, f"http://127.0.0.1:{backend}/")
        finally:
            stream.close()


def test_non_live_protocols_say_they_reloaded(vpn: Vpn, backend: int, tmp_path: Path) -> None:
    """A Hysteria2 server an older version installed on sing-box keeps running there (new ones
    are Xray's), its users changed by a reload, as before."""
    server = Server("tj", insert_old_singbox(vpn, "tj", "hysteria2"))
    vpn.ok("server", "start", server.name)
    vpn.ok("user", "add", "alice", "--server", server.name)
    added = vpn.ok("user", "add", "bob", "--server", server.name)
    assert "reloaded: open connections were reset" in added.stderr
    status = vpn.json("server", "status", server.name)
    assert isinstance(status, dict)
    assert (status["engine"], status["healthy"]) == ("sing-box", True)
    with singbox_client(link_of(vpn, "bob", server.name), tmp_path / "bob") as bob:
        assert curl_via(bob, f"http://127.0.0.1:{backend}/", attempts_for=5) == PAGE
    vpn.ok("user", "revoke", "bob", server.name)
    with singbox_client(link_of(vpn, "alice", server.name), tmp_path / "alice") as alice:
        assert curl_via(alice, f"http://127.0.0.1:{backend}/", attempts_for=5) == PAGE
    # An Xray client (its hysteria outbound) from the printed config reaches it too, trusting
    # the self-signed certificate by the link's pin.
    port = free_port()
    printed = vpn.ok(
        *("user", "config", "alice", "--server", server.name),
        *("--client", "xray", "--socks-port", str(port)),
    ).stdout
    with xray_running(json.loads(printed), tmp_path / "xray-alice.json", port):
        assert curl_via(port, f"http://127.0.0.1:{backend}/", attempts_for=10) == PAGE


def insert_old_singbox(vpn: Vpn, name: str, protocol: str = "trojan") -> int:
    """A Trojan (or Hysteria2) server row as versions before it moved to Xray wrote it: engine
    sing-box, its settings and secret made by the sing-box engine, desired stopped. Returns its
    port."""
    from vpn_manager.engines.singbox.engine import SingBoxEngine
    from vpn_manager.models.server import ServerCreate

    vpn.ok("server", "list")  # the database, migrated
    port = free_port()
    create = ServerCreate(
        name=name,
        protocol=protocol,
        port=port,
        listen="127.0.0.1",
        host="127.0.0.1",
        sni="vpn.test",
        allow_private=True,
    )
    keys_dir = vpn.home / "data" / "keys" / name
    keys_dir.mkdir(parents=True, mode=0o700)
    settings, secret = SingBoxEngine().new_server(create, free_port, keys_dir)
    now = "2026-01-01 00:00:00.000000"
    with sqlite3.connect(vpn.home / "data" / "vpn.db") as db:
        db.execute(
            "INSERT INTO servers (name, protocol, engine, runtime, listen, port, host, desired,"
            " settings, secret, created_at, updated_at)"
            " VALUES (?, ?, 'sing-box', 'native', '127.0.0.1', ?, '127.0.0.1', 'stopped',"
            " ?, ?, ?, ?)",
            (name, protocol, port, json.dumps(settings), json.dumps(secret), now, now),
        )
    return port


def test_a_trojan_server_installed_on_sing_box_stays_on_sing_box(
    vpn: Vpn, backend: int, tmp_path: Path
) -> None:
    """New Trojan servers are Xray's; one an older version installed on sing-box keeps running
    on sing-box (its users changed by a reload, as before) and says so."""
    insert_old_singbox(vpn, "old")
    vpn.ok("server", "start", "old")
    vpn.ok("user", "add", "alice", "--server", "old")
    added = vpn.ok("user", "add", "bob", "--server", "old")
    assert "reloaded: open connections were reset" in added.stderr
    config = json.loads((vpn.home / "state/rendered/old/config.json").read_text())
    assert [i["type"] for i in config["inbounds"]] == ["trojan"]  # a sing-box config
    status = vpn.json("server", "status", "old")
    assert isinstance(status, dict)
    assert (status["engine"], status["healthy"]) == ("sing-box", True)
    servers = vpn.json("server", "list")
    assert isinstance(servers, list)
    assert [(s["name"], s["engine"]) for s in servers] == [("old", "sing-box")]
    for user in ("alice", "bob"):
        with singbox_client(link_of(vpn, user, "old"), tmp_path / user) as socks:
            assert curl_via(socks, f"http://127.0.0.1:{backend}/", attempts_for=5) == PAGE
    # A new Trojan server beside it is Xray's.
    install_singbox(vpn, "trojan", "new")
    servers = vpn.json("server", "list")
    assert isinstance(servers, list)
    assert {s["name"]: s["engine"] for s in servers} == {"old": "sing-box", "new": "xray"}


def curl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["curl", "-sS", "--max-time", "8", *args], capture_output=True, text=True, check=False
    )


@pytest.mark.parametrize("kind", ["http", "mixed"])
def test_http_proxy_needs_the_users_password(
    vpn: Vpn, backend: int, tmp_path: Path, kind: str
) -> None:
    proxy = install_singbox(vpn, kind, "px")
    vpn.ok("user", "add", "alice")
    vpn.ok("user", "grant", "alice", proxy.name, "--password", "open sesame")
    link = link_of(vpn, "alice", proxy.name)
    assert link == f"http://alice:open%20sesame@127.0.0.1:{proxy.port}"
    url = f"http://127.0.0.1:{backend}/"
    assert curl("-x", link, url).stdout == PAGE
    assert len(curl("-x", link, f"http://127.0.0.1:{backend}/bytes/100000").stdout) == 100_000
    deadline = time.monotonic() + 5
    counted = 0
    while counted < 100_000 and time.monotonic() < deadline:
        rows = vpn.json("server", "usage", proxy.name)
        assert isinstance(rows, list)
        counted = sum(r["download_bytes"] for r in rows if r["name"] == "alice")
        time.sleep(0.2)
    assert counted >= 100_000, "the proxy's traffic is not counted under alice"
    with tls13_site(tmp_path, "site.test") as https:
        tunnelled = curl("-k", "--http1.1", "-x", link, f"https://127.0.0.1:{https}/")  # CONNECT
        assert tunnelled.returncode == 0, tunnelled.stderr
        assert "REALITY target" in tunnelled.stdout  # the local TLS site's page
    for wrong in (
        f"http://127.0.0.1:{proxy.port}",
        f"http://alice:wrong@127.0.0.1:{proxy.port}",
    ):
        refused = curl("-o", "/dev/null", "-w", "%{http_code}", "-x", wrong, url)
        assert refused.stdout == "407", (wrong, refused.stdout, refused.stderr)


@pytest.mark.parametrize("kind", ["socks5", "mixed"])
def test_socks5_proxy_needs_the_users_password(vpn: Vpn, backend: int, kind: str) -> None:
    proxy = install_singbox(vpn, kind, "px")
    vpn.ok("user", "add", "alice")
    vpn.ok("user", "grant", "alice", proxy.name, "--password", "s3cret")
    url = f"http://127.0.0.1:{backend}/"
    good = curl("--socks5-hostname", f"alice:s3cret@127.0.0.1:{proxy.port}", url)
    assert good.stdout == PAGE, good.stderr
    for creds in ("", "alice:wrong@"):
        refused = curl("--socks5-hostname", f"{creds}127.0.0.1:{proxy.port}", url)
        assert refused.returncode != 0
        assert refused.stdout == ""


def test_bad_input_changes_nothing(vpn: Vpn, tmp_path: Path) -> None:
    ss = install_singbox(vpn, "shadowsocks", "ss")
    px = install_singbox(vpn, "http", "px")
    vpn.ok("user", "add", "alice")
    before = vpn.json("server", "list")
    other = tmp_path / "other"
    other.mkdir()
    with tls13_site(other, "a.test"):
        pass
    cases = [
        (["server", "install", "shadowsocks", "--name", "x", "--port", "1", "--method", "rc4"], 3),
        (
            [
                "server",
                "install",
                "shadowsocks",
                "--name",
                "x",
                "--port",
                "1",
                "--method",
                "2022-blake3-aes-128-gcm",
                "--password",
                "c2hvcnQ=",
            ],
            3,
        ),
        (
            [
                "server",
                "install",
                "trojan",
                "--name",
                "x",
                "--port",
                "1",
                "--sni",
                "a.test",
                "--cert",
                str(tmp_path / "missing.crt"),
                "--key",
                str(tmp_path / "missing.key"),
            ],
            3,
        ),
        (
            [
                "server",
                "install",
                "trojan",
                "--name",
                "x",
                "--port",
                "1",
                "--sni",
                "a.test",
                "--cert",
                str(other / "cert.pem"),
                "--key",
                str(tmp_path / "home" / "x.key"),
            ],
            3,
        ),
        (["user", "grant", "alice", px.name, "--password", ""], 3),
        (["user", "grant", "alice", ss.name, "--password", "x"], 3),
    ]
    for args, code in cases:
        result = vpn(*args)
        assert result.code == code, (args, result.code, result.stderr)
        lines = result.stderr.strip().splitlines()
        assert lines[0].startswith("error:"), (args, lines)
        assert "Traceback" not in result.stderr
    assert vpn.json("server", "list") == before
    users = vpn.json("user", "list")
    assert isinstance(users, list)
    assert users[0]["servers"] == []
    assert json.dumps(users).count("alice") == 1
