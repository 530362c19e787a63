"""The REST API of a real `vpn web` over a real home with a running server: a user added by the
API is applied live (their link carries bytes at once, the server is not restarted), and a user
disabled by the API is cut off."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from tests.e2e.conftest import Vpn, curl_fails, install_singbox, ss_local
from tests.e2e.net import free_port
from tests.e2e.test_web import connects, web_server


def call(port: int, key: str, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/api/v1{path}",
        data=json.dumps(body).encode() if body is not None else None,
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
        method=method,
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_a_user_added_by_the_api_is_applied_live(vpn: Vpn, backend: int, tmp_path: Path) -> None:
    install_singbox(vpn, "shadowsocks", "ss", "--method", "chacha20-ietf-poly1305")
    made = vpn.json("api-key", "create", "e2e", "--scope", "write")
    assert isinstance(made, dict)
    key = made["key"]
    api_port = free_port()
    vpn.env["VPN_API__PORT"] = str(api_port)
    before = vpn.json("server", "status", "ss")
    assert isinstance(before, dict)
    with web_server(vpn):
        status, added = call(api_port, key, "POST", "/users", {"name": "bob", "servers": ["ss"]})
        assert status == 201, added
        assert added["applied"] == ["ss: applied live."]
        status, links = call(api_port, key, "GET", "/users/bob/links")
        assert status == 200, links
        [link] = [entry["link"] for entry in links["links"]]
        assert link.startswith("ss://")
        assert connects(link, tmp_path / "bob", backend)

        status, disabled = call(api_port, key, "POST", "/users/bob/disable")
        assert status == 200, disabled
        assert disabled["applied"] == ["ss: applied live."]
        with ss_local(link) as socks:
            assert curl_fails(socks, f"http://127.0.0.1:{backend}/")
        status, audit = call(api_port, key, "GET", "/audit")
    after = vpn.json("server", "status", "ss")
    assert isinstance(after, dict)
    assert after["pid"] == before["pid"]  # live: never restarted
    assert [(e["action"], e["target"], e["result"]) for e in reversed(audit)][-2:] == [
        ("user.add", "bob", "ok"),
        ("user.disable", "bob", "ok"),
    ]
