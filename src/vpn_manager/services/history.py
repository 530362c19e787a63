"""The hourly usage history, read: what `vpn stats` exports and the TUI dashboard charts (kept
for traffic.HISTORY_DAYS days; written by traffic.py)."""

from __future__ import annotations

from datetime import datetime, timedelta

from vpn_manager import storage
from vpn_manager.storage import Database

HourRow = tuple[datetime, str, str, int, int]  # hour, user, server, bytes up, bytes down


class UsageHistory:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def hours(
        self, since: datetime | None, until: datetime | None, user: str | None = None
    ) -> list[HourRow]:
        """Traffic per hour, user and server from `since` (inclusive) to `until` (exclusive),
        oldest first; only `user`'s when given."""
        async with self.db.reading() as session:
            return await storage.accounting.history(session, since, until, user)

    async def last_day(self, now: datetime) -> list[int]:
        """Bytes per hour over all users and servers, the last 24 hours up to `now`, oldest
        first."""
        hour0 = now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=23)
        hourly = [0] * 24
        for hour, _user, _server, up, down in await self.hours(hour0, None):
            index = int((hour - hour0).total_seconds() // 3600)
            if 0 <= index < 24:
                hourly[index] += up + down
        return hourly
