"""The engine contract: what every VPN program we drive must offer, and the data it is given."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

from vpn_manager.engines.linkdata import LinkData
from vpn_manager.specs import Client, ServerSpec

if TYPE_CHECKING:
    from vpn_manager.models.server import ServerChange, ServerCreate

# What a server's clients connect over (the ports a container publishes).
Transport = Literal["tcp", "udp"]


@dataclass(frozen=True)
class Files:
    """Where a server's rendered config and logs live."""

    config: Path
    access_log: Path
    error_log: Path


@dataclass(frozen=True)
class Counter:
    """One traffic counter as an engine reports it: `key` names a counter that only grows while
    the engine process lives (a user's counter, or one connection's); `user` is the engine-side
    identity it belongs to (Client.email, a proxy user name, or a WireGuard public key)."""

    key: str
    user: str
    up: int
    down: int


class Follower(Protocol):
    """An engine's live traffic events, followed between two polls by the long-running service
    where the engine's polled counters alone can miss some (sing-box forgets closed connections
    after a handful). take() hands over what was followed, as counters, for the next poll."""

    def start(self) -> None:
        """Begin following in the background (on the running event loop)."""
        ...

    async def stop(self) -> None: ...

    def take(self) -> list[Counter]:
        """Counters for every connection followed since the last take(); closed ones are given
        once (their final totals), then forgotten."""
        ...


@dataclass(frozen=True)
class Session:
    """A client connected to a server as the engine reports it: the engine-side identity, the
    client's IP address and when the engine first saw it from there (Unix seconds)."""

    user: str
    ip: str
    since: float


@dataclass(frozen=True)
class Changed:
    """A server's settings and secret after a change (Engine.change), as stored; `remake`:
    every user's credentials must be made again, because the old ones cannot work with the
    new settings (a Shadowsocks cipher whose keys are of another size or kind)."""

    settings: dict[str, Any]
    secret: dict[str, Any]
    remake: bool = False


@dataclass(frozen=True)
class Health:
    port_open: bool
    api_ok: bool
    detail: str = ""

    @property
    def healthy(self) -> bool:
        return self.port_open and self.api_ok


class Engine(Protocol):
    """A VPN engine. Implementations live one per folder (engines/xray/…) and are registered in
    engines/registry.py."""

    name: str

    def new_server(
        self, create: ServerCreate, ports: Callable[[], int], keys_dir: Path
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """Settings (public) and secrets (private keys) for a new server, generated once.
        `ports` hands out free 127.0.0.1 ports for control APIs; `keys_dir` is the server's own
        private directory for files such as certificates."""
        ...

    def rotate_keys(self, spec: ServerSpec) -> tuple[dict[str, Any], dict[str, Any]]:
        """New keys for a server; returns (settings, secret)."""
        ...

    def change(self, spec: ServerSpec, change: ServerChange, keys_dir: Path) -> Changed:
        """The server's settings and secret with `change` made (`vpn server set`: the port and
        the host are the caller's). InvalidInput, with nothing written, for a setting the
        protocol does not have or a value it cannot take; a certificate given is kept in
        `keys_dir` under a name of its own, so the one in use stays until the change holds."""
        ...

    def advice(self, spec: ServerSpec) -> list[str]:
        """Plain sentences about how the server is set up that make it easier to find and
        block (a REALITY target everyone uses, a port no real site uses), each with the fix."""
        ...

    def new_credential(
        self,
        spec: ServerSpec,
        password: str | None = None,
        taken: Sequence[dict[str, Any]] = (),
    ) -> dict[str, Any]:
        """A new user's credentials on this server; `password` where the user may choose one
        (proxies); `taken` holds the other credentials on the server (for addresses that must
        not clash). Raises InvalidInput when a given password does not fit."""
        ...

    async def users(self, spec: ServerSpec) -> set[str] | None:
        """The users the running engine has now, as it names them (Client.email, or a WireGuard
        peer's public key); None where the engine cannot tell (its users are in its config)."""
        ...

    def control_ports(self, spec: ServerSpec) -> list[int]:
        """The TCP ports of the engine's control APIs on `control_listen` (an API on a unix socket
        in `control_dir` is not listed): the service keeps them to our own uid (engines/guard.py)
        and the Docker runtime publishes them on the host's 127.0.0.1."""
        ...

    def transports(self, spec: ServerSpec) -> tuple[Transport, ...]:
        """What the server's clients connect over: the server's port is published for these."""
        ...

    def live_users(self, spec: ServerSpec) -> bool:
        """Can users be added and removed on the running engine without a reload?"""
        ...

    def cuts_sessions(self, spec: ServerSpec) -> bool:
        """Can a removed user's open connections be cut while the engine runs? Where not, a
        removal restarts it (additions stay live)."""
        ...

    async def reload(self, spec: ServerSpec, pid: int) -> None:
        """Make the running engine read its config file again (for engines without live users)."""
        ...

    def render(self, spec: ServerSpec, clients: list[Client], files: Files) -> str:
        """The engine's config file for this server and these clients."""
        ...

    def before_start(self, spec: ServerSpec, clients: list[Client], files: Files) -> None:
        """Called after the engine stopped and just before it starts: files the start reads
        besides the config (sing-box's Shadowsocks users); most engines need none."""
        ...

    def argv(self, spec: ServerSpec, config: Path) -> list[str]:
        """How to run the engine on a rendered config."""
        ...

    async def validate(self, text: str, scratch: Path) -> None:
        """Ask the real engine whether it accepts a config; raise EngineError if not."""
        ...

    async def probe(self, spec: ServerSpec) -> Health:
        """Is the server's port accepting and its control API answering?"""
        ...

    def own_log_line(self, line: str) -> bool:
        """Did our own use of the engine write this log line (a call to its control API, as a
        probe or a poll makes), rather than a client? `vpn server logs` leaves such lines out."""
        ...

    async def after_start(self, spec: ServerSpec, clients: list[Client]) -> None:
        """Whatever a freshly started (and healthy) engine needs before it serves its users."""
        ...

    async def after_stop(self, spec: ServerSpec) -> None:
        """Undo what after_start set up outside the engine process (firewall rules)."""
        ...

    async def add_clients(self, spec: ServerSpec, clients: list[Client]) -> None:
        """Add users to the running engine without a restart."""
        ...

    async def remove_clients(self, spec: ServerSpec, clients: list[Client], files: Files) -> int:
        """Remove users from the running engine and cut the connections they have open
        (cut_clients); return how many connections were cut."""
        ...

    async def cut_clients(self, spec: ServerSpec, clients: list[Client], files: Files) -> int:
        """Cut the open connections of users the running engine no longer has (what a removal
        killed before its cut left open); return how many were cut. Users without any are
        no error."""
        ...

    async def counters(self, spec: ServerSpec) -> list[Counter]:
        """The engine's traffic counters, read without resetting them."""
        ...

    def follower(self, spec: ServerSpec) -> Follower | None:
        """Something that follows the running server's traffic between polls, where counters()
        alone can miss some; None where they cannot."""
        ...

    async def sessions(self, spec: ServerSpec) -> list[Session] | None:
        """The open client connections with their client IPs (one Session per user and IP);
        None where the engine cannot tell which user a client IP belongs to."""
        ...

    async def cut_ips(self, spec: ServerSpec, user: str, ips: set[str], files: Files) -> int:
        """Close `user`'s open connections from these client IPs (the user stays enabled);
        return how many were closed."""
        ...

    def link_data(self, spec: ServerSpec, client: Client) -> LinkData:
        """What the client's link needs (vpn_manager.links writes it as a link or a config)."""
        ...
