"""The TUI's one door to the services: the same Services the CLI builds (services/root.py), over
one database that stays open while the app runs."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from vpn_manager.models import UserUpdate
from vpn_manager.services.root import Services
from vpn_manager.settings import Paths, Settings

if TYPE_CHECKING:
    from vpn_manager.models import Plan, User
    from vpn_manager.models.server import Server, ServerChange
    from vpn_manager.services.history import UsageHistory
    from vpn_manager.services.servers import ServerService
    from vpn_manager.services.users import UserService

Clock = Callable[[], datetime]


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass
class Backend:
    """Paths, settings and the services of one TUI session (built on first use, from the
    settings as they are then)."""

    paths: Paths
    settings: Settings
    clock: Clock = utcnow
    _services: Services | None = None

    @property
    def services(self) -> Services:
        if self._services is None:
            self._services = Services.from_settings(self.settings, self.paths, self.clock)
        return self._services

    @property
    def servers(self) -> ServerService:
        """One ServerService for the session: it remembers the engine processes it started."""
        return self.services.servers

    @property
    def users(self) -> UserService:
        return self.services.users

    @property
    def history(self) -> UsageHistory:
        return self.services.history

    # -- the actions that are one `vpn` command each, where the TUI needs more than one call ----
    async def grant(self, names: Sequence[str], servers: Sequence[str]) -> dict[str, list[str]]:
        """`vpn user grant NAME… --server S…`: all or nothing, one apply per server; returns,
        by server, the users who were new there."""
        pairs = await self.servers.grant_many(names, servers)
        return {s: [p.user for p in pairs if p.server == s and p.changed] for s in servers}

    async def revoke(self, holders: Mapping[str, Sequence[str]]) -> None:
        """`vpn user revoke NAME… --server S…` (server -> the users who hold access there): all
        or nothing, one apply per server; a user not on a server is left as they are."""
        names = list(dict.fromkeys(n for held in holders.values() for n in held))
        await self.servers.revoke_many(names, list(holders))

    async def reset_usage(self, names: Sequence[str]) -> None:
        """`vpn user reset-usage`: a new quota period now; over-quota users get back in."""
        await self.services.limits.reset_usage(list(names))

    async def extend(self, names: Sequence[str], span: str) -> list[User]:
        """`vpn user update NAME… --extend SPAN`: each expiry moved on by `span` from the later
        of now and the current expiry; a user it lets back in gets in at once."""
        return await self.users.update_many(list(names), UserUpdate(extend=span))

    async def plans(self) -> list[Plan]:
        """`vpn plan list`."""
        return await self.services.plans.list()

    async def give_plan(self, names: Sequence[str], plan: str) -> list[User]:
        """`vpn user update NAME… --plan PLAN`: the plan's quota, reset period, days and device
        limit, applied at once."""
        return await self.users.update_many(list(names), UserUpdate(plan=plan))

    async def rotate_keys(self, server: str) -> Server:
        """`vpn server rotate-keys`: every user's link changes."""
        return (await self.servers.rotate_keys(server)).server

    async def change_server(self, server: str, change: ServerChange) -> Server:
        """`vpn server set`: only the values the change holds (None keeps a value)."""
        return (await self.servers.update(server, change)).server

    def applied(self) -> list[str]:
        """What the last user changes did on each server, once (then forgotten)."""
        if self._services is None:
            return []
        return self._services.take_applied()

    async def close(self) -> None:
        if self._services is not None:
            await self._services.close()
            self._services = None
