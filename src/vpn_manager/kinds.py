"""The plain kinds the whole tool shares: protocols, runtimes, states. No pydantic here, so the
long-running service can know them without building the input models (models/)."""

from __future__ import annotations

import ipaddress
from enum import StrEnum


class Protocol(StrEnum):
    VLESS_REALITY = "vless-reality"
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
