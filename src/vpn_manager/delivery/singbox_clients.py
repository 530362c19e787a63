"""Ready-to-run sing-box client configs for the share links of `share`, built from a link alone.

`singbox_client_config(link, socks_port)` gives a sing-box 1.14 config (a plain dict for
`json.dumps`; run it with `sing-box run -c FILE`): a `mixed` inbound (HTTP and SOCKS4/5 on one
port) on listen:socks_port, ONE outbound tagged "proxy" made of the link's fields, and
`route.final` pointing at it. No DNS section: a server given by name is resolved by the system.
A `VlessRealityLink` gets `clients.singbox_client_config`'s config (REALITY and uTLS, which the
sing-box build of our tests lacks).

What each outbound takes from its link (checked with sing-box 1.14.4 on loopback):
- shadowsocks: `method` and `password`; for a multi-user 2022 server the password is the whole
  `SERVER_PSK:USER_PSK`.
- trojan, vmess (with TLS): `tls.server_name` = sni and `tls.insecure` as the link says; vmess
  is `security: auto` with `alter_id: 0`.
- hysteria2: `password`, `tls.server_name`, `tls.insecure`. The link's `pinSHA256` is NOT in the
  config: it is the SHA-256 of the whole certificate, and sing-box 1.14 pins only public keys
  (`tls.certificate_public_key_sha256`: base64 SHA-256 of the SubjectPublicKeyInfo, checked
  here: that one connects, the certificate's hash in hex or base64 is refused with "unrecognized
  remote public key"), which cannot be derived from the link. So the config trusts what
  `insecure` says, as the sing-box based apps (Hiddify, NekoBox) do with such links: a pinned
  link with insecure=1 (a self-signed server) gives a client that accepts any certificate.
- tuic: `uuid`, `password`, `congestion_control`, `udp_relay_mode`, and `tls.alpn` from the
  link's alpn (h3).
- http, socks5: `username` and `password` (`version: "5"` for SOCKS).
"""

from __future__ import annotations

from typing import Any, assert_never

from vpn_manager.delivery import clients
from vpn_manager.delivery.clients import _check_local
from vpn_manager.delivery.share import (
    AnyLink,
    Hysteria2Link,
    ProxyLink,
    ShadowsocksLink,
    ShareLink,
    TrojanLink,
    TuicLink,
    VmessLink,
)

OUTBOUND_TAG = "proxy"
INBOUND_TAG = "mixed-in"


def singbox_client_config(
    link: AnyLink, socks_port: int, listen: str = "127.0.0.1"
) -> dict[str, Any]:
    """A sing-box client: a SOCKS/HTTP proxy on listen:socks_port through the link's server."""
    if not isinstance(link, ShareLink):
        return clients.singbox_client_config(link, socks_port, listen)
    _check_local(socks_port, listen)
    return {
        "inbounds": [
            {"type": "mixed", "tag": INBOUND_TAG, "listen": listen, "listen_port": socks_port}
        ],
        "outbounds": [singbox_outbound(link)],
        "route": {"final": OUTBOUND_TAG},
    }


def singbox_outbound(link: ShareLink) -> dict[str, Any]:
    """The one outbound (tag "proxy") that reaches the link's server."""
    server = {"tag": OUTBOUND_TAG, "server": link.host, "server_port": link.port}
    match link:
        case ShadowsocksLink():
            return {
                "type": "shadowsocks",
                **server,
                "method": link.method,
                "password": link.password,
            }
        case TrojanLink():
            return {"type": "trojan", **server, "password": link.password, "tls": _tls(link)}
        case Hysteria2Link():  # pin_sha256 cannot be used: see the module docstring
            return {"type": "hysteria2", **server, "password": link.password, "tls": _tls(link)}
        case TuicLink():
            return {
                "type": "tuic",
                **server,
                "uuid": link.uuid,
                "password": link.password,
                "congestion_control": link.congestion_control,
                "udp_relay_mode": link.udp_relay_mode,
                "tls": {**_tls(link), "alpn": link.alpn.split(",")},
            }
        case VmessLink():
            outbound = {
                "type": "vmess",
                **server,
                "uuid": link.uuid,
                "security": "auto",
                "alter_id": 0,
            }
            if link.tls:
                outbound["tls"] = _tls(link)
            return outbound
        case ProxyLink():
            proxy: dict[str, Any] = {"type": "http" if link.scheme == "http" else "socks", **server}
            if link.scheme == "socks5":
                proxy["version"] = "5"
            return {**proxy, "username": link.username, "password": link.password}
        case _:
            assert_never(link)


def _tls(link: TrojanLink | Hysteria2Link | TuicLink | VmessLink) -> dict[str, Any]:
    return {"enabled": True, "server_name": link.sni, "insecure": link.insecure}
