"""Render an Xray config for one VLESS+REALITY server: a pure function of the server and its users.

The rendered file is what runs: users are in it (so a restart keeps them) and the live API calls
only repeat what the file already says.
"""

from __future__ import annotations

from typing import Any

from vpn_manager.engines.base import Client, Files, ServerSpec

INBOUND_TAG = "vless-in"
FLOW = "xtls-rprx-vision"
PRIVATE_NETWORKS = ["127.0.0.0/8", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "::1/128"]


def client_entry(client: Client) -> dict[str, Any]:
    return {"id": client.secret["uuid"], "flow": FLOW, "email": client.email, "level": 0}


def render(spec: ServerSpec, clients: list[Client], files: Files) -> dict[str, Any]:
    settings, secret = spec.settings, spec.secret
    freedom: dict[str, Any] = {"protocol": "freedom", "tag": "direct"}
    if settings.get("allow_private"):
        # Xray refuses private and loopback destinations by default; a server that must reach
        # them (a test bed, a LAN gateway) says so at install.
        freedom["settings"] = {"finalRules": [{"action": "allow", "ip": PRIVATE_NETWORKS}]}
    return {
        "log": {
            "loglevel": "warning",
            "access": str(files.access_log),
            "error": str(files.error_log),
        },
        "stats": {},
        "api": {
            "tag": "api",
            "listen": f"{spec.control_listen}:{settings['api_port']}",
            "services": ["HandlerService", "StatsService"],
        },
        "policy": {
            # statsUserOnline: the client IPs each user is connected from (device limits).
            "levels": {
                "0": {"statsUserUplink": True, "statsUserDownlink": True, "statsUserOnline": True}
            },
            "system": {"statsInboundUplink": True, "statsInboundDownlink": True},
        },
        "inbounds": [
            {
                "tag": INBOUND_TAG,
                "listen": spec.listen,
                "port": spec.port,
                "protocol": "vless",
                "settings": {
                    "clients": [client_entry(c) for c in clients],
                    "decryption": "none",
                },
                "streamSettings": {
                    "network": "raw",
                    "security": "reality",
                    "realitySettings": {
                        "show": False,
                        "target": settings["dest"],
                        "xver": 0,
                        "serverNames": [settings["sni"]],
                        "privateKey": secret["private_key"],
                        "shortIds": settings["short_ids"],
                    },
                },
                # Sniff names for routing only: connecting to a sniffed name instead of the
                # requested address would break clients that send their own Host.
                "sniffing": {"enabled": True, "destOverride": ["http", "tls"], "routeOnly": True},
            }
        ],
        "outbounds": [freedom, {"protocol": "blackhole", "tag": "block"}],
    }


def render_text(spec: ServerSpec, clients: list[Client], files: Files) -> str:
    """Indented for people to read and diff; encoded by pydantic-core (the standard library's
    encoder falls back to pure Python when indenting, 20 times slower for 10,000 users)."""
    from pydantic_core import to_json

    return to_json(render(spec, clients, files), indent=2).decode() + "\n"
