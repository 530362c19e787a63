"""WireGuard subnets do not overlap: each server hands out its own addresses, and a client of two
servers (or this machine's routes) cannot tell overlapping ones apart. Checked before a server is
installed, against every WireGuard server of this home."""

from __future__ import annotations

import ipaddress
from typing import TYPE_CHECKING

from vpn_manager import storage
from vpn_manager.engines.wireguard.engine import DEFAULT_SUBNET
from vpn_manager.errors import Conflict
from vpn_manager.kinds import Protocol

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

    from vpn_manager.models.server import ServerCreate


async def refuse_overlap(session: AsyncSession, create: ServerCreate) -> None:
    """Raise Conflict, naming the other server, if `create` is a WireGuard server whose subnet
    (the default one when --subnet is not given) or --subnet6 overlaps another's."""
    if create.protocol is not Protocol.WIREGUARD:
        return
    wanted = [create.subnet or DEFAULT_SUBNET, create.subnet6]
    for row, _ in await storage.servers.list_servers(session):
        if row.protocol != Protocol.WIREGUARD.value:
            continue
        for option, mine, theirs in (
            ("--subnet", wanted[0], row.settings.get("subnet")),
            ("--subnet6", wanted[1], row.settings.get("subnet6")),
        ):
            if (
                mine
                and theirs
                and ipaddress.ip_network(mine).overlaps(ipaddress.ip_network(theirs))
            ):
                raise Conflict(
                    f"The subnet {mine} overlaps {theirs} of the WireGuard server {row.name}.",
                    hint=f"Give another {option}, one that overlaps no other server's.",
                )
