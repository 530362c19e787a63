"""A WireGuard peer's client `.conf`: the file a user imports (the WireGuard apps scan the same
text as a QR code). It is both the user's link and their client config."""

from __future__ import annotations

from vpn_manager.engines.linkdata import LinkData
from vpn_manager.links import uri


def client_conf(data: LinkData) -> str:
    tunnel = data.tunnel
    if tunnel is None:
        raise ValueError(f"{data.server}: a WireGuard .conf needs the peer's tunnel")
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
