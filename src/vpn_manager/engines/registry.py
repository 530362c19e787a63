"""The one place engines are chosen. The engine is a server's, not a protocol's: each server row
keeps the engine it was installed on (`ServerSpec.engine`), so a Trojan or VMess server installed
on sing-box by an older version stays on sing-box while new ones are made on Xray. Two tables:
engine name → how to make it and the typed model of its servers' stored settings; protocol → the
engine a NEW server of it is installed on (and, where a container differs, in a container).

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
from vpn_manager.kinds import Protocol, RuntimeKind
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


XRAY = "xray"
SINGBOX = "sing-box"
WIREGUARD = "wireguard-go"
# By the name each engine class has (Engine.name), as the servers table keeps it.
ENGINES: dict[str, Registered] = {
    XRAY: Registered(_xray, XraySettings),
    SINGBOX: Registered(_singbox, SingBoxSettings),
    WIREGUARD: Registered(_wireguard, WireGuardSettings),
}
# What a new server of each protocol is installed on. Trojan, VMess and Hysteria2 moved to Xray
# (users are added live there; sing-box reloads, resetting every connection); servers already on
# sing-box keep it.
NEW_SERVERS: dict[Protocol, str] = {
    **{Protocol(name): SINGBOX for name in SINGBOX_PROTOCOLS},
    Protocol.VLESS_REALITY: XRAY,
    Protocol.VLESS: XRAY,
    Protocol.TROJAN: XRAY,
    Protocol.VMESS: XRAY,
    Protocol.HYSTERIA2: XRAY,
    Protocol.WIREGUARD: WIREGUARD,
}
# Where a new server in a container gets another engine. Hysteria2 stays on sing-box there: an
# Xray container is recreated on every user removal as well (`ss -K` does not reach into it) and
# gains only live additions, which no Xray image built here has proven for Hysteria2.
NEW_IN_CONTAINERS: dict[Protocol, str] = {Protocol.HYSTERIA2: SINGBOX}


def engine_of_new(protocol: str, runtime: str = RuntimeKind.NATIVE.value) -> str:
    """The engine a new server of `protocol` is installed on (in `runtime`: native or docker)."""
    try:
        kind = Protocol(protocol)
        if runtime == RuntimeKind.DOCKER.value and kind in NEW_IN_CONTAINERS:
            return NEW_IN_CONTAINERS[kind]
        return NEW_SERVERS[kind]
    except (ValueError, KeyError):
        known = ", ".join(p.value for p in Protocol)
        raise InvalidInput(f"Unknown protocol {protocol!r}.", hint=f"Known: {known}.") from None


def engine_name(spec: ServerSpec | None = None, *, engine: str = "", protocol: str = "") -> str:
    """The engine a server runs on: the one its row names, or (a row that names none this
    version knows, or a spec made by hand) the one a new server of its protocol gets."""
    runtime = RuntimeKind.NATIVE.value
    if spec is not None:
        engine, protocol, runtime = spec.engine, spec.protocol, spec.runtime
    return engine if engine in ENGINES else engine_of_new(protocol, runtime)


def _registered(engine: str) -> Registered:
    try:
        return ENGINES[engine]
    except KeyError:
        raise InvalidInput(
            f"Unknown engine {engine!r}.", hint=f"Known: {', '.join(ENGINES)}."
        ) from None


def engine_for(engine: str, commands: Commands | None = None) -> Engine:
    """The engine of this name (a server's `engine`). `commands`: where it runs its helper
    commands, for engines that have any (WireGuard: on this machine by default, or in the
    server's container)."""
    return _registered(engine).engine(HOST if commands is None else commands)


def settings_of(spec: ServerSpec) -> Stored:
    """The server's stored settings as its engine's typed model."""
    return _registered(engine_name(spec)).settings.of_dict(spec.settings, spec.name)


def control_ports_of(engine: str, protocol: str, settings: Mapping[str, object]) -> list[int]:
    """The control ports a server's stored settings declare (whether or not its engine serves
    them on TCP now)."""
    name = engine_name(engine=engine, protocol=protocol)
    return _registered(name).settings.control_ports_in(settings)
