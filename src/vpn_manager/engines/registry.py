"""The one place engines are chosen: a table, protocol → the engine that serves it and the typed
model of what the database keeps as its servers' settings.

The engine modules are imported when an engine is first made (the factories below), not with
this table: storage reads control ports through it, and `vpn serve` with no server of an engine
stays without that engine's code (its idle memory is budgeted: bench/run.py, serve-rss)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from vpn_manager.engines.base import Engine
from vpn_manager.engines.singbox.protocols import PROTOCOLS as SINGBOX_PROTOCOLS
from vpn_manager.engines.singbox.settings import SingBoxSettings
from vpn_manager.engines.stored import Stored
from vpn_manager.engines.wireguard.settings import WireGuardSettings
from vpn_manager.engines.xray.settings import XraySettings
from vpn_manager.errors import InvalidInput
from vpn_manager.kinds import Protocol
from vpn_manager.proc import HOST, Commands
from vpn_manager.specs import ServerSpec


@dataclass(frozen=True)
class Registered:
    """`engine`: makes the engine, given where it runs its helper commands; `settings`: the
    model of its servers' settings."""

    engine: Callable[[Commands], Engine]
    settings: type[Stored]


def _xray(commands: Commands) -> Engine:
    from vpn_manager.engines.xray.engine import XrayEngine

    return XrayEngine()


def _singbox(commands: Commands) -> Engine:
    from vpn_manager.engines.singbox.engine import SingBoxEngine

    return SingBoxEngine()


def _wireguard(commands: Commands) -> Engine:
    from vpn_manager.engines.wireguard.engine import WireGuardEngine

    return WireGuardEngine(commands)


_XRAY = Registered(_xray, XraySettings)
_SINGBOX = Registered(_singbox, SingBoxSettings)
_WIREGUARD = Registered(_wireguard, WireGuardSettings)

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
