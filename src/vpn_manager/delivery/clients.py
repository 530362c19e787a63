"""Ready-to-run client configs for a VLESS+REALITY link, built from the link's data alone.

Each config opens a local proxy port and sends everything through the link's server; write it to
a file and run `xray run -c FILE` or `sing-box run -c FILE`. They are plain dicts for `json.dumps`.

- `xray_client_config`: Xray 26 (and older: the `vnext` form of the VLESS outbound is used, which
  every Xray accepts). A SOCKS5 inbound with UDP, and one VLESS outbound over raw TCP with REALITY.
  No `freedom` or routing section: everything goes to the first (only) outbound.
- `singbox_client_config`: sing-box 1.12 or newer. A `mixed` inbound (SOCKS4/5 and HTTP on one
  port) and one `vless` outbound with TLS, uTLS and REALITY. The sing-box build shipped for our
  tests is built without REALITY and uTLS, so it cannot run this config: it is for users' own
  sing-box clients (which are built with them), and our end-to-end tests use the Xray config.
  sing-box has no spider path, so the link's `spider_x` is not used there.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from vpn_manager.delivery.links import VlessRealityLink
from vpn_manager.errors import InvalidInput


def xray_client_config(
    link: VlessRealityLink, socks_port: int, listen: str = "127.0.0.1"
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
        "outbounds": [
            {
                "tag": "proxy",
                "protocol": "vless",
                "settings": {
                    "vnext": [
                        {
                            "address": link.host,
                            "port": link.port,
                            "users": [{"id": link.uuid, "encryption": "none", "flow": link.flow}],
                        }
                    ]
                },
                "streamSettings": {
                    "network": "tcp",
                    "security": "reality",
                    "realitySettings": {
                        "serverName": link.sni,
                        "fingerprint": link.fingerprint,
                        "publicKey": link.public_key,
                        "shortId": link.short_id,
                        "spiderX": link.spider_x or "/",  # Xray's own default when unset
                    },
                },
            }
        ],
    }


def singbox_client_config(
    link: VlessRealityLink, socks_port: int, listen: str = "127.0.0.1"
) -> dict[str, Any]:
    """A sing-box client: a SOCKS/HTTP proxy on listen:socks_port through the link's server."""
    _check_local(socks_port, listen)
    return {
        "inbounds": [
            {"type": "mixed", "tag": "mixed-in", "listen": listen, "listen_port": socks_port}
        ],
        "outbounds": [
            {
                "type": "vless",
                "tag": "proxy",
                "server": link.host,
                "server_port": link.port,
                "uuid": link.uuid,
                "flow": link.flow,
                "tls": {
                    "enabled": True,
                    "server_name": link.sni,
                    "utls": {"enabled": True, "fingerprint": link.fingerprint},
                    "reality": {
                        "enabled": True,
                        "public_key": link.public_key,
                        "short_id": link.short_id,
                    },
                },
            }
        ],
    }


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
