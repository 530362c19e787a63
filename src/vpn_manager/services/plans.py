"""Plans: named limits (quota, reset period, days until expiry, device limit) that `vpn user
add|update --plan` copies to users, where no option of the command sets them.

A user keeps a reference to the plan they were last given (`plan` in `vpn user show`). Changing
a plan changes nobody's limits until it is given again (`vpn user update NAME --plan P`). A plan
that users hold is not removed unless asked to (`--force`); then they keep their limits and lose
the reference.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from vpn_manager import storage
from vpn_manager.errors import Conflict, InvalidInput
from vpn_manager.storage import Database

if TYPE_CHECKING:
    from vpn_manager.models import Plan, PlanCreate, PlanUpdate

Clock = Callable[[], datetime]
Holders = list[str]  # (the method named `list` shadows the builtin inside the class)


def utcnow() -> datetime:
    return datetime.now(UTC)


def plan_limits(plan: Plan, given: Collection[str]) -> dict[str, Any]:
    """The user fields a plan sets, leaving out those in `given` (set by the command itself)."""
    fields = {
        "quota_bytes": plan.quota_bytes,
        "reset_period": plan.reset_period,
        "device_limit": plan.device_limit,
    }
    return {key: value for key, value in fields.items() if key not in given}


def plan_days(plan: Plan, given: Collection[str]) -> timedelta | None:
    """How long a user given the plan has, unless the command sets the expiry itself."""
    if plan.days is None or {"expires_at", "extend", "expire_after_days"} & set(given):
        return None
    return timedelta(days=plan.days)


def shown(names: list[str]) -> str:
    return ", ".join(names[:5]) + (" …" if len(names) > 5 else "")


class PlanService:
    """Plans in the database (`vpn plan …`)."""

    def __init__(self, db: Database, clock: Clock = utcnow) -> None:
        self.db = db
        self.clock = clock

    async def add(self, create: PlanCreate) -> Plan:
        async with self.db.session() as session:
            return await storage.plans.insert_plan(session, create, self.clock())

    async def list(self) -> list[Plan]:
        async with self.db.reading() as session:
            return await storage.plans.list_plans(session)

    async def get(self, name: str) -> Plan:
        async with self.db.reading() as session:
            return await storage.plans.get_plan(session, name)

    async def holders(self, name: str) -> Holders:
        async with self.db.reading() as session:
            return await storage.plans.holders(session, name)

    async def update(self, name: str, change: PlanUpdate) -> Plan:
        """Change a plan; its users keep their limits until it is given to them again."""
        changes = change.changes()
        if not changes:
            raise InvalidInput("Nothing to change.", hint="See `vpn plan update --help`.")
        async with self.db.session() as session:
            return await storage.plans.update_plan(session, name, changes, self.clock())

    async def remove(self, name: str, force: bool = False) -> Holders:
        """Remove a plan; returns the users who held it. Refused while users hold it, unless
        `force`: then they keep their limits and lose the reference."""
        async with self.db.session() as session:
            users = await storage.plans.holders(session, name)  # NotFound first
            if users and not force:
                count = f"{len(users)} user{'s' if len(users) != 1 else ''}"
                raise Conflict(
                    f"Plan {name!r} is held by {count}: {shown(users)}.",
                    hint="Give them another plan first, or add --force to remove it anyway "
                    "(they keep their limits).",
                )
            await storage.plans.delete_plan(session, name)
        return users
