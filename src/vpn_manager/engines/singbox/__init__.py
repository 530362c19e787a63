"""sing-box: Shadowsocks, Trojan, Hysteria2, TUIC, VMess and HTTP/SOCKS5 proxy servers, one
sing-box process per server. Config rendering (config), credentials (secrets) and self-signed
certificates (tls) are pure functions here; the process and its APIs live next to them."""

from __future__ import annotations

from vpn_manager.errors import InvalidInput

# ServerSpec.protocol → sing-box inbound type.
INBOUND_TYPES = {
    "shadowsocks": "shadowsocks",
    "trojan": "trojan",
    "hysteria2": "hysteria2",
    "tuic": "tuic",
    "vmess": "vmess",
    "http": "http",
    "socks5": "socks",
    "mixed": "mixed",
}
PROTOCOLS = tuple(INBOUND_TYPES)
TLS_PROTOCOLS = frozenset({"trojan", "hysteria2", "tuic", "vmess"})
QUIC_PROTOCOLS = frozenset({"hysteria2", "tuic"})  # UDP only: a TCP connect cannot probe them
PROXY_PROTOCOLS = frozenset({"http", "socks5", "mixed"})


def check_protocol(protocol: str) -> str:
    """`protocol` if sing-box serves it here; InvalidInput otherwise."""
    if protocol not in INBOUND_TYPES:
        raise InvalidInput(
            f"sing-box does not serve the protocol {protocol!r}.",
            hint=f"Choose one of: {', '.join(PROTOCOLS)}.",
        )
    return protocol
