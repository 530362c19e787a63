"""The one place engines are chosen: protocol → engine."""

from __future__ import annotations

from typing import TYPE_CHECKING

from vpn_manager.errors import InvalidInput
from vpn_manager.kinds import Protocol

if TYPE_CHECKING:
    from vpn_manager.engines.base import Engine
    from vpn_manager.proc import Commands


def engine_for(protocol: str, commands: Commands | None = None) -> Engine:
    """The engine of a protocol. `commands`: where it runs its helper commands, for engines that
    have any (WireGuard: on this machine by default, or in the server's container)."""
    try:
        kind = Protocol(protocol)
    except ValueError:
        known = ", ".join(p.value for p in Protocol)
        raise InvalidInput(f"Unknown protocol {protocol!r}.", hint=f"Known: {known}.") from None
    if kind is Protocol.VLESS_REALITY:
        from vpn_manager.engines.xray.engine import XrayEngine

        return XrayEngine()
    if kind is Protocol.WIREGUARD:
        from vpn_manager.engines.wireguard.engine import WireGuardEngine

        return WireGuardEngine() if commands is None else WireGuardEngine(commands)
    from vpn_manager.engines.singbox.engine import SingBoxEngine

    return SingBoxEngine()
