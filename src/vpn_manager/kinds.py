"""The plain kinds the whole tool shares: protocols, runtimes, states. No pydantic here, so the
long-running service can know them without building the input models (models/)."""

from __future__ import annotations

import ipaddress
from enum import StrEnum


class Protocol(StrEnum):
    VLESS_REALITY = "vless-reality"
    VLESS = "vless"
    SHADOWSOCKS = "shadowsocks"
    TROJAN = "trojan"
    HYSTERIA2 = "hysteria2"
    TUIC = "tuic"
    VMESS = "vmess"
    HTTP = "http"
    SOCKS5 = "socks5"
    MIXED = "mixed"
    WIREGUARD = "wireguard"


PROXY_PROTOCOLS = frozenset({Protocol.HTTP, Protocol.SOCKS5, Protocol.MIXED})
TLS_PROTOCOLS = frozenset({Protocol.TROJAN, Protocol.HYSTERIA2, Protocol.TUIC, Protocol.VMESS})
UDP_PROTOCOLS = frozenset({Protocol.HYSTERIA2, Protocol.TUIC, Protocol.WIREGUARD})
# The protocols Xray serves over a transport of choice with TLS or REALITY (`vless-reality`
# stays what it was: VLESS over raw TCP with REALITY).
STREAM_PROTOCOLS = frozenset({Protocol.VLESS, Protocol.TROJAN, Protocol.VMESS})


class Network(StrEnum):
    """How a client's stream is carried (Xray's streamSettings.network; raw is plain TCP)."""

    RAW = "raw"
    WS = "ws"
    GRPC = "grpc"
    HTTPUPGRADE = "httpupgrade"
    XHTTP = "xhttp"


class Security(StrEnum):
    TLS = "tls"
    REALITY = "reality"


# Xray 26 refuses REALITY over WebSocket and HTTPUpgrade (checked by running it: exit 23).
REALITY_NETWORKS = frozenset({Network.RAW, Network.GRPC, Network.XHTTP})
# The networks that are HTTP requests to a path, with a Host header a client may set.
HTTP_NETWORKS = frozenset({Network.WS, Network.HTTPUPGRADE, Network.XHTTP})
XHTTP_MODES = ("auto", "packet-up", "stream-up", "stream-one")
# What each transport option needs of the transport (`vpn server install` and `set`).
TRANSPORT_OPTIONS = {
    "path": (HTTP_NETWORKS, "--path applies to --transport ws, httpupgrade or xhttp"),
    "host_header": (HTTP_NETWORKS, "--host-header applies to --transport ws, httpupgrade or xhttp"),
    "service_name": (frozenset({Network.GRPC}), "--service-name applies to --transport grpc"),
    "xhttp_mode": (frozenset({Network.XHTTP}), "--xhttp-mode applies to --transport xhttp"),
}


def transport_misfit(field: str, network: Network) -> str | None:
    """Why the transport option `field` (path, host_header, service_name, xhttp_mode) does not
    apply to `network`, or None where it does."""
    networks, why = TRANSPORT_OPTIONS[field]
    return None if network in networks else why


def default_security(protocol: Protocol, network: Network) -> Security:
    """VLESS over raw TCP: REALITY; everything else: TLS."""
    if protocol is Protocol.VLESS and network is Network.RAW:
        return Security.REALITY
    return Security.TLS


class RuntimeKind(StrEnum):
    NATIVE = "native"
    DOCKER = "docker"


class DesiredState(StrEnum):
    RUNNING = "running"
    STOPPED = "stopped"


class UserStatus(StrEnum):
    ACTIVE = "active"
    DISABLED = "disabled"
    EXPIRED = "expired"
    OVER_QUOTA = "over-quota"


def is_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True
