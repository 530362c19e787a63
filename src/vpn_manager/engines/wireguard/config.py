"""What a WireGuard server is made of, as text: the `wg setconf` file for the interface and the
client `.conf` each user imports. Pure functions of the server and its peers."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from typing import Any

from vpn_manager.engines.base import Client, ServerSpec
from vpn_manager.errors import InvalidInput


def networks(settings: dict[str, Any]) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    nets: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = [
        ipaddress.ip_network(settings["subnet"])
    ]
    if settings.get("subnet6"):
        nets.append(ipaddress.ip_network(settings["subnet6"]))
    return nets


def server_address(network: ipaddress.IPv4Network | ipaddress.IPv6Network) -> str:
    """The server takes the first host address of each subnet."""
    return str(next(iter(network.hosts())))


def next_addresses(settings: dict[str, Any], taken: Iterable[dict[str, Any]]) -> dict[str, str]:
    """The lowest free address in each subnet: stored with the peer, never derived again, and not
    given to anyone else while that peer holds it."""
    used = {c.get(key) for c in taken for key in ("address", "address6")}
    out: dict[str, str] = {}
    for network, key in zip(networks(settings), ("address", "address6"), strict=False):
        own = server_address(network)
        for host in network.hosts():
            text = str(host)
            if text != own and text not in used:
                out[key] = text
                break
        else:
            raise InvalidInput(
                f"The subnet {network} has no free address left for another peer.",
                hint="Revoke unused peers, or install a server with a larger --subnet.",
            )
    return out


def peer_ips(secret: dict[str, Any]) -> str:
    ips = [f"{secret['address']}/32"]
    if secret.get("address6"):
        ips.append(f"{secret['address6']}/128")
    return ", ".join(ips)


def render(spec: ServerSpec, clients: list[Client]) -> str:
    """The interface's config in `wg setconf` form (addresses and MTU are set with `ip`)."""
    lines = [
        "[Interface]",
        f"PrivateKey = {spec.secret['private_key']}",
        f"ListenPort = {spec.port}",
    ]
    for client in clients:
        secret = client.secret
        lines += [
            "",
            "[Peer]",
            f"# {client.email}",
            f"PublicKey = {secret['public_key']}",
            f"PresharedKey = {secret['preshared_key']}",
            f"AllowedIPs = {peer_ips(secret)}",
        ]
    return "\n".join(lines) + "\n"


def client_conf(spec: ServerSpec, client: Client) -> str:
    """The `.conf` a user imports (the WireGuard apps scan the same text as a QR code)."""
    settings, secret = spec.settings, client.secret
    addresses = [f"{secret['address']}/32"]
    if secret.get("address6"):
        addresses.append(f"{secret['address6']}/128")
    host = f"[{spec.host}]" if ":" in spec.host else spec.host
    lines = [
        "[Interface]",
        f"PrivateKey = {secret['private_key']}",
        f"Address = {', '.join(addresses)}",
    ]
    if settings.get("dns"):
        lines.append(f"DNS = {settings['dns']}")
    lines += [
        f"MTU = {settings['mtu']}",
        "",
        "[Peer]",
        f"PublicKey = {settings['public_key']}",
        f"PresharedKey = {secret['preshared_key']}",
        f"Endpoint = {host}:{spec.port}",
        f"AllowedIPs = {settings['client_allowed_ips']}",
        f"PersistentKeepalive = {settings['keepalive']}",
    ]
    return "\n".join(lines) + "\n"
