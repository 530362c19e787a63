"""A real Xray client for the vless, trojan and vmess servers of any transport, built from what
the tool stores and shows: `vpn --format json server list` (the server's transport, path, gRPC
service name, Host header, XHTTP mode, REALITY keys or certificate pin) and the user's
credential in the home's database. Independent of the links package: it checks the server the
engine renders, not the link writer's reading of it."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tests.e2e.conftest import Vpn, _wait_for_port
from tests.e2e.net import end_process, free_port


def stored(vpn: Vpn, server: str) -> dict[str, Any]:
    shown = vpn.json("server", "list")
    assert isinstance(shown, list)
    (found,) = [s for s in shown if s["name"] == server]
    return dict(found)


def credential(vpn: Vpn, user: str, server: str) -> dict[str, Any]:
    with sqlite3.connect(vpn.home / "data" / "vpn.db") as db:
        (secret,) = db.execute(
            "SELECT c.secret FROM user_credentials AS c JOIN users AS u ON u.id = c.user_id"
            " JOIN servers AS s ON s.id = c.server_id WHERE u.name = ? AND s.name = ?",
            (user, server),
        ).fetchone()
    return dict(json.loads(secret))


def outbound(vpn: Vpn, user: str, server: str) -> dict[str, Any]:
    """The Xray client outbound of `user` on `server`."""
    found = stored(vpn, server)
    settings, secret = found["settings"], credential(vpn, user, server)
    protocol = "vless" if found["protocol"] == "vless-reality" else found["protocol"]
    network = settings.get("network", "raw")
    address = {"address": found["host"], "port": found["port"]}
    if protocol == "trojan":
        proxy: dict[str, Any] = {"servers": [{**address, "password": secret["password"]}]}
    elif protocol == "vmess":
        proxy = {"vnext": [{**address, "users": [{"id": secret["uuid"], "security": "auto"}]}]}
    else:
        flow = "xtls-rprx-vision" if network == "raw" else ""
        user_entry = {"id": secret["uuid"], "encryption": "none", "flow": flow}
        proxy = {"vnext": [{**address, "users": [user_entry]}]}
    stream: dict[str, Any] = {"network": network}
    if settings.get("security", "reality") == "reality":
        stream["security"] = "reality"
        stream["realitySettings"] = {
            "serverName": settings["sni"],
            "publicKey": settings["public_key"],
            "shortId": settings["short_ids"][0],
            "fingerprint": "chrome",
        }
    else:
        tls = settings["tls"]
        stream["security"] = "tls"
        stream["tlsSettings"] = {
            "serverName": tls["server_name"],
            "pinnedPeerCertSha256": tls["cert_sha256"],
        }
    host = {"host": settings["host_header"]} if settings.get("host_header") else {}
    if network in ("ws", "httpupgrade"):
        stream[f"{network}Settings"] = {"path": settings["path"], **host}
    elif network == "xhttp":
        mode = settings.get("xhttp_mode") or "auto"
        stream["xhttpSettings"] = {"path": settings["path"], **host, "mode": mode}
    elif network == "grpc":
        stream["grpcSettings"] = {"serviceName": settings["service_name"]}
    return {"protocol": protocol, "settings": proxy, "streamSettings": stream, "tag": "proxy"}


@contextmanager
def stream_client(proxy: dict[str, Any], workdir: Path) -> Iterator[int]:
    """A real Xray client with this outbound; yields its local SOCKS port."""
    socks = free_port()
    config = {
        "log": {"loglevel": "warning"},
        "inbounds": [
            {"listen": "127.0.0.1", "port": socks, "protocol": "socks", "settings": {"udp": False}}
        ],
        "outbounds": [proxy],
    }
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / f"client-{socks}.json"
    path.write_text(json.dumps(config))
    process = subprocess.Popen(
        [sys.executable, "-m", "vpn_manager.engines.xray.child", str(path)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_for_port(socks, process)
        yield socks
    finally:
        end_process(process)
