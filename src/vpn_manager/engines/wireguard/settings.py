"""What the database keeps for a WireGuard server and its peers, as typed models
(engines/stored.py): the interface's settings and private key, and each peer's keys and
addresses. WireGuard has no control port: `wg` talks to wireguard-go over a unix socket."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import ClassVar

from vpn_manager.engines.stored import Secret, Stored
from vpn_manager.specs import Client, ServerSpec

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class WireGuardSettings(Stored):
    """`interface`: the interface's name (kept: at most 15 characters); `subnet` and `subnet6`:
    the tunnel's networks; `dns`, `mtu`, `client_allowed_ips` and `keepalive`: what each client
    `.conf` says (no `dns`: the client keeps its own)."""

    interface: str
    subnet: str
    public_key: str
    subnet6: str | None = None
    dns: str | None = None
    mtu: int = 1420
    client_allowed_ips: str = "0.0.0.0/0, ::/0"
    keepalive: int = 25
    allow_private: bool = False

    @classmethod
    def of(cls, spec: ServerSpec) -> WireGuardSettings:
        return cls.of_dict(spec.settings, spec.name)

    def networks(self) -> list[Network]:
        """The tunnel's networks: IPv4, then IPv6 if it has one."""
        nets: list[Network] = [ipaddress.ip_network(self.subnet)]
        if self.subnet6:
            nets.append(ipaddress.ip_network(self.subnet6))
        return nets


@dataclass(frozen=True, repr=False)
class WireGuardSecret(Secret):
    private_key: str

    @classmethod
    def of(cls, spec: ServerSpec) -> WireGuardSecret:
        return cls.of_dict(spec.secret, spec.name)


@dataclass(frozen=True, repr=False)
class Peer(Secret):
    """A user's peer: its keys and its addresses in the tunnel (stored with it, never derived
    again)."""

    WHAT: ClassVar[str] = "credentials"

    private_key: str
    public_key: str
    preshared_key: str
    address: str
    address6: str | None = None

    @classmethod
    def of(cls, client: Client) -> Peer:
        return cls.of_dict(client.secret)

    def addresses(self) -> tuple[str, ...]:
        """The peer's addresses with their prefix: 10.13.13.2/32[, fd13::2/128]."""
        ips = [f"{self.address}/32"]
        if self.address6:
            ips.append(f"{self.address6}/128")
        return tuple(ips)
