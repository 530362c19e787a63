"""Limits: quota periods, data quotas and expiry dates.

A user over their data quota for the current period becomes over-quota, an account past its
expiry expired; both are removed from their engines and their open connections cut (through
ServerService.resync, the same path as `vpn user disable`). A new period, a raised quota or an
extended expiry makes them active again. When a period starts: periods.py.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, tzinfo

from vpn_manager import storage
from vpn_manager.kinds import UserStatus
from vpn_manager.services.periods import days_after, period_start
from vpn_manager.services.servers import Pending, ServerService, pending_of, utcnow


@dataclass
class EnforceReport:
    limited: dict[str, str] = field(default_factory=dict)  # user → new status
    restored: list[str] = field(default_factory=list)
    reset: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)  # server → why its engine lags


class Limits:
    """Applies periods, quotas and expiry dates (in `zone` for calendar periods)."""

    def __init__(
        self,
        servers: ServerService,
        clock: Callable[[], datetime] = utcnow,
        zone: tzinfo = UTC,
    ) -> None:
        self.servers = servers
        self.db = servers.db
        self.clock = clock
        self.zone = zone

    async def enforce(self) -> EnforceReport:
        """Apply periods, quotas and expiry dates; returns who changed."""
        report = EnforceReport()
        now = self.clock()
        pending: dict[int, Pending] = {}
        async with self.db.session() as session:
            users = await storage.accounting.limit_view(session)
            targets: dict[int, UserStatus] = {}
            for user in users:
                start = period_start(
                    user.reset_period, now, self.zone, user.period_started_at or user.created_at
                )
                used = user.period_up + user.period_down
                if start is not None and (
                    user.period_started_at is None or user.period_started_at < start
                ):
                    if user.period_started_at is not None and used:
                        report.reset.append(user.name)
                    await storage.accounting.start_period(session, user.id, start)
                    used = 0
                expires_at = user.expires_at
                if expires_at is None and user.expire_after_days and user.first_used_at:
                    expires_at = days_after(user.first_used_at, user.expire_after_days)
                    await storage.accounting.set_expiry(session, user.id, expires_at)
                over = user.quota_bytes is not None and used >= user.quota_bytes
                expired = expires_at is not None and expires_at <= now
                status = UserStatus(user.status)
                if status is UserStatus.ACTIVE and expired:
                    targets[user.id] = UserStatus.EXPIRED
                elif status is UserStatus.ACTIVE and over:
                    targets[user.id] = UserStatus.OVER_QUOTA
                elif status is UserStatus.EXPIRED and not expired:
                    targets[user.id] = UserStatus.OVER_QUOTA if over else UserStatus.ACTIVE
                elif status is UserStatus.OVER_QUOTA and not over:
                    targets[user.id] = UserStatus.EXPIRED if expired else UserStatus.ACTIVE
            if not targets:
                return report
            names = {u.id: u.name for u in users}
            before = await self.servers.clients_before(session, list(targets))
            await storage.accounting.set_statuses(session, targets, now)
            await self.servers.resync(session, before)
            pending = pending_of(session)
            for user_id, status in targets.items():
                if status is UserStatus.ACTIVE:
                    report.restored.append(names[user_id])
                else:
                    report.limited[names[user_id]] = status.value
        # Committed: now the engines (a server that fails is retried by converge next round).
        report.failed = await self.servers.settle(pending, keep_going=True)
        return report

    async def reset_usage(self, names: list[str]) -> None:
        """Start a new period for these users now (and let over-quota ones back in)."""
        async with self.db.session() as session:
            ids = await storage.users.ids_for(session, names)
            for user_id in ids.values():
                await storage.accounting.start_period(session, user_id, self.clock())
        await self.enforce()
