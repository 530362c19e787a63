"""Links and client configs: what a user connects with, written from what an engine says the
link needs (`engines.linkdata.LinkData`). Pure functions and frozen models, no I/O.

- `share_link(data)`: the text a client app imports (a share link, or WireGuard's `.conf`);
  `client_config(data, client)`: a ready-to-run Xray or sing-box config (`clients`);
  `trust_note(data)`: how clients trust a self-signed certificate.
- One module per format, each with its model (`to_uri()`, `parse()`, the client outbounds):
  `vless` (REALITY or TLS), `shadowsocks` (ss://, Outline keys), `trojan`, `hysteria2`, `tuic`,
  `vmess`, `proxy` (http:// and socks5://), `wireguard` (the client `.conf`).
- `transport`: the Xray transport VLESS, Trojan and VMess links are carried over (raw, ws, grpc,
  httpupgrade, xhttp), its link parameters and its Xray, sing-box and Mihomo settings.
- `uri`: the one URI reader and writer every format uses; `fields`: the values links share;
  `formats`: the table of formats (`link_of`, `parse_link`).

Engines never import this package; it imports only engines' description types, never services
or storage. QR codes of links are in `vpn_manager.delivery`.
"""

from vpn_manager.links.clients import (
    check_client,
    client_config,
    singbox_client_config,
    xray_client_config,
)
from vpn_manager.links.formats import (
    AnyLink,
    ShareLink,
    link_of,
    parse_link,
    share_link,
    trust_note,
)
from vpn_manager.links.hysteria2 import Hysteria2Link
from vpn_manager.links.proxy import ProxyLink
from vpn_manager.links.shadowsocks import ShadowsocksLink
from vpn_manager.links.trojan import TrojanLink
from vpn_manager.links.tuic import TuicLink
from vpn_manager.links.vless import ALL_PARAMETERS, PARAMETER_ORDER, VlessLink, VlessRealityLink
from vpn_manager.links.vmess import VmessLink

__all__ = [
    "ALL_PARAMETERS",
    "PARAMETER_ORDER",
    "AnyLink",
    "Hysteria2Link",
    "ProxyLink",
    "ShadowsocksLink",
    "ShareLink",
    "TrojanLink",
    "TuicLink",
    "VlessLink",
    "VlessRealityLink",
    "VmessLink",
    "check_client",
    "client_config",
    "link_of",
    "parse_link",
    "share_link",
    "singbox_client_config",
    "trust_note",
    "xray_client_config",
]
