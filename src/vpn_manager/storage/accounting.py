"""Usage baselines, totals, hourly history and limit state in the database."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import cast

from sqlalchemy import Table, bindparam, delete, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from vpn_manager.kinds import UserStatus
from vpn_manager.storage.orm import (
    ServerRow,
    UsageBaselineRow,
    UsageHourlyRow,
    UserRow,
    UTCDateTime,
)

# Core tables for the executemany UPDATEs (ORM bulk updates want primary keys in the parameters).
USERS = cast(Table, UserRow.__table__)
BASELINES = cast(Table, UsageBaselineRow.__table__)
HOURLY = cast(Table, UsageHourlyRow.__table__)


async def baselines(session: AsyncSession, server_id: int) -> dict[str, tuple[str, int, int]]:
    result = await (await session.connection()).execute(
        select(
            UsageBaselineRow.key, UsageBaselineRow.epoch, UsageBaselineRow.up, UsageBaselineRow.down
        ).where(UsageBaselineRow.server_id == server_id)
    )
    return {key: (epoch, up, down) for key, epoch, up, down in result.all()}


async def save_baselines(
    session: AsyncSession,
    server_id: int,
    epoch: str,
    fresh: Mapping[str, tuple[int, int]],
    old: Mapping[str, tuple[str, int, int]],
    now: datetime,
) -> None:
    """Store what was just read; forget counters the engine no longer reports."""
    gone = [key for key in old if key not in fresh]
    for start in range(0, len(gone), 500):
        await session.execute(
            delete(UsageBaselineRow).where(
                UsageBaselineRow.server_id == server_id,
                UsageBaselineRow.key.in_(gone[start : start + 500]),
            )
        )
    changed = [
        {"k": key, "e": epoch, "u": up, "d": down, "t": now}
        for key, (up, down) in fresh.items()
        if key in old and old[key] != (epoch, up, down)
    ]
    if changed:
        await (await session.connection()).execute(
            update(BASELINES)
            .where(BASELINES.c.server_id == server_id, BASELINES.c.key == bindparam("k"))
            .values(
                epoch=bindparam("e"),
                up=bindparam("u"),
                down=bindparam("d"),
                updated_at=bindparam("t"),
            ),
            changed,
        )
    added = [
        {
            "server_id": server_id,
            "key": key,
            "epoch": epoch,
            "up": up,
            "down": down,
            "updated_at": now,
        }
        for key, (up, down) in fresh.items()
        if key not in old
    ]
    for start in range(0, len(added), 500):
        await session.execute(insert(UsageBaselineRow), added[start : start + 500])


async def add_usage(
    session: AsyncSession, server_id: int, deltas: Mapping[int, tuple[int, int]], now: datetime
) -> None:
    """Add grown bytes to users' totals and period usage, and to this hour's history."""
    if not deltas:
        return
    params = [{"uid": uid, "du": up, "dd": down, "t": now} for uid, (up, down) in deltas.items()]
    connection = await session.connection()  # Core executemany, not an ORM bulk update
    await connection.execute(
        update(USERS)
        .where(USERS.c.id == bindparam("uid"))
        .values(
            upload_bytes=USERS.c.upload_bytes + bindparam("du"),
            download_bytes=USERS.c.download_bytes + bindparam("dd"),
            period_upload_bytes=USERS.c.period_upload_bytes + bindparam("du"),
            period_download_bytes=USERS.c.period_download_bytes + bindparam("dd"),
            # Typed, so the time is stored like every other (naive UTC): an untyped parameter
            # inside coalesce() bypasses UTCDateTime and kept "+00:00" in the text.
            first_used_at=func.coalesce(USERS.c.first_used_at, bindparam("t", type_=UTCDateTime())),
        ),
        params,
    )
    hour = now.replace(minute=0, second=0, microsecond=0)
    existing = set(
        (
            await session.execute(
                select(UsageHourlyRow.user_id).where(
                    UsageHourlyRow.server_id == server_id,
                    UsageHourlyRow.hour == hour,
                    UsageHourlyRow.user_id.in_(list(deltas)),
                )
            )
        ).scalars()
    )
    grow = [p for p in params if p["uid"] in existing]
    if grow:
        await connection.execute(
            update(HOURLY)
            .where(
                HOURLY.c.user_id == bindparam("uid"),
                HOURLY.c.server_id == server_id,
                HOURLY.c.hour == hour,
            )
            .values(up=HOURLY.c.up + bindparam("du"), down=HOURLY.c.down + bindparam("dd")),
            [{"uid": p["uid"], "du": p["du"], "dd": p["dd"]} for p in grow],
        )
    new = [
        {"user_id": uid, "server_id": server_id, "hour": hour, "up": up, "down": down}
        for uid, (up, down) in deltas.items()
        if uid not in existing
    ]
    if new:
        await session.execute(insert(UsageHourlyRow), new)


@dataclass(frozen=True)
class LimitView:
    id: int
    name: str
    status: str
    created_at: datetime
    quota_bytes: int | None
    reset_period: str
    period_up: int
    period_down: int
    period_started_at: datetime | None
    expires_at: datetime | None
    expire_after_days: int | None
    first_used_at: datetime | None


async def limit_view(
    session: AsyncSession, user_ids: Sequence[int] | None = None
) -> list[LimitView]:
    """The users whose limits can change their status (disabled ones are left alone): all, or
    those of `user_ids`."""
    query = (
        select(
            UserRow.id,
            UserRow.name,
            UserRow.status,
            UserRow.created_at,
            UserRow.quota_bytes,
            UserRow.reset_period,
            UserRow.period_upload_bytes,
            UserRow.period_download_bytes,
            UserRow.period_started_at,
            UserRow.expires_at,
            UserRow.expire_after_days,
            UserRow.first_used_at,
        )
        .where(UserRow.status != UserStatus.DISABLED.value)
        .order_by(UserRow.id)
    )
    if user_ids is None:
        return [LimitView(*tuple(row)) for row in (await session.execute(query)).all()]
    found: list[LimitView] = []
    for start in range(0, len(user_ids), 500):
        chunk = list(user_ids[start : start + 500])
        result = await session.execute(query.where(UserRow.id.in_(chunk)))
        found.extend(LimitView(*tuple(row)) for row in result.all())
    return found


async def device_limits(session: AsyncSession) -> dict[int, tuple[str, int]]:
    """Active users with a device limit: id → (name, limit)."""
    result = await session.execute(
        select(UserRow.id, UserRow.name, UserRow.device_limit).where(
            UserRow.status == UserStatus.ACTIVE.value, UserRow.device_limit > 0
        )
    )
    return {user_id: (name, limit or 0) for user_id, name, limit in result.all()}


async def start_period(session: AsyncSession, user_id: int, start: datetime) -> None:
    await session.execute(
        update(UserRow)
        .where(UserRow.id == user_id)
        .values(period_upload_bytes=0, period_download_bytes=0, period_started_at=start)
    )


async def set_expiry(session: AsyncSession, user_id: int, expires_at: datetime) -> None:
    await session.execute(
        update(UserRow).where(UserRow.id == user_id).values(expires_at=expires_at)
    )


async def set_statuses(
    session: AsyncSession, statuses: Mapping[int, UserStatus], now: datetime
) -> None:
    for user_id, status in statuses.items():
        await session.execute(
            update(UserRow).where(UserRow.id == user_id).values(status=status.value, updated_at=now)
        )


async def prune_hourly(session: AsyncSession, before: datetime) -> int:
    result = await (await session.connection()).execute(
        delete(HOURLY).where(HOURLY.c.hour < before)
    )
    return int(result.rowcount or 0)


async def history(
    session: AsyncSession,
    since: datetime | None,
    until: datetime | None,
    user: str | None = None,
) -> list[tuple[datetime, str, str, int, int]]:
    """(hour, user, server, up, down) rows, oldest first; only `user`'s when given."""
    query = (
        select(
            UsageHourlyRow.hour,
            UserRow.name,
            ServerRow.name,
            UsageHourlyRow.up,
            UsageHourlyRow.down,
        )
        .join(UserRow, UserRow.id == UsageHourlyRow.user_id)
        .join(ServerRow, ServerRow.id == UsageHourlyRow.server_id)
        .order_by(UsageHourlyRow.hour, UserRow.name, ServerRow.name)
    )
    if since is not None:
        query = query.where(UsageHourlyRow.hour >= since)
    if until is not None:
        query = query.where(UsageHourlyRow.hour < until)
    if user is not None:
        query = query.where(UserRow.name == user)
    return [tuple(row) for row in (await session.execute(query)).all()]  # type: ignore[misc]


@dataclass(frozen=True)
class UserTotals:
    name: str
    status: str
    upload_bytes: int
    download_bytes: int


async def user_totals(session: AsyncSession) -> list[UserTotals]:
    """Every user's lifetime totals, by name (the metrics' view: plain rows, no read models)."""
    result = await session.execute(
        select(UserRow.name, UserRow.status, UserRow.upload_bytes, UserRow.download_bytes).order_by(
            UserRow.name
        )
    )
    return [UserTotals(*row) for row in result.all()]
