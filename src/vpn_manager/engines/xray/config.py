"""Render an Xray config for one server (VLESS, VMess or Trojan over raw TCP, WebSocket, gRPC,
HTTPUpgrade or XHTTP, with TLS or REALITY; `vless-reality` is VLESS over raw with REALITY): a pure
function of the server and its users.

The rendered file is what runs: users are in it (so a restart keeps them) and the live API calls
only repeat what the file already says.
"""

from __future__ import annotations

from typing import Any

from vpn_manager.engines.base import Files
from vpn_manager.engines.xray.settings import XrayCredential, XraySecret, XraySettings
from vpn_manager.errors import EngineError
from vpn_manager.specs import Client, ServerSpec

INBOUND_TAG = "vless-in"  # a VLESS server's inbound (vless-reality and vless)
API_INBOUND_TAG = "api-in"
OWN_ACCESS = f"[{API_INBOUND_TAG} -> api]"  # how the access log ends a line of an API call
API_SOCKET = "xray-api.sock"
# sockaddr_un holds 108 bytes with the final NUL.
MAX_SOCKET_PATH = 107
FLOW = "xtls-rprx-vision"
PRIVATE_NETWORKS = ["127.0.0.0/8", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "::1/128"]


def inbound_protocol(spec: ServerSpec) -> str:
    """The inbound's protocol: vless (vless-reality too), trojan or vmess."""
    return "vless" if spec.protocol == "vless-reality" else spec.protocol


def inbound_tag(spec: ServerSpec) -> str:
    """The tag the API reaches the server's inbound by: vless-in, trojan-in or vmess-in."""
    return f"{inbound_protocol(spec)}-in"


def flow(spec: ServerSpec) -> str:
    """XTLS Vision on VLESS over raw TCP (with TLS or REALITY); no flow on the other transports
    (Xray refuses Vision there) and on VMess and Trojan (VLESS only)."""
    settings = XraySettings.of(spec)
    return FLOW if inbound_protocol(spec) == "vless" and settings.transport == "raw" else ""


def client_entry(spec: ServerSpec, client: Client) -> dict[str, Any]:
    """One user in the inbound's `clients` (and in the API's AddUser): the protocol's key, the
    email the API and stats know the user by, the policy level."""
    return entry(inbound_protocol(spec), flow(spec), client)


def entry(protocol: str, vision: str, client: Client) -> dict[str, Any]:
    credential = XrayCredential.of(client)
    if protocol == "trojan":
        return {"password": credential.password, "email": client.email, "level": 0}
    if protocol == "vmess":
        return {"id": credential.uuid, "email": client.email, "level": 0}
    return {"id": credential.uuid, "flow": vision, "email": client.email, "level": 0}


def stream_settings(spec: ServerSpec) -> dict[str, Any]:
    """The inbound's streamSettings: its transport and TLS or REALITY."""
    settings, secret = XraySettings.of(spec), XraySecret.of(spec)
    network = settings.transport
    stream: dict[str, Any] = {"network": network}
    if settings.reality:
        stream["security"] = "reality"
        stream["realitySettings"] = {
            "show": False,
            "target": settings.dest,
            "xver": 0,
            "serverNames": [settings.sni],
            "privateKey": secret.private_key,
            "shortIds": list(settings.short_ids or ()),
        }
    else:
        cert = settings.certificate
        stream["security"] = "tls"
        stream["tlsSettings"] = {
            "serverName": cert.server_name,
            "certificates": [{"certificateFile": cert.cert_file, "keyFile": cert.key_file}],
        }
    path = settings.path or "/"
    host = {"host": settings.host_header} if settings.host_header else {}
    if network in ("ws", "httpupgrade"):
        stream[f"{network}Settings"] = {"path": path, **host}
    elif network == "xhttp":
        stream["xhttpSettings"] = {"path": path, **host, "mode": settings.xhttp_mode or "auto"}
    elif network == "grpc":
        stream["grpcSettings"] = {"serviceName": settings.service_name or ""}
    return stream


def inbound_settings(spec: ServerSpec, clients: list[Client]) -> dict[str, Any]:
    protocol = inbound_protocol(spec)
    vision = flow(spec)
    settings: dict[str, Any] = {"clients": [entry(protocol, vision, c) for c in clients]}
    if protocol == "vless":
        settings["decryption"] = "none"
    return settings


def api_socket(spec: ServerSpec) -> str | None:
    """Where the server's API listens on a unix socket (None: on TCP, control_listen:api_port)."""
    if not spec.control_dir:
        return None
    return f"{spec.control_dir}/{API_SOCKET}"


def api_blocks(spec: ServerSpec, socket: str | None) -> dict[str, Any]:
    """The `api` object and, for a unix socket, the inbound and routing rule that serve it.

    Checked on Xray 26.10.10 (the PyPI binding): `api.listen` is TCP only (net.Listen("tcp")),
    so a socket takes the older form: an `api` without `listen` (its services are then reached
    through the outbound tagged like it), a dokodemo-door inbound that listens on the socket and
    a rule routing that inbound to the `api` outbound. An inbound's `listen` that starts with "/"
    is a unix socket; ",0600" after the path sets its mode (Xray also leaves PATH.lock beside it).
    The directory is ours and 0700 either way; in a container the engine may run as another uid
    than ours, so there the directory alone keeps other users out (mode 0666)."""
    services = ["HandlerService", "StatsService"]
    if socket is None:
        listen = f"{spec.control_listen}:{XraySettings.of(spec).api_port}"
        return {"api": {"tag": "api", "listen": listen, "services": services}}
    if len(socket.encode()) > MAX_SOCKET_PATH:
        raise EngineError(
            f"The API socket path {socket} is longer than a unix socket allows (107 bytes).",
            hint="Use a shorter VPN_HOME (or XDG_STATE_HOME).",
        )
    mode = "0666" if spec.runtime == "docker" else "0600"
    return {
        "api": {"tag": "api", "services": services},
        "api_inbound": {
            "tag": API_INBOUND_TAG,
            "listen": f"{socket},{mode}",
            "protocol": "dokodemo-door",
            "settings": {"address": "127.0.0.1"},
        },
        "routing": {"rules": [{"inboundTag": [API_INBOUND_TAG], "outboundTag": "api"}]},
    }


def render(spec: ServerSpec, clients: list[Client], files: Files) -> dict[str, Any]:
    settings = XraySettings.of(spec)
    api = api_blocks(spec, api_socket(spec))
    freedom: dict[str, Any] = {"protocol": "freedom", "tag": "direct"}
    if settings.allow_private:
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
        "api": api["api"],
        "policy": {
            # statsUserOnline: the client IPs each user is connected from (device limits).
            "levels": {
                "0": {"statsUserUplink": True, "statsUserDownlink": True, "statsUserOnline": True}
            },
            "system": {"statsInboundUplink": True, "statsInboundDownlink": True},
        },
        "inbounds": [
            {
                "tag": inbound_tag(spec),
                "listen": spec.listen,
                "port": spec.port,
                "protocol": inbound_protocol(spec),
                "settings": inbound_settings(spec, clients),
                "streamSettings": stream_settings(spec),
                # Sniff names for routing only: connecting to a sniffed name instead of the
                # requested address would break clients that send their own Host.
                "sniffing": {"enabled": True, "destOverride": ["http", "tls"], "routeOnly": True},
            },
            *([api["api_inbound"]] if "api_inbound" in api else []),
        ],
        "outbounds": [freedom, {"protocol": "blackhole", "tag": "block"}],
        **({"routing": api["routing"]} if "routing" in api else {}),
    }


def render_text(spec: ServerSpec, clients: list[Client], files: Files) -> str:
    """Indented for people to read and diff; encoded by pydantic-core (the standard library's
    encoder falls back to pure Python when indenting, 20 times slower for 10,000 users; imported
    here, when a file is written, so that the long-running service does not load it)."""
    from pydantic_core import to_json

    return to_json(render(spec, clients, files), indent=2).decode() + "\n"
