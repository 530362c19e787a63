"""The typed way in: each engine describes a user's link (`Engine.link_data`), and the links
package writes it: `share_link` gives the same text as the link models the tests of
test_delivery.py and test_delivery_share.py check against their golden files, and
`client_config` the config `vpn user config` prints (or refuses)."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import pytest

from tests.test_delivery import EXAMPLE as VLESS_EXAMPLE
from tests.test_delivery_share import EXAMPLES, HOST, PIN, PSK16, UPSK16, UUID
from vpn_manager.engines.linkdata import LinkData
from vpn_manager.engines.registry import engine_for
from vpn_manager.errors import InvalidInput
from vpn_manager.links import (
    Hysteria2Link,
    TrojanLink,
    VlessRealityLink,
    client_config,
    link_of,
    parse_link,
    share_link,
    singbox_client_config,
    trust_note,
    xray_client_config,
)
from vpn_manager.specs import Client, ServerSpec

FILES = {"cert_file": "/keys/cert.pem", "key_file": "/keys/key.pem"}
SELF_SIGNED = {"server_name": HOST, "self_signed": True, "cert_sha256": PIN, **FILES}
SIGNED = {"server_name": HOST, "cert_sha256": PIN, **FILES}
# protocol -> (server settings, server secret, the user's secret, port, the example it must give)
SERVERS: dict[str, tuple[dict[str, Any], dict[str, Any], dict[str, Any], int, str]] = {
    "ss-aead": (
        {"method": "chacha20-ietf-poly1305"},
        {},
        {"password": "Gs8V1kq2-Hc_x9ZtYb0LrA3N"},
        8388,
        "shadowsocks",
    ),
    "ss-2022": (
        {"method": "2022-blake3-aes-128-gcm"},
        {"psk": PSK16},
        {"password": UPSK16},
        8388,
        "shadowsocks",
    ),
    "trojan": ({"tls": SELF_SIGNED}, {}, {"password": "tR0jan-Pass_word1"}, 443, "trojan"),
    "hysteria2": ({"tls": SELF_SIGNED}, {}, {"password": "Hy2-Pass_word1"}, 443, "hysteria2"),
    "tuic": ({"tls": SIGNED}, {}, {"uuid": UUID, "password": "Tuic-Pass_word1"}, 443, "tuic"),
    "vmess": ({"tls": SIGNED}, {}, {"uuid": UUID}, 443, "vmess"),
    "http": ({}, {}, {"password": "Http-Pass_word1"}, 3128, "mixed"),
    "socks5": ({}, {}, {"password": "Socks-Pass_word1"}, 1080, "socks5"),
}


def data_of(kind: str) -> LinkData:
    settings, server_secret, secret, port, protocol = SERVERS[kind]
    # What every sing-box server also has: its api service.
    settings = {"api_port": 10085, **settings}
    server_secret = {"api_secret": "api-token", **server_secret}
    spec = ServerSpec("edge", protocol, "0.0.0.0", port, HOST, settings, server_secret)
    # These are sing-box servers (Trojan, VMess and Hysteria2 as earlier versions installed them).
    return engine_for("sing-box").link_data(spec, Client(7, "alice", secret))


def vless_data() -> LinkData:
    settings = {
        "sni": VLESS_EXAMPLE.sni,
        "public_key": VLESS_EXAMPLE.public_key,
        "short_ids": [VLESS_EXAMPLE.short_id, "ab"],
        "dest": f"{VLESS_EXAMPLE.sni}:443",
        "api_port": 10085,
    }
    spec = ServerSpec("edge", "vless-reality", "0.0.0.0", 443, VLESS_EXAMPLE.host, settings, {})
    return engine_for("xray").link_data(spec, Client(7, "alice", {"uuid": UUID}))


@pytest.mark.parametrize("kind", sorted(SERVERS))
def test_an_engines_description_gives_the_golden_link(kind: str) -> None:
    data = data_of(kind)
    assert share_link(data) == EXAMPLES[kind].to_uri()
    assert parse_link(share_link(data)).to_uri() == share_link(data)


def test_the_xray_description_gives_the_vless_link() -> None:
    # The example has a spider path the engine does not set; everything else is the same.
    expected = VLESS_EXAMPLE.model_copy(update={"spider_x": None})
    assert link_of(vless_data()) == expected
    assert share_link(vless_data()) == expected.to_uri()


def test_client_config_is_the_configs_of_the_link() -> None:
    data = vless_data()
    link = link_of(data)
    assert isinstance(link, VlessRealityLink)
    assert json.loads(client_config(data, "xray", 2080)) == xray_client_config(link, 2080)
    assert json.loads(client_config(data, "sing-box", 2080)) == singbox_client_config(link, 2080)
    trojan = data_of("trojan")
    assert json.loads(client_config(trojan, "sing-box")) == singbox_client_config(
        link_of(trojan), 1080
    )
    assert client_config(data).endswith("}\n")


def test_client_config_refuses_what_it_cannot_give() -> None:
    with pytest.raises(InvalidInput, match="Unknown client 'curl'") as caught:
        client_config(vless_data(), "curl")
    assert caught.value.hint == "Use --client xray or --client sing-box."
    with pytest.raises(InvalidInput, match="A proxy needs no client program") as caught:
        client_config(data_of("http"), "sing-box")
    assert caught.value.hint == (
        "Use the link as the proxy address: vpn user link USER --server edge"
    )
    with pytest.raises(
        InvalidInput,
        match="--client xray is offered for VLESS, VMess, Trojan and Hysteria2 servers; edge is "
        "tuic",
    ):
        client_config(data_of("tuic"), "xray")
    # A Trojan link made elsewhere for a self-signed server, with no pin: Xray cannot skip the
    # certificate check, so there is no Xray config for it.
    unpinned = TrojanLink.parse(share_link(data_of("trojan")).replace(f"&pcs={PIN}", ""))
    assert unpinned.insecure
    with pytest.raises(InvalidInput, match="self-signed certificate and its link carries no pin"):
        unpinned.xray_outbound()


def test_a_wireguard_config_is_its_conf_for_any_client() -> None:
    from tests.test_wireguard_config import spec

    server = spec()
    engine = engine_for("wireguard-go")
    data = engine.link_data(server, Client(3, "alice", engine.new_credential(server)))
    conf = share_link(data)
    assert conf.startswith("[Interface]\nPrivateKey = ")
    assert client_config(data, "xray") == client_config(data, "sing-box") == conf


def test_a_self_signed_trojan_server_gets_a_pinned_xray_config() -> None:
    """Raw TCP Trojan on sing-box with a self-signed certificate: the link pins it (pcs) and
    the Xray config trusts the certificate by that pin, never by skipping the check."""
    data = data_of("trojan")
    assert f"&allowInsecure=1&pcs={PIN}#" in share_link(data)
    link = link_of(data)
    assert isinstance(link, TrojanLink)
    xray = json.loads(client_config(data, "xray", 2080))
    assert xray == xray_client_config(link, 2080)
    tls = xray["outbounds"][0]["streamSettings"]["tlsSettings"]
    assert tls == {"serverName": HOST, "pinnedPeerCertSha256": PIN}


def test_a_self_signed_hysteria2_server_gets_a_pinned_xray_config() -> None:
    """Xray 26's hysteria outbound: the password as the transport's auth, TLS with h3, the
    self-signed certificate trusted by the link's pinSHA256 (proven against Xray's and sing-box's
    servers in tests/e2e)."""
    data = data_of("hysteria2")
    link = link_of(data)
    assert isinstance(link, Hysteria2Link)
    xray = json.loads(client_config(data, "xray", 2080))
    assert xray == xray_client_config(link, 2080)
    assert xray["outbounds"][0] == {
        "tag": "proxy",
        "protocol": "hysteria",
        "settings": {"version": 2, "address": HOST, "port": 443},
        "streamSettings": {
            "network": "hysteria",
            "security": "tls",
            "tlsSettings": {"serverName": HOST, "pinnedPeerCertSha256": PIN, "alpn": ["h3"]},
            "hysteriaSettings": {"version": 2, "auth": "Hy2-Pass_word1"},
        },
    }


def test_the_trust_note_follows_the_certificate() -> None:
    assert "pins it (pinSHA256)" in trust_note(data_of("hysteria2"))
    assert "pins it (pcs)" in trust_note(data_of("trojan"))
    # TUIC links cannot pin: a self-signed TUIC server's link only says insecure.
    tuic = data_of("tuic")
    assert tuic.tls is not None
    self_signed_tuic = replace(tuic, tls=replace(tuic.tls, insecure=True))
    assert "cannot pin it" in trust_note(self_signed_tuic)
    assert trust_note(data_of("tuic")) == trust_note(vless_data()) == ""
