"""The composition root: the one place that builds what a process works with (paths, database,
services) from the settings. The CLI (cli/context.py), the TUI (tui/backend.py), the service
process (daemon/main.py) and `vpn monitor` each build one Services here.

The service process gets its settings as a ServiceConfig (plain values through a pipe) and never
loads pydantic; nothing here imports it at run time. Each service is built when first used, and
none loads SQLAlchemy before its first query (storage/__init__.py). The services that reach
servers (servers, limits, traffic, rounds, subscriptions) bring the engines and runtimes, some
35 modules: they are imported in their accessors below, the one lazy block of this module, so
that commands that reach no server (`vpn user list|add`, the TUI's first screen) never load them.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from datetime import UTC, datetime, tzinfo
from typing import TYPE_CHECKING, Any

from vpn_manager.labels import DEFAULT_TEMPLATE
from vpn_manager.paths import Paths
from vpn_manager.services.apikeys import ApiKeyService
from vpn_manager.services.audit import AuditLog
from vpn_manager.services.history import UsageHistory
from vpn_manager.services.plans import PlanService
from vpn_manager.services.tokens import TokenSeal
from vpn_manager.services.users import UserService
from vpn_manager.storage import Database

if TYPE_CHECKING:
    from vpn_manager.runtimes.base import DockerDefaults
    from vpn_manager.services.limits import Limits
    from vpn_manager.services.rounds import Rounds
    from vpn_manager.services.servers import Applied, ServerService
    from vpn_manager.services.subscriptions import Subscriptions
    from vpn_manager.services.traffic import Traffic
    from vpn_manager.settings import DockerSshSettings, Settings

Clock = Callable[[], datetime]

# How a user change reached each server (ServerService.applied), as the front ends say it.
APPLIED_WORDS = {
    "live": "applied live",
    "reloaded": "reloaded: open connections were reset",
    "recreated": "container recreated: open connections were reset",
    "restarted": "restarted to cut the removed users' connections: open connections were reset",
    "saved": "not running; the change takes effect when it starts",
    "started": "was down while it should run: started with the change",
}


def utcnow() -> datetime:
    return datetime.now(UTC)


def applied_note(applied: Applied) -> str:
    """One line saying how a user change reached one server."""
    return f"{applied.server}: {APPLIED_WORDS.get(applied.how, applied.how)}."


@dataclasses.dataclass(frozen=True)
class DockerPlain:
    """The settings' `docker` section as plain values (a runtimes.base.DockerDefaults)."""

    host: str | None
    images: dict[str, str]
    ssh_values: dict[str, Any] = dataclasses.field(default_factory=dict)

    def image(self, setting: str) -> str:
        return self.images[setting]

    @property
    def ssh(self) -> DockerSshSettings:
        """Built only when a remote engine is reached (which loads pydantic and the SDK)."""
        from vpn_manager.settings import DockerSshSettings

        return DockerSshSettings(**self.ssh_values)


@dataclasses.dataclass(frozen=True)
class ServiceConfig:
    """What the service reads of the settings, validated by the CLI and kept as plain values.
    It reaches the service process through a pipe, not argv or the environment, since the
    database URL may hold a password; that process then never loads pydantic (about 11 MB)."""

    database_url: str | None
    busy_timeout_ms: int
    connect_timeout_s: float
    timezone: str
    device_ban_s: int
    docker: DockerPlain

    @classmethod
    def from_settings(cls, settings: Settings) -> ServiceConfig:
        return cls(
            database_url=settings.database.url,
            busy_timeout_ms=settings.database.busy_timeout_ms,
            connect_timeout_s=settings.database.connect_timeout_s,
            timezone=settings.timezone,
            device_ban_s=settings.service.device_ban_s,
            docker=DockerPlain(
                settings.docker.host,
                settings.docker.images.model_dump(),
                settings.docker.ssh.model_dump(),
            ),
        )

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, text: str) -> ServiceConfig:
        data = json.loads(text)
        return cls(**{**data, "docker": DockerPlain(**data["docker"])})


class Services:
    """The services of one process over one database, each built on first use. One
    ServerService for the whole life of the object: it remembers the engine processes it started
    and how user changes reached each server (`take_applied`)."""

    def __init__(
        self,
        paths: Paths,
        db: Database,
        *,
        docker: DockerDefaults | None = None,
        zone: tzinfo = UTC,
        device_ban_s: int = 60,
        clock: Clock = utcnow,
        link_label: str = DEFAULT_TEMPLATE,
    ) -> None:
        self.paths = paths
        self.db = db
        self.docker = docker
        self.zone = zone
        self.device_ban_s = device_ban_s
        self.clock = clock
        self.link_label = link_label  # the settings' links.label: how links name themselves
        self._servers: ServerService | None = None
        self._api_keys: ApiKeyService | None = None

    @classmethod
    def from_settings(cls, settings: Settings, paths: Paths, clock: Clock = utcnow) -> Services:
        """For the CLI and the TUI, which hold the validated settings."""
        return cls(
            paths,
            Database.from_settings(settings, paths),
            docker=settings.docker,
            zone=settings.zone,
            device_ban_s=settings.service.device_ban_s,
            clock=clock,
            link_label=settings.links.label,
        )

    @classmethod
    def from_config(cls, config: ServiceConfig, paths: Paths) -> Services:
        """For the service process, which holds the settings as plain values."""
        from zoneinfo import ZoneInfo

        return cls(
            paths,
            Database.of_home(
                paths, config.database_url, config.busy_timeout_ms, config.connect_timeout_s
            ),
            docker=config.docker,
            zone=ZoneInfo(config.timezone),
            device_ban_s=config.device_ban_s,
        )

    @property
    def users(self) -> UserService:
        return UserService(
            self.db,
            clock=self.clock,
            servers=lambda: self.servers,
            seal=TokenSeal(self.paths.subscription_key),
            zone=self.zone,
        )

    @property
    def plans(self) -> PlanService:
        return PlanService(self.db, clock=self.clock)

    @property
    def subscriptions(self) -> Subscriptions:
        from vpn_manager.services.subscriptions import Subscriptions

        return Subscriptions(self.db, lambda: self.servers)

    @property
    def history(self) -> UsageHistory:
        return UsageHistory(self.db)

    @property
    def api_keys(self) -> ApiKeyService:
        """One for the object's life: it remembers which keys' last use it noted this minute."""
        if self._api_keys is None:
            self._api_keys = ApiKeyService(self.db, clock=self.clock)
        return self._api_keys

    @property
    def audit(self) -> AuditLog:
        return AuditLog(self.db, clock=self.clock)

    # The services that reach servers, imported on first use (see the module's docstring).
    @property
    def servers(self) -> ServerService:
        if self._servers is None:
            from vpn_manager.services.servers import ServerService

            self._servers = ServerService(
                self.db,
                self.paths,
                clock=self.clock,
                docker=self.docker,
                link_label=self.link_label,
            )
        return self._servers

    @property
    def limits(self) -> Limits:
        from vpn_manager.services.limits import Limits

        return Limits(self.servers, self.clock, self.zone)

    def traffic(self) -> Traffic:
        """Counting on its own (`vpn monitor traffic`), without following engines' events."""
        from vpn_manager.services.traffic import Traffic

        return Traffic(self.servers, self.clock)

    def rounds(self, follow: bool) -> Rounds:
        """The service's rounds; `follow` for the long-running service (traffic.Traffic)."""
        from vpn_manager.services.rounds import Rounds

        return Rounds(self.servers, self.clock, self.zone, self.device_ban_s, follow=follow)

    def take_applied(self) -> list[str]:
        """How the user changes made since the last call reached each server, one line each."""
        if self._servers is None:
            return []
        notes = [applied_note(applied) for applied in self._servers.applied]
        self._servers.applied.clear()
        return notes

    async def close(self) -> None:
        await self.db.close()
