"""The table of link formats: which module writes a format from an engine's `LinkData`, and
which reads a link back by its scheme."""

from __future__ import annotations

from collections.abc import Callable

from vpn_manager.engines.linkdata import Format, LinkData
from vpn_manager.errors import InvalidInput
from vpn_manager.links import (
    hysteria2,
    proxy,
    shadowsocks,
    trojan,
    tuic,
    uri,
    vless,
    vmess,
    wireguard,
)
from vpn_manager.links.hysteria2 import Hysteria2Link
from vpn_manager.links.proxy import ProxyLink
from vpn_manager.links.shadowsocks import ShadowsocksLink
from vpn_manager.links.trojan import TrojanLink
from vpn_manager.links.tuic import TuicLink
from vpn_manager.links.vless import VlessRealityLink
from vpn_manager.links.vmess import VmessLink

ShareLink = ShadowsocksLink | TrojanLink | Hysteria2Link | TuicLink | VmessLink | ProxyLink
AnyLink = ShareLink | VlessRealityLink

_FROM_DATA: dict[Format, Callable[[LinkData], AnyLink]] = {
    "vless": vless.from_data,
    "shadowsocks": shadowsocks.from_data,
    "trojan": trojan.from_data,
    "hysteria2": hysteria2.from_data,
    "tuic": tuic.from_data,
    "vmess": vmess.from_data,
    "http": proxy.from_data,
    "socks5": proxy.from_data,
}
_PARSERS: tuple[tuple[uri.Kind, Callable[[str], AnyLink]], ...] = (
    (vless.KIND, VlessRealityLink.parse),
    (shadowsocks.KIND, ShadowsocksLink.parse),
    (trojan.KIND, TrojanLink.parse),
    (hysteria2.KIND, Hysteria2Link.parse),
    (tuic.KIND, TuicLink.parse),
    (vmess.KIND, VmessLink.parse),
    (proxy.KIND, ProxyLink.parse),
)


def link_of(data: LinkData) -> AnyLink:
    """The link model of a user's way in (every format but WireGuard's, which has no URI)."""
    return _FROM_DATA[data.format](data)


def share_link(data: LinkData) -> str:
    """What a client app imports: the share link, or for WireGuard the client `.conf`."""
    if data.format == "wireguard":
        return wireguard.client_conf(data)
    return link_of(data).to_uri()


def parse_link(text: str) -> AnyLink:
    """Read any link we make, by its scheme (a proxy URI gets no name)."""
    scheme = uri.scheme_of(text)
    for kind, parse in _PARSERS:
        if scheme in kind.schemes:
            return parse(text)
    known = ", ".join(s for kind, _ in _PARSERS for s in kind.schemes)
    raise InvalidInput(
        "Not a share link we can read: it must start with one of the known schemes.",
        hint=f"The schemes understood are: {known}.",
    )


def trust_note(data: LinkData) -> str:
    """Say plainly how clients trust a self-signed certificate."""
    if data.tls is None or not data.tls.insecure:
        return ""
    if data.format == "hysteria2":
        return (
            "self-signed certificate: the link pins it (pinSHA256) for clients that check pins "
            "and says insecure=1 for those that cannot (sing-box among them)."
        )
    if getattr(link_of(data), "pin_sha256", None):  # VLESS, Trojan and VMess, on every transport
        flag = "insecure=1" if data.format == "vmess" else "allowInsecure=1"
        return (
            "self-signed certificate: the link pins it (pcs) for Xray-based clients and says "
            f"{flag} for those that cannot pin (sing-box among them)."
        )
    return (
        "self-signed certificate: this link format cannot pin it, so it tells clients not to "
        "verify the certificate (insecure). Use --cert/--key with a real certificate to avoid it."
    )
