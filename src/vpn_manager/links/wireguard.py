"""A WireGuard peer's client `.conf`: the file a user imports (the WireGuard apps scan the same
text as a QR code). It is both the user's link and their client config."""

from __future__ import annotations

from typing import Any

from vpn_manager.engines.linkdata import LinkData, Tunnel
from vpn_manager.links import uri


def client_conf(data: LinkData) -> str:
    tunnel = _tunnel(data)
    lines = [
        "[Interface]",
        f"PrivateKey = {tunnel.private_key}",
        f"Address = {', '.join(tunnel.addresses)}",
    ]
    if tunnel.dns:
        lines.append(f"DNS = {tunnel.dns}")
    lines += [
        f"MTU = {tunnel.mtu}",
        "",
        "[Peer]",
        f"PublicKey = {tunnel.server_public_key}",
        f"PresharedKey = {tunnel.preshared_key}",
        f"Endpoint = {uri.authority(data.host, data.port)}",
        f"AllowedIPs = {tunnel.allowed_ips}",
        f"PersistentKeepalive = {tunnel.keepalive}",
    ]
    return "\n".join(lines) + "\n"


def _tunnel(data: LinkData) -> Tunnel:
    if data.tunnel is None:
        raise ValueError(f"{data.server}: a WireGuard peer needs its tunnel")
    return data.tunnel


def clash_proxy(data: LinkData, name: str) -> dict[str, Any]:
    """The peer as a Clash/Mihomo `wireguard` proxy."""
    tunnel = _tunnel(data)
    v4 = [a for a in tunnel.addresses if ":" not in a]
    v6 = [a for a in tunnel.addresses if ":" in a]
    proxy: dict[str, Any] = {
        "name": name,
        "type": "wireguard",
        "server": data.host,
        "port": data.port,
        "private-key": tunnel.private_key,
        "public-key": tunnel.server_public_key,
        "pre-shared-key": tunnel.preshared_key,
        "allowed-ips": _allowed(tunnel),
        "mtu": tunnel.mtu,
        "udp": True,
        "persistent-keepalive": tunnel.keepalive,
    }
    if v4:
        proxy["ip"] = v4[0].split("/")[0]
    if v6:
        proxy["ipv6"] = v6[0].split("/")[0]
    return proxy


def singbox_endpoint(data: LinkData, tag: str) -> dict[str, Any]:
    """The peer as a sing-box (1.11 or newer) `wireguard` endpoint."""
    tunnel = _tunnel(data)
    return {
        "type": "wireguard",
        "tag": tag,
        "address": list(tunnel.addresses),
        "private_key": tunnel.private_key,
        "mtu": tunnel.mtu,
        "peers": [
            {
                "address": data.host,
                "port": data.port,
                "public_key": tunnel.server_public_key,
                "pre_shared_key": tunnel.preshared_key,
                "allowed_ips": _allowed(tunnel),
                "persistent_keepalive_interval": tunnel.keepalive,
            }
        ],
    }


def _allowed(tunnel: Tunnel) -> list[str]:
    return [ip.strip() for ip in tunnel.allowed_ips.split(",") if ip.strip()]
