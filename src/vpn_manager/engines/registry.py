"""The one place engines are chosen: a table, protocol → the engine that serves it and the typed
model of what the database keeps as its servers' settings."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from vpn_manager.engines.base import Engine, ServerSpec
from vpn_manager.engines.singbox.engine import SingBoxEngine
from vpn_manager.engines.singbox.protocols import PROTOCOLS as SINGBOX_PROTOCOLS
from vpn_manager.engines.singbox.settings import SingBoxSettings
from vpn_manager.engines.stored import Stored
from vpn_manager.engines.wireguard.engine import WireGuardEngine
from vpn_manager.engines.wireguard.settings import WireGuardSettings
from vpn_manager.engines.xray.engine import XrayEngine
from vpn_manager.engines.xray.settings import XraySettings
from vpn_manager.errors import InvalidInput
from vpn_manager.kinds import Protocol
from vpn_manager.proc import HOST, Commands


@dataclass(frozen=True)
class Registered:
    """`engine`: makes the engine, given where it runs its helper commands; `settings`: the
    model of its servers' settings."""

    engine: Callable[[Commands], Engine]
    settings: type[Stored]


_XRAY = Registered(lambda commands: XrayEngine(), XraySettings)
_SINGBOX = Registered(lambda commands: SingBoxEngine(), SingBoxSettings)
_WIREGUARD = Registered(WireGuardEngine, WireGuardSettings)

ENGINES: dict[Protocol, Registered] = {
    Protocol.VLESS_REALITY: _XRAY,
    Protocol.WIREGUARD: _WIREGUARD,
    **{Protocol(name): _SINGBOX for name in SINGBOX_PROTOCOLS},
}


def _registered(protocol: str) -> Registered:
    try:
        return ENGINES[Protocol(protocol)]
    except (ValueError, KeyError):
        known = ", ".join(p.value for p in Protocol)
        raise InvalidInput(f"Unknown protocol {protocol!r}.", hint=f"Known: {known}.") from None


def engine_for(protocol: str, commands: Commands | None = None) -> Engine:
    """The engine of a protocol. `commands`: where it runs its helper commands, for engines that
    have any (WireGuard: on this machine by default, or in the server's container)."""
    return _registered(protocol).engine(HOST if commands is None else commands)


def settings_of(spec: ServerSpec) -> Stored:
    """The server's stored settings as its engine's typed model."""
    return _registered(spec.protocol).settings.of_dict(spec.settings, spec.name)


def control_ports_of(protocol: str, settings: Mapping[str, object]) -> list[int]:
    """The control ports a server's stored settings declare (whether or not its engine serves
    them on TCP now)."""
    return _registered(protocol).settings.control_ports_in(settings)
