"""Subscriptions: all of one user's servers in one document, in the format their app reads.

- `base64_list(datas)`: base64 of the share links, one a line (v2rayN/v2rayNG, Shadowrocket,
  Streisand, NekoBox, Hiddify). WireGuard peers are left out: their apps import the `.conf`.
- `singbox_profile(datas)`: a complete sing-box client (1.12 or newer): a TUN inbound that takes
  the whole device and a mixed (SOCKS/HTTP) inbound on loopback, one outbound per server (a
  WireGuard peer is an endpoint), `FASTEST` (urltest) picking the quickest and `CHOSEN`
  (selector, FASTEST by default) letting the user pick; private addresses go direct.
- `clash_profile(datas)`: Clash/Mihomo YAML with the same shape: `proxies`, a url-test and a
  select group, `rules`.
- `outline_config(data)`: the JSON behind an Outline dynamic access key (`ssconf://`); refused
  (`check_outline`) for a server with a Shadowsocks 2022 cipher, which Outline's apps lack.
- `userinfo(...)`: the `Subscription-Userinfo` header value apps show as usage and expiry.

A server the profile's client cannot reach is left out of that profile, never written broken:
sing-box has no XHTTP, Mihomo reads XHTTP only for VLESS (`reachable`); a profile none of whose
servers is left raises InvalidInput. The base64 list holds every link.

Each server appears under its link's label (USER@SERVER, or the `links.label` template, which
always names the server), so an app lists the user's servers apart, as in their share links. A
label that is a group's name or one of Clash's own gets a space added (`_names`).
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from typing import Any

import yaml

from vpn_manager.engines.linkdata import LinkData, check_outline
from vpn_manager.errors import InvalidInput
from vpn_manager.links import wireguard
from vpn_manager.links.formats import link_of
from vpn_manager.links.shadowsocks import ShadowsocksLink

FASTEST = "Fastest server"
CHOSEN = "Chosen server"
DIRECT = "No VPN"
PROBE_URL = "https://www.gstatic.com/generate_204"  # what url-test groups time
PROBE_SECONDS = 180
# Addresses that never go through the VPN: the device's own networks.
PRIVATE_NETS = (
    "10.0.0.0/8",
    "100.64.0.0/10",
    "127.0.0.0/8",
    "169.254.0.0/16",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "fc00::/7",
    "fe80::/10",
    "::1/128",
)
# Names Clash reserves for its built-in policies (in any case): a label so gets a suffix there.
_CLASH_RESERVED = {"DIRECT", "REJECT", "REJECT-DROP", "PASS", "COMPATIBLE", "GLOBAL"}
_GROUPS = {FASTEST, CHOSEN, DIRECT}
TUN_ADDRESSES = ("172.19.0.1/30", "fdfe:dcba:9876::1/126")


def base64_list(datas: Sequence[LinkData]) -> str:
    """The share links (every format but WireGuard's), one a line, as standard base64."""
    lines = [link_of(d).to_uri() for d in datas if d.format != "wireguard"]
    return base64.b64encode("\n".join(lines).encode()).decode()


def singbox_profile(
    datas: Sequence[LinkData], *, tun: bool = True, mixed_port: int = 2080
) -> dict[str, Any]:
    """A sing-box client config holding every server of `datas`, each under its server's name.
    `tun=False` leaves the TUN inbound out (the mixed proxy only, e.g. on a desktop)."""
    if not datas:
        raise ValueError("a profile needs at least one server")
    datas = reachable(datas, "sing-box")
    outbounds: list[dict[str, Any]] = []
    endpoints: list[dict[str, Any]] = []
    tags = _names(datas, _GROUPS)
    for data, tag in zip(datas, tags, strict=True):
        if data.format == "wireguard":
            endpoints.append(wireguard.singbox_endpoint(data, tag))
        else:
            outbounds.append({**link_of(data).singbox_outbound(), "tag": tag})
    inbounds: list[dict[str, Any]] = []
    if tun:
        inbounds.append(
            {
                "type": "tun",
                "tag": "tun-in",
                "address": list(TUN_ADDRESSES),
                "auto_route": True,
                "strict_route": True,
                "stack": "mixed",
            }
        )
    inbounds.append(
        {"type": "mixed", "tag": "mixed-in", "listen": "127.0.0.1", "listen_port": mixed_port}
    )
    profile: dict[str, Any] = {
        "log": {"level": "warn"},
        "dns": {
            "servers": [
                {"type": "tls", "tag": "remote", "server": "1.1.1.1", "detour": CHOSEN},
                {"type": "local", "tag": "local"},
            ],
            "final": "remote",
        },
        "inbounds": inbounds,
        "outbounds": [
            {"type": "selector", "tag": CHOSEN, "outbounds": [FASTEST, *tags], "default": FASTEST},
            {
                "type": "urltest",
                "tag": FASTEST,
                "outbounds": tags,
                "url": PROBE_URL,
                "interval": f"{PROBE_SECONDS}s",
            },
            *outbounds,
            {"type": "direct", "tag": DIRECT},
        ],
        "route": {
            "rules": [
                {"action": "sniff"},
                {"protocol": "dns", "action": "hijack-dns"},
                {"ip_is_private": True, "outbound": DIRECT},
            ],
            "final": CHOSEN,
            "auto_detect_interface": True,
            "default_domain_resolver": "local",
        },
    }
    if endpoints:
        profile["endpoints"] = endpoints
    return profile


def clash_profile(datas: Sequence[LinkData], *, mixed_port: int = 7890) -> str:
    """A Clash/Mihomo config (YAML) holding every server of `datas`."""
    if not datas:
        raise ValueError("a profile needs at least one server")
    datas = reachable(datas, "clash")
    proxies: list[dict[str, Any]] = []
    for data, name in zip(datas, _names(datas, _GROUPS | _CLASH_RESERVED), strict=True):
        if data.format == "wireguard":
            proxies.append(wireguard.clash_proxy(data, name))
        else:
            proxies.append(link_of(data).clash_proxy(name))
    names = [p["name"] for p in proxies]
    profile = {
        "mixed-port": mixed_port,
        "allow-lan": False,
        "mode": "rule",
        "log-level": "warning",
        "ipv6": True,
        "proxies": proxies,
        "proxy-groups": [
            {"name": CHOSEN, "type": "select", "proxies": [FASTEST, *names]},
            {
                "name": FASTEST,
                "type": "url-test",
                "proxies": names,
                "url": PROBE_URL,
                "interval": PROBE_SECONDS,
            },
        ],
        "rules": [
            *(
                f"{'IP-CIDR6' if ':' in net else 'IP-CIDR'},{net},DIRECT,no-resolve"
                for net in PRIVATE_NETS
            ),
            f"MATCH,{CHOSEN}",
        ],
    }
    text: str = yaml.safe_dump(profile, sort_keys=False, allow_unicode=True)
    return text


def reachable(datas: Sequence[LinkData], client: str) -> list[LinkData]:
    """The servers of `datas` that `client` ("sing-box" or "clash") can reach (see the module's
    text); InvalidInput, naming the first refusal, when there is none."""
    kept: list[LinkData] = []
    refusal: InvalidInput | None = None
    for data in datas:
        if data.format == "wireguard":
            kept.append(data)
            continue
        link = link_of(data)
        try:
            if client == "sing-box":
                link.singbox_outbound()
            else:
                link.clash_proxy(data.name)
        except InvalidInput as exc:
            refusal = refusal or exc
            continue
        kept.append(data)
    if not kept and refusal is not None:
        raise refusal
    return kept


def _names(datas: Sequence[LinkData], taken: set[str]) -> list[str]:
    """Each server's name in a profile: its link's label, with spaces added where it would be
    a group's name, a reserved one (compared in upper case) or one given before."""
    names: list[str] = []
    used = {name.upper() for name in taken}
    for data in datas:
        name = data.name
        while name.upper() in used:
            name += " "
        used.add(name.upper())
        names.append(name)
    return names


def outline_config(data: LinkData) -> dict[str, Any]:
    """The Outline client's JSON for a Shadowsocks server (a dynamic access key's target);
    Conflict for a 2022 cipher (`check_outline`)."""
    link = link_of(data)
    if not isinstance(link, ShadowsocksLink):
        raise ValueError(f"{data.server} is not a Shadowsocks server")
    check_outline(data)
    return link.outline_config()


def userinfo(upload: int, download: int, total: int | None, expire: int | None) -> str:
    """`Subscription-Userinfo`: bytes sent and received this period, the period's quota
    (0: none) and the expiry as a Unix time (0: never)."""
    return f"upload={upload}; download={download}; total={total or 0}; expire={expire or 0}"
