"""The TUI's one door to the services: the same Services the CLI builds (services/root.py), over
one database that stays open while the app runs."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from vpn_manager.services.root import Services
from vpn_manager.settings import Paths, Settings

if TYPE_CHECKING:
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

    def applied(self) -> list[str]:
        """What the last user changes did on each server, once (then forgotten)."""
        if self._services is None:
            return []
        return self._services.take_applied()

    async def close(self) -> None:
        if self._services is not None:
            await self._services.close()
            self._services = None
