"""The TUI's one door to the services: the same UserService and ServerService the CLI builds in
cli/context.py, over one database that stays open while the app runs."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from vpn_manager.settings import Paths, Settings
from vpn_manager.storage import Database

if TYPE_CHECKING:
    from vpn_manager.services.servers import ServerService
    from vpn_manager.services.users import UserService

Clock = Callable[[], datetime]

# How a user change reached each server: the same words `vpn user …` prints.
APPLIED_WORDS = {
    "live": "applied live",
    "reloaded": "reloaded: open connections were reset",
    "recreated": "container recreated: open connections were reset",
    "saved": "not running; the change takes effect when it starts",
    "started": "was down while it should run: started with the change",
}


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass
class Backend:
    """Paths, settings, the database and the services of one TUI session."""

    paths: Paths
    settings: Settings
    clock: Clock = utcnow
    _db: Database | None = None
    _servers: ServerService | None = None

    @property
    def db(self) -> Database:
        if self._db is None:
            self._db = Database.from_settings(self.settings, self.paths)
        return self._db

    @property
    def servers(self) -> ServerService:
        """One ServerService for the session: it remembers the engine processes it started."""
        if self._servers is None:
            from vpn_manager.services.servers import ServerService

            self._servers = ServerService(
                self.db, self.paths, clock=self.clock, docker=self.settings.docker
            )
        return self._servers

    @property
    def users(self) -> UserService:
        from vpn_manager.services.users import UserService

        return UserService(self.db, clock=self.clock, servers=lambda: self.servers)

    def applied(self) -> list[str]:
        """What the last user changes did on each server, once (then forgotten)."""
        if self._servers is None:
            return []
        notes = [f"{a.server}: {APPLIED_WORDS.get(a.how, a.how)}." for a in self._servers.applied]
        self._servers.applied.clear()
        return notes

    async def close(self) -> None:
        if self._db is not None:
            await self._db.close()
            self._db = None
