"""Render an Xray config for one server (VLESS, VMess or Trojan over raw TCP, WebSocket, gRPC,
HTTPUpgrade or XHTTP, with TLS or REALITY; `vless-reality` is VLESS over raw with REALITY; Hysteria2
over QUIC): a pure function of the server and its users.

Hysteria2 (checked on Xray 26.10.10 from the binding, loopback): the `hysteria` inbound with
`"version": 2` and `clients` of `{"auth", "email", "level"}`, streamSettings network `hysteria`
(`hysteriaSettings: {"version": 2}`) with TLS (ALPN h3); a sing-box client made from our
`hysteria2://` link and an Xray `hysteria` client both move bytes through it; HandlerService adds
and removes users live and StatsService counts them per user. A user is checked once, when its
QUIC connection authenticates: a removed user's open connection keeps working and may open new
streams, so its packets are dropped (engines/flowcuts.py; engine.py `cuts_sessions`). A restart
would not do: Xray stopping sends no CONNECTION_CLOSE, so every client's connection hangs until it
idles out (30 s) before the client reconnects. What a non-client gets is
Xray's default masquerade, HTTP/3 404 (sing-box's default too).

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
FRONT_TAG = "front-in"  # the public TLS inbound in front of a ws/grpc/httpupgrade/xhttp one
DECOY_SOCKET = "decoy.sock"  # the local decoy page (served by engines/xray/child.py)
INNER_SOCKET = "inbound.sock"  # the real inbound behind the front
LOCAL_DECOY = "local"  # settings.decoy: the local page (models.server.LOCAL_DECOY)
NO_DECOY = "none"  # settings.decoy: none (VMess over raw TCP; in a container without --decoy)
# sockaddr_un holds 108 bytes with the final NUL.
MAX_SOCKET_PATH = 107
FLOW = "xtls-rprx-vision"
PRIVATE_NETWORKS = ["127.0.0.0/8", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "::1/128"]


# Our protocol name → Xray's inbound protocol, where they differ.
_INBOUND_PROTOCOLS = {"vless-reality": "vless", "hysteria2": "hysteria"}


def inbound_protocol(spec: ServerSpec) -> str:
    """The inbound's protocol: vless (vless-reality too), trojan, vmess or hysteria."""
    return _INBOUND_PROTOCOLS.get(spec.protocol, spec.protocol)


def is_hysteria(spec: ServerSpec) -> bool:
    """Hysteria2: QUIC on a UDP port, a password per user (its `auth`)."""
    return inbound_protocol(spec) == "hysteria"


def inbound_tag(spec: ServerSpec) -> str:
    """The tag the API reaches the server's inbound by: vless-in, trojan-in, vmess-in or
    hysteria-in."""
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
    if protocol == "hysteria":
        return {"auth": credential.password, "email": client.email, "level": 0}
    if protocol == "vmess":
        return {"id": credential.uuid, "email": client.email, "level": 0}
    return {"id": credential.uuid, "flow": vision, "email": client.email, "level": 0}


def has_decoy(spec: ServerSpec) -> bool:
    """Does the server answer what is not a client with a decoy website? Every TLS server but
    VMess over raw TCP (a VMess stream's first bytes are random-looking, so no fallback rule
    tells them from a probe's) and one in a container without --decoy (nothing there serves the
    local page); REALITY servers answer probes with their target's own site."""
    settings = XraySettings.of(spec)
    if settings.reality or not spec.control_dir or settings.decoy == NO_DECOY:
        return False
    if is_hysteria(spec):
        return False  # no fallbacks on QUIC: non-clients get the masquerade (HTTP/3 404)
    if spec.runtime == "docker" and decoy_site(spec) is None:
        return False
    return not vmess_over_raw(spec)


def vmess_over_raw(spec: ServerSpec) -> bool:
    """VMess over raw TCP: no fallback rule tells its streams from a probe's, so no decoy."""
    return inbound_protocol(spec) == "vmess" and XraySettings.of(spec).transport == "raw"


def decoy_site(spec: ServerSpec) -> str | None:
    """The HOST:PORT of the site given with --decoy, or None (the local page; a server stored
    before decoys existed has none either)."""
    decoy = XraySettings.of(spec).decoy
    return None if decoy in (None, LOCAL_DECOY, NO_DECOY) else decoy


def has_front(spec: ServerSpec) -> bool:
    """A decoy in front of a transport other than raw TCP needs a front inbound: VLESS over raw
    TCP with TLS on the public port, whose fallbacks pass the transport's requests on to the
    real inbound (no TLS, on a unix socket) and the rest to the decoy. VLESS and Trojan over raw
    TCP have fallbacks themselves."""
    return has_decoy(spec) and XraySettings.of(spec).transport != "raw"


def local_decoy(spec: ServerSpec) -> str | None:
    """The unix socket of the local decoy page, or None where the decoy is a site given with
    --decoy (or there is no decoy)."""
    if not has_decoy(spec) or decoy_site(spec) is not None:
        return None
    return f"{spec.control_dir}/{DECOY_SOCKET}"


def inner_socket(spec: ServerSpec) -> str:
    return f"{spec.control_dir}/{INNER_SOCKET}"


def fallbacks(spec: ServerSpec) -> list[dict[str, Any]]:
    """Where the TLS inbound sends what is not a client of its own (Xray checks the rules with
    a path or an ALPN first, then the one with neither). Behind a front the real inbound gets,
    with a PROXY protocol header (xver 2) so that it logs the client's own address: HTTP/2
    (gRPC, XHTTP), and for ws and httpupgrade the HTTP/1.1 requests for the transport's path;
    the rest goes to the decoy: the local page's unix socket, or the site given with --decoy
    (the request is passed on as it came, plain HTTP).

    Xray matches a rule's path against the first request line only, exactly (up to a `?`), and
    never inside HTTP/2. XHTTP has no rule for its path: its clients ask for PATH/SESSION/…,
    which no exact path matches, and over HTTP/1.1 (a link with alpn=http/1.1) they never got
    through a front; without the rule a plain GET of the path gets the decoy page instead of
    XHTTP's 404."""
    settings = XraySettings.of(spec)
    decoy = decoy_site(spec) or f"{spec.control_dir}/{DECOY_SOCKET}"
    rules: list[dict[str, Any]] = []
    if has_front(spec):
        inner = inner_socket(spec)
        if settings.transport in ("grpc", "xhttp"):
            rules.append({"alpn": "h2", "dest": inner, "xver": 2})
        else:
            rules.append({"path": settings.path or "/", "dest": inner, "xver": 2})
    rules.append({"dest": decoy, "xver": 0})
    return rules


def alpn(spec: ServerSpec) -> list[str]:
    """What the TLS inbound offers: HTTP/1.1 only where the decoy is HTTP/1.1 and the transport
    needs no HTTP/2 (so that a browser or curl probe talks HTTP/1.1 to the decoy); gRPC and
    XHTTP need h2."""
    if XraySettings.of(spec).transport in ("grpc", "xhttp"):
        return ["h2", "http/1.1"]
    return ["http/1.1"]


def tls_settings(spec: ServerSpec) -> dict[str, Any]:
    cert = XraySettings.of(spec).certificate
    block: dict[str, Any] = {
        "serverName": cert.server_name,
        "certificates": [{"certificateFile": cert.cert_file, "keyFile": cert.key_file}],
    }
    if has_decoy(spec):
        block["alpn"] = alpn(spec)
    return block


def stream_settings(spec: ServerSpec) -> dict[str, Any]:
    """The inbound's streamSettings: its transport and TLS or REALITY (behind a front: no TLS,
    and the PROXY protocol header the front's fallbacks send)."""
    settings, secret = XraySettings.of(spec), XraySecret.of(spec)
    network = settings.transport
    stream: dict[str, Any] = {"network": network}
    if is_hysteria(spec):
        # QUIC's TLS speaks h3 (Hysteria2 clients ask for it).
        return {
            **stream,
            "security": "tls",
            "tlsSettings": {**tls_settings(spec), "alpn": ["h3"]},
            "hysteriaSettings": {"version": 2},
        }
    if has_front(spec):
        stream["security"] = "none"
        stream["sockopt"] = {"acceptProxyProtocol": True}
    elif settings.reality:
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
        stream["security"] = "tls"
        stream["tlsSettings"] = tls_settings(spec)
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
    if protocol == "hysteria":
        settings["version"] = 2
    if protocol == "vless":
        settings["decryption"] = "none"
    if has_decoy(spec) and not has_front(spec):
        settings["fallbacks"] = fallbacks(spec)
    return settings


def front_inbound(spec: ServerSpec) -> dict[str, Any]:
    """The public TLS inbound in front of the real one: VLESS without users, so every
    connection falls back (to the real inbound or the decoy)."""
    return {
        "tag": FRONT_TAG,
        "listen": spec.listen,
        "port": spec.port,
        "protocol": "vless",
        "settings": {"clients": [], "decryption": "none", "fallbacks": fallbacks(spec)},
        "streamSettings": {"network": "raw", "security": "tls", "tlsSettings": tls_settings(spec)},
    }


def inbounds(spec: ServerSpec, clients: list[Client]) -> list[dict[str, Any]]:
    """The server's inbounds: the public one first (the front, where there is one)."""
    real: dict[str, Any] = {
        "tag": inbound_tag(spec),
        "listen": spec.listen,
        "port": spec.port,
        "protocol": inbound_protocol(spec),
        "settings": inbound_settings(spec, clients),
        "streamSettings": stream_settings(spec),
        # Sniff names for routing only: connecting to a sniffed name instead of the
        # requested address would break clients that send their own Host.
        "sniffing": {"enabled": True, "destOverride": ["http", "tls"], "routeOnly": True},
    }
    if not has_front(spec):
        return [real]
    # A unix socket (0600: only the engine's uid; 0666 in a container, where the private
    # directory alone keeps others out, as for the API socket).
    mode = "0666" if spec.runtime == "docker" else "0600"
    real["listen"] = f"{inner_socket(spec)},{mode}"
    del real["port"]
    return [front_inbound(spec), real]


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
            # uplinkOnly 0: once the site a client reached closes, the client sees the close at
            # once; Xray's default holds the connection open a second more, which a response
            # that ends with the close (HTTP/1.0, many short fetches) waits out every time.
            "levels": {
                "0": {
                    "statsUserUplink": True,
                    "statsUserDownlink": True,
                    "statsUserOnline": True,
                    "uplinkOnly": 0,
                }
            },
            "system": {"statsInboundUplink": True, "statsInboundDownlink": True},
        },
        "inbounds": [
            *inbounds(spec, clients),
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
