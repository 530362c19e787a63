"""What a WireGuard server is made of, as text: the `wg setconf` file for the interface and the
data of the client `.conf` each user imports. Pure functions of the server and its peers."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from typing import Any

from vpn_manager.engines.base import Client, ServerSpec
from vpn_manager.engines.linkdata import LinkData, Tunnel
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


def peer_addresses(secret: dict[str, Any]) -> tuple[str, ...]:
    """A peer's addresses with their prefix: 10.13.13.2/32[, fd13::2/128]."""
    ips = [f"{secret['address']}/32"]
    if secret.get("address6"):
        ips.append(f"{secret['address6']}/128")
    return tuple(ips)


def peer_ips(secret: dict[str, Any]) -> str:
    return ", ".join(peer_addresses(secret))


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


def link_data(spec: ServerSpec, client: Client) -> LinkData:
    """What the `.conf` a user imports says (vpn_manager.links writes it)."""
    settings, secret = spec.settings, client.secret
    return LinkData.of(
        "wireguard",
        spec,
        client,
        tunnel=Tunnel(
            private_key=secret["private_key"],
            addresses=peer_addresses(secret),
            dns=settings.get("dns") or "",
            mtu=settings["mtu"],
            server_public_key=settings["public_key"],
            preshared_key=secret["preshared_key"],
            allowed_ips=settings["client_allowed_ips"],
            keepalive=settings["keepalive"],
        ),
    )
