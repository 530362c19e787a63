"""Plan rows in and out of the database, and which users hold a plan. Every function runs inside
the caller's session."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from vpn_manager.errors import Conflict, NotFound, quoted
from vpn_manager.models import Plan, PlanCreate
from vpn_manager.storage.orm import PlanRow, UserRow

_COLUMNS = [c for c in PlanRow.__table__.columns if c.key != "id"]


def _missing(name: str) -> NotFound:
    return NotFound(f"There is no plan named {quoted(name)}.", hint="See `vpn plan list`.")


def _users_per_plan() -> Any:
    return (
        select(UserRow.plan_id, func.count().label("users"))
        .where(UserRow.plan_id.is_not(None))
        .group_by(UserRow.plan_id)
        .subquery()
    )


def _query() -> Any:
    counts = _users_per_plan()
    return select(*_COLUMNS, func.coalesce(counts.c.users, 0).label("users")).outerjoin(
        counts, counts.c.plan_id == PlanRow.id
    )


async def insert_plan(session: AsyncSession, create: PlanCreate, now: datetime) -> Plan:
    if await _row_id(session, create.name) is not None:
        raise Conflict(
            f"A plan named {create.name!r} already exists.",
            hint=f"Pick another name, or change it: vpn plan update {create.name} …",
        )
    await session.execute(
        insert(PlanRow).values(**create.model_dump(), created_at=now, updated_at=now)
    )
    return await get_plan(session, create.name)


async def list_plans(session: AsyncSession) -> list[Plan]:
    rows = (await session.execute(_query().order_by(PlanRow.name))).mappings().all()
    return [Plan.model_validate(dict(row)) for row in rows]


async def get_plan(session: AsyncSession, name: str) -> Plan:
    row = (await session.execute(_query().where(PlanRow.name == name))).mappings().first()
    if row is None:
        raise _missing(name)
    return Plan.model_validate(dict(row))


async def _row_id(session: AsyncSession, name: str) -> int | None:
    return (await session.execute(select(PlanRow.id).where(PlanRow.name == name))).scalar()


async def plan_id(session: AsyncSession, name: str) -> int:
    """The plan's row id; NotFound if there is none of that name."""
    found = await _row_id(session, name)
    if found is None:
        raise _missing(name)
    return found


async def update_plan(
    session: AsyncSession, name: str, changes: dict[str, Any], now: datetime
) -> Plan:
    found = await plan_id(session, name)
    await session.execute(
        update(PlanRow).where(PlanRow.id == found).values(**changes, updated_at=now)
    )
    return await get_plan(session, name)


async def holders(session: AsyncSession, name: str) -> list[str]:
    """The names of the users who hold the plan, in order."""
    found = await plan_id(session, name)
    result = await session.execute(
        select(UserRow.name).where(UserRow.plan_id == found).order_by(UserRow.name)
    )
    return list(result.scalars())


async def delete_plan(session: AsyncSession, name: str) -> None:
    """Remove the plan; its users keep their limits and lose the reference (set here as well
    as by the foreign key, which SQLite enforces only when asked to)."""
    found = await plan_id(session, name)
    await session.execute(update(UserRow).where(UserRow.plan_id == found).values(plan_id=None))
    await session.execute(delete(PlanRow).where(PlanRow.id == found))
