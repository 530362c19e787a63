"""Subscription documents (vpn_manager.links.profiles): every server of a user in one base64
list, sing-box profile or Clash/Mihomo profile; Outline's dynamic key JSON; the usage header."""

from __future__ import annotations

import base64
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.test_delivery_share import PIN, PSK16, UPSK16, UUID, singbox_check
from vpn_manager.engines.linkdata import Credential, LinkData, Reality, Tls, Tunnel
from vpn_manager.errors import Conflict
from vpn_manager.labels import link_label
from vpn_manager.links import link_of, parse_link, share_link
from vpn_manager.links.profiles import (
    CHOSEN,
    FASTEST,
    base64_list,
    clash_profile,
    outline_config,
    singbox_profile,
    userinfo,
)

HOST = "vpn.example.com"
PUBLIC_KEY = "Y3qk2l1Kq3wBqGd7VnM0dyJxXkS8lHc8kQmX0c0p3Wg"
WG_KEY = "yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk="
WG_PUB = "xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg="
TLS = Tls(server_name=HOST, insecure=True, cert_sha256=PIN)


def data(format: Any, server: str, port: int, **parts: Any) -> LinkData:
    """alice's way into `server`, labelled as the service labels it (vpn_manager.labels)."""
    name = link_label("alice", server)
    return LinkData(format=format, server=server, name=name, host=HOST, port=port, **parts)


SERVERS = [
    data(
        "vless",
        "reality",
        443,
        credential=Credential(uuid=UUID),
        reality=Reality(server_name="www.example.org", public_key=PUBLIC_KEY, short_id="a1b2"),
    ),
    data(
        "shadowsocks",
        "ss",
        8388,
        credential=Credential(method="2022-blake3-aes-128-gcm", password=f"{PSK16}:{UPSK16}"),
    ),
    data("trojan", "trojan", 8443, credential=Credential(password="tR0jan-Pass_word1"), tls=TLS),
    data("hysteria2", "hy2", 8444, credential=Credential(password="Hy2-Pass_word1"), tls=TLS),
    data("tuic", "tuic", 8445, credential=Credential(uuid=UUID, password="Tuic-Pass1"), tls=TLS),
    data("vmess", "vmess", 8446, credential=Credential(uuid=UUID), tls=TLS),
    data("http", "http", 3128, credential=Credential(username="alice", password="Http-Pass1")),
    data("socks5", "socks", 1080, credential=Credential(username="alice", password="Socks-P1")),
    data(
        "wireguard",
        "wg",
        51820,
        tunnel=Tunnel(
            private_key=WG_KEY,
            addresses=("10.13.13.2/32", "fd13::2/128"),
            dns="10.13.13.1",
            mtu=1420,
            server_public_key=WG_PUB,
            preshared_key=WG_KEY,
            allowed_ips="0.0.0.0/0, ::/0",
            keepalive=25,
        ),
    ),
]


def test_the_base64_list_holds_every_link_but_wireguard() -> None:
    lines = base64.b64decode(base64_list(SERVERS)).decode().split("\n")
    expected = [share_link(d) for d in SERVERS if d.format != "wireguard"]
    assert lines == expected
    for line in lines:
        parse_link(line)  # each one reads back


@pytest.mark.parametrize("tun", [True, False])
def test_the_singbox_profile_passes_singbox_check(tun: bool, tmp_path: Path) -> None:
    """The sing-box of these machines is built without uTLS, which a REALITY client needs: the
    profile it checks leaves the REALITY server out (its outbound is checked below)."""
    servers = [d for d in SERVERS if d.format != "vless"]
    profile = singbox_profile(servers, tun=tun)
    singbox_check(profile, tmp_path)
    names = [d.name for d in servers]
    assert names[0] == "alice@ss"
    tags = [o["tag"] for o in profile["outbounds"]] + [e["tag"] for e in profile["endpoints"]]
    assert set(names) <= set(tags)
    chosen = next(o for o in profile["outbounds"] if o["tag"] == CHOSEN)
    assert chosen["outbounds"] == [FASTEST, *names]
    assert profile["route"]["final"] == CHOSEN
    assert [i["type"] for i in profile["inbounds"]] == (["tun", "mixed"] if tun else ["mixed"])


def test_the_reality_server_is_its_link_outbound_under_its_name() -> None:
    profile = singbox_profile(SERVERS)
    reality = next(o for o in profile["outbounds"] if o["tag"] == "alice@reality")
    assert reality == {**link_of(SERVERS[0]).singbox_outbound(), "tag": "alice@reality"}
    assert reality["tls"]["reality"]["public_key"] == PUBLIC_KEY


# What Mihomo's documented config (docs/config.yaml of MetaCubeX/mihomo) says of each proxy
# type we write: the keys it must have, and every key it may have with the value's type.
COMMON = {"name": str, "type": str, "server": str, "port": int, "udp": bool}
TLS_KEYS = {"sni": str, "skip-cert-verify": bool, "fingerprint": str, "alpn": list}
CLASH_SCHEMA: dict[str, tuple[set[str], dict[str, type]]] = {
    "vless": (
        {"uuid", "servername", "reality-opts", "client-fingerprint", "tls"},
        {
            **COMMON,
            "uuid": str,
            "network": str,
            "tls": bool,
            "flow": str,
            "servername": str,
            "reality-opts": dict,
            "client-fingerprint": str,
        },
    ),
    "ss": ({"cipher", "password"}, {**COMMON, "cipher": str, "password": str}),
    "trojan": ({"password", "sni"}, {**COMMON, **TLS_KEYS, "password": str}),
    "hysteria2": ({"password", "sni"}, {**COMMON, **TLS_KEYS, "password": str}),
    "tuic": (
        {"uuid", "password"},
        {
            **COMMON,
            **TLS_KEYS,
            "uuid": str,
            "password": str,
            "congestion-controller": str,
            "udp-relay-mode": str,
        },
    ),
    "vmess": (
        {"uuid", "alterId", "cipher"},
        {
            **COMMON,
            "uuid": str,
            "alterId": int,
            "cipher": str,
            "network": str,
            "tls": bool,
            "servername": str,
            "skip-cert-verify": bool,
        },
    ),
    "http": ({"username", "password"}, {**COMMON, "username": str, "password": str}),
    "socks5": ({"username", "password"}, {**COMMON, "username": str, "password": str}),
    "wireguard": (
        {"private-key", "public-key", "ip"},
        {
            **COMMON,
            "ip": str,
            "ipv6": str,
            "private-key": str,
            "public-key": str,
            "pre-shared-key": str,
            "allowed-ips": list,
            "mtu": int,
            "persistent-keepalive": int,
        },
    ),
}


def test_the_clash_profile_matches_mihomos_documented_fields() -> None:
    profile = yaml.safe_load(clash_profile(SERVERS))
    proxies = profile["proxies"]
    assert [p["name"] for p in proxies] == [d.name for d in SERVERS]
    for proxy in proxies:
        required, allowed = CLASH_SCHEMA[proxy["type"]]
        assert required | {"name", "type", "server", "port"} <= proxy.keys(), proxy["name"]
        for key, value in proxy.items():
            assert key in allowed, f"{proxy['name']}: {key} is not a {proxy['type']} field"
            assert isinstance(value, allowed[key]), f"{proxy['name']}: {key}={value!r}"
    reality = next(p for p in proxies if p["type"] == "vless")["reality-opts"]
    assert reality == {"public-key": PUBLIC_KEY, "short-id": "a1b2"}
    groups = {g["name"]: g for g in profile["proxy-groups"]}
    names = [p["name"] for p in proxies]
    assert groups[CHOSEN]["proxies"] == [FASTEST, *names]
    assert groups[FASTEST]["type"] == "url-test"
    assert groups[FASTEST]["proxies"] == names
    assert profile["rules"][-1] == f"MATCH,{CHOSEN}"
    assert all(rule.split(",")[-1] in {"DIRECT", "no-resolve", CHOSEN} for rule in profile["rules"])


def test_a_label_named_like_a_clash_policy_or_a_group_is_renamed_there() -> None:
    """With links.label = "{server}", a server's label can be a name Clash keeps for itself
    (in any case), or a group's; labels alike are told apart too."""
    credential = Credential(username="a", password="b")
    labelled = [
        replace(data("http", server, 3128, credential=credential), name=server)
        for server in ("direct", FASTEST, "edge", "edge")
    ]
    names = [p["name"] for p in yaml.safe_load(clash_profile(labelled))["proxies"]]
    assert names == ["direct ", f"{FASTEST} ", "edge", "edge "]
    tags = [o["tag"] for o in singbox_profile(labelled)["outbounds"]]
    assert tags[2:-1] == ["direct", f"{FASTEST} ", "edge", "edge "]


AEAD_SS = replace(
    SERVERS[1], credential=Credential(method="chacha20-ietf-poly1305", password="Ss-Pass_word1")
)


def test_outline_config_is_the_shadowsocks_server() -> None:
    assert outline_config(AEAD_SS) == {
        "server": HOST,
        "server_port": 8388,
        "password": "Ss-Pass_word1",
        "method": "chacha20-ietf-poly1305",
    }
    with pytest.raises(ValueError, match="not a Shadowsocks server"):
        outline_config(SERVERS[2])


@pytest.mark.parametrize("method", ["2022-blake3-aes-128-gcm", "2022-blake3-aes-256-gcm"])
def test_outline_config_is_refused_for_a_2022_cipher(method: str) -> None:
    """Outline's apps have no 2022 cipher: a key they cannot use is refused, naming the way out."""
    size = 16 if "128" in method else 32
    key = base64.b64encode(bytes(size)).decode()
    ss = replace(SERVERS[1], credential=Credential(method=method, password=f"{key}:{key}"))
    with pytest.raises(Conflict) as refused:
        outline_config(ss)
    assert refused.value.message.startswith(f"ss uses {method}, a Shadowsocks 2022 cipher")
    assert "`vpn server install shadowsocks --outline`" in refused.value.message
    assert "`vpn server set ss --method chacha20-ietf-poly1305`" in refused.value.message


def test_userinfo_header() -> None:
    assert userinfo(10, 20, 1000, 1767225600) == (
        "upload=10; download=20; total=1000; expire=1767225600"
    )
    assert userinfo(0, 0, None, None) == "upload=0; download=0; total=0; expire=0"


def test_a_profile_needs_a_server() -> None:
    with pytest.raises(ValueError, match="at least one server"):
        singbox_profile([])
    with pytest.raises(ValueError, match="at least one server"):
        clash_profile([])
