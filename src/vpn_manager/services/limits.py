"""Limits: quota periods, data quotas and expiry dates.

A user over their data quota for the current period becomes over-quota, an account past its
expiry expired; both are removed from their engines and their open connections cut (through
ServerService.resync, the same path as `vpn user disable`). A new period, a raised quota or an
extended expiry makes them active again. When a period starts: periods.py.

The service's rounds check every user (Limits.enforce); a change to some users (`vpn user
update`, `enable`) checks those at once, in its own transaction (check_limits), so that nobody
waits for a round that may never come.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, tzinfo
from typing import TYPE_CHECKING

from vpn_manager import storage
from vpn_manager.kinds import UserStatus
from vpn_manager.services.periods import days_after, period_start

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

    from vpn_manager.services.servers import Pending, ServerService
    from vpn_manager.storage.accounting import LimitView


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass
class EnforceReport:
    limited: dict[str, str] = field(default_factory=dict)  # user → new status
    restored: list[str] = field(default_factory=list)
    reset: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)  # server → why its engine lags


@dataclass
class Checked:
    """What checking users' limits found: the statuses their limits call for (by user id, only
    those that change, with their names), and who started a new period with usage behind them."""

    statuses: dict[int, UserStatus] = field(default_factory=dict)
    names: dict[int, str] = field(default_factory=dict)
    reset: list[str] = field(default_factory=list)


async def check_limits(
    session: AsyncSession, now: datetime, zone: tzinfo, user_ids: Sequence[int] | None = None
) -> Checked:
    """Within the caller's transaction: start the periods that are due, fix first-use expiries,
    and find the status each user's limits call for (all users, or those of `user_ids`; a
    disabled user stays disabled). The caller writes the statuses (storage.accounting
    .set_statuses) and brings the engines in line (resync)."""
    checked = Checked()
    for user in await storage.accounting.limit_view(session, user_ids):
        target = await _check_one(session, user, now, zone, checked)
        if target is not None:
            checked.statuses[user.id] = target
            checked.names[user.id] = user.name
    return checked


async def _check_one(
    session: AsyncSession, user: LimitView, now: datetime, zone: tzinfo, checked: Checked
) -> UserStatus | None:
    start = period_start(user.reset_period, now, zone, user.period_started_at or user.created_at)
    used = user.period_up + user.period_down
    if start is not None and (user.period_started_at is None or user.period_started_at < start):
        if user.period_started_at is not None and used:
            checked.reset.append(user.name)
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
        return UserStatus.EXPIRED
    if status is UserStatus.ACTIVE and over:
        return UserStatus.OVER_QUOTA
    if status is UserStatus.EXPIRED and not expired:
        return UserStatus.OVER_QUOTA if over else UserStatus.ACTIVE
    if status is UserStatus.OVER_QUOTA and not over:
        return UserStatus.EXPIRED if expired else UserStatus.ACTIVE
    return None


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
        """Apply periods, quotas and expiry dates to every user; returns who changed."""
        from vpn_manager.services.servers import pending_of  # loaded with ServerService

        report = EnforceReport()
        now = self.clock()
        pending: dict[int, Pending] = {}
        async with self.db.session() as session:
            checked = await check_limits(session, now, self.zone)
            report.reset = checked.reset
            if not checked.statuses:
                return report
            before = await self.servers.clients_before(session, list(checked.statuses))
            await storage.accounting.set_statuses(session, checked.statuses, now)
            await self.servers.resync(session, before)
            pending = pending_of(session)
            for user_id, status in checked.statuses.items():
                if status is UserStatus.ACTIVE:
                    report.restored.append(checked.names[user_id])
                else:
                    report.limited[checked.names[user_id]] = status.value
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
