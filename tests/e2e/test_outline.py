"""A Shadowsocks server for Outline's apps (`vpn server install shadowsocks --outline`, issue 17):
the Outline JSON that `vpn web` serves for it (an `ssconf://` dynamic access key's target) names
the server's AEAD cipher, and a shadowsocks-libev client given only that JSON moves bytes through
the real sing-box server. shadowsocks-libev has no 2022 ciphers, as Outline's apps have none."""

from __future__ import annotations

import json

from tests.e2e.conftest import Vpn, curl_via, install_singbox, ss_local
from tests.e2e.net import BACKEND_PAGE
from tests.e2e.test_web import fetch, subscription_of, web_server
from vpn_manager.links import ShadowsocksLink


def test_an_outline_server_carries_traffic_with_the_served_cipher(vpn: Vpn, backend: int) -> None:
    install_singbox(vpn, "shadowsocks", "ol", "--outline")
    vpn.ok("user", "add", "alice", "--server", "ol")
    with web_server(vpn) as port:
        served = fetch(f"{subscription_of(vpn, 'alice', port)}/outline/ol")
    assert served.status == 200
    outline = json.loads(served.body)
    assert outline["method"] == "chacha20-ietf-poly1305"
    link = ShadowsocksLink.model_validate(
        {
            "method": outline["method"],
            "password": outline["password"],
            "host": outline["server"],
            "port": outline["server_port"],
            "name": "alice",
        }
    ).to_uri()
    with ss_local(link) as socks:
        assert curl_via(socks, f"http://127.0.0.1:{backend}/") == BACKEND_PAGE.decode()
