"""What a WireGuard server is made of, as text: the `wg setconf` file for the interface and the
data of the client `.conf` each user imports. Pure functions of the server and its peers."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from vpn_manager.engines.linkdata import LinkData, Tunnel
from vpn_manager.engines.wireguard.settings import (
    Network,
    Peer,
    WireGuardSecret,
    WireGuardSettings,
)
from vpn_manager.errors import InvalidInput
from vpn_manager.specs import Client, ServerSpec

# The stored names of a peer's address in each of the server's networks (Peer).
ADDRESS_KEYS = ("address", "address6")


def server_address(network: Network) -> str:
    """The server takes the first host address of each subnet."""
    return str(next(iter(network.hosts())))


def next_addresses(
    settings: WireGuardSettings, taken: Iterable[Mapping[str, Any]]
) -> dict[str, str]:
    """The lowest free address in each subnet, as a new peer's credential stores them: stored
    with the peer, never derived again, and not given to anyone else while that peer holds it.
    `taken`: the other peers' stored credentials."""
    used = {c.get(key) for c in taken for key in ADDRESS_KEYS}
    out: dict[str, str] = {}
    for network, key in zip(settings.networks(), ADDRESS_KEYS, strict=False):
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


def render(spec: ServerSpec, clients: list[Client]) -> str:
    """The interface's config in `wg setconf` form (addresses and MTU are set with `ip`)."""
    lines = [
        "[Interface]",
        f"PrivateKey = {WireGuardSecret.of(spec).private_key}",
        f"ListenPort = {spec.port}",
    ]
    for client in clients:
        peer = Peer.of(client)
        lines += [
            "",
            "[Peer]",
            f"# {client.email}",
            f"PublicKey = {peer.public_key}",
            f"PresharedKey = {peer.preshared_key}",
            f"AllowedIPs = {', '.join(peer.addresses())}",
        ]
    return "\n".join(lines) + "\n"


def link_data(spec: ServerSpec, client: Client) -> LinkData:
    """What the `.conf` a user imports says (vpn_manager.links writes it)."""
    settings, peer = WireGuardSettings.of(spec), Peer.of(client)
    return LinkData.of(
        "wireguard",
        spec,
        client,
        tunnel=Tunnel(
            private_key=peer.private_key,
            addresses=peer.addresses(),
            dns=settings.dns or "",
            mtu=settings.mtu,
            server_public_key=settings.public_key,
            preshared_key=peer.preshared_key,
            allowed_ips=settings.client_allowed_ips,
            keepalive=settings.keepalive,
        ),
    )
