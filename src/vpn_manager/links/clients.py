"""Ready-to-run client configs: a local proxy port that sends everything through one user's
server. Write one to a file and run `xray run -c FILE` or `sing-box run -c FILE`.

- `client_config(data, client)`: the entry point for front ends (and a subscription server):
  from an engine's `LinkData`, the text a user saves: JSON for Xray or sing-box, or a
  WireGuard peer's `.conf` (whatever `client` says: it is the WireGuard app's config).
- `xray_client_config(link, port)`: Xray 26 and older (Hysteria2: Xray 26), for a VLESS, VMess or
  Trojan link (any transport, TLS or REALITY) or a Hysteria2 one: a SOCKS5 inbound with UDP and
  the link's one outbound (each format's `xray_outbound()`). No `freedom` or routing section:
  everything goes to the first (only) outbound. Xray cannot skip a certificate check: a
  self-signed server's link must carry its pin (`pcs`, Hysteria2's `pinSHA256`), else the config
  is refused with a sentence.
- `singbox_client_config(link, port)`: sing-box 1.12 or newer (checked with 1.14.4 on loopback),
  for any link: a `mixed` inbound (SOCKS4/5 and HTTP on one port), ONE outbound tagged "proxy"
  made of the link's fields (each format's `singbox_outbound()`), and `route.final` pointing at
  it (the VLESS config has no route: its only outbound is the default anyway). No DNS section: a
  server given by name is resolved by the system. sing-box has no XHTTP: such a link is refused
  with a sentence (InvalidInput), never written as a config that cannot connect.
"""

from __future__ import annotations

import ipaddress
import json
from typing import Any

from vpn_manager.engines.linkdata import LinkData
from vpn_manager.errors import InvalidInput
from vpn_manager.links import wireguard
from vpn_manager.links.fields import OUTBOUND_TAG
from vpn_manager.links.formats import AnyLink, link_of
from vpn_manager.links.hysteria2 import Hysteria2Link
from vpn_manager.links.proxy import ProxyLink
from vpn_manager.links.trojan import TrojanLink
from vpn_manager.links.vless import VlessLink
from vpn_manager.links.vmess import VmessLink

# The formats with an Xray client outbound.
XrayLink = VlessLink | TrojanLink | VmessLink | Hysteria2Link

CLIENTS = ("xray", "sing-box")
INBOUND_TAG = "mixed-in"


def check_client(client: str) -> None:
    if client not in CLIENTS:
        raise InvalidInput(
            f"Unknown client {client!r}.", hint="Use --client xray or --client sing-box."
        )


def client_config(
    data: LinkData, client: str = "xray", socks_port: int = 1080, listen: str = "127.0.0.1"
) -> str:
    """The config a user runs `client` with to reach the server of `data`, as text."""
    check_client(client)
    if data.format == "wireguard":
        return wireguard.client_conf(data)  # the client .conf is the config
    link = link_of(data)
    if isinstance(link, ProxyLink):
        raise InvalidInput(
            "A proxy needs no client program: use the link as the proxy address.",
            hint=f"Use the link as the proxy address: vpn user link USER --server {data.server}",
        )
    if client == "xray":
        if not isinstance(link, XrayLink):
            raise InvalidInput(
                f"--client xray is offered for VLESS, VMess, Trojan and Hysteria2 servers; "
                f"{data.server} is {data.format}.",
                hint="Use --client sing-box.",
            )
        config = xray_client_config(link, socks_port, listen)
    else:
        config = singbox_client_config(link, socks_port, listen)
    return json.dumps(config, indent=2) + "\n"


def xray_client_config(
    link: XrayLink, socks_port: int, listen: str = "127.0.0.1"
) -> dict[str, Any]:
    """An Xray client: a SOCKS5 proxy (with UDP) on listen:socks_port through the link's server."""
    _check_local(socks_port, listen)
    return {
        "inbounds": [
            {
                "tag": "socks-in",
                "listen": listen,
                "port": socks_port,
                "protocol": "socks",
                "settings": {"udp": True},
            }
        ],
        "outbounds": [link.xray_outbound()],
        # A close from the server reaches the app at once, not a second later (Xray's default).
        "policy": {"levels": {"0": {"uplinkOnly": 0}}},
    }


def singbox_client_config(
    link: AnyLink, socks_port: int, listen: str = "127.0.0.1"
) -> dict[str, Any]:
    """A sing-box client: a SOCKS/HTTP proxy on listen:socks_port through the link's server."""
    _check_local(socks_port, listen)
    config: dict[str, Any] = {
        "inbounds": [
            {"type": "mixed", "tag": INBOUND_TAG, "listen": listen, "listen_port": socks_port}
        ],
        "outbounds": [link.singbox_outbound()],
    }
    if not isinstance(link, VlessLink):
        config["route"] = {"final": OUTBOUND_TAG}
    return config


def _check_local(port: int, listen: str) -> None:
    """The local proxy's port and address must be usable by both engines."""
    if isinstance(port, bool) or not 1 <= port <= 65535:
        raise InvalidInput(f"The local proxy port {port} is out of range.", hint="Use 1 to 65535.")
    try:
        ipaddress.ip_address(listen)
    except ValueError:
        raise InvalidInput(
            f"The local proxy address {listen!r} is not an IP address.",
            hint="Use an IP address such as 127.0.0.1 or ::1.",
        ) from None
