"""/api/v1/plans: what `vpn plan …` does, through the same service calls (services/plans.py).

GET    /plans                 list, with how many users hold each
POST   /plans                 make one
GET    /plans/{name}          one plan and the users who hold it
PATCH  /plans/{name}          change it (only the fields sent); its users keep their limits
DELETE /plans/{name}          remove it: refused (409, naming them) while users hold it,
                              unless ?force=true (they keep their limits)
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request

from vpn_manager.errors import Conflict
from vpn_manager.models import Plan, PlanCreate, PlanUpdate
from vpn_manager.web.api.access import Api, dependencies
from vpn_manager.web.api.models import PlanCreateIn, PlanRemoved, PlanShown, PlanUpdateIn

Force = Annotated[
    bool,
    Query(description="Remove it even if users hold it (they keep their limits)."),
]
FORCE_HINT = (
    "Give them another plan first, or send force=true to remove it anyway (they keep their limits)."
)


def router(api: Api, responses: dict[int | str, dict[str, Any]]) -> APIRouter:
    read, write = dependencies(api)
    plans = APIRouter(prefix="/plans", tags=["plans"], responses=responses)

    @plans.get("", dependencies=[read])
    async def plan_list() -> list[Plan]:
        """Plans, with how many users hold each."""
        return await api.services().plans.list()

    @plans.post("", status_code=201, dependencies=[write])
    async def plan_add(request: Request, body: PlanCreateIn) -> Plan:
        """Make a plan: limits that users are given with `plan` (POST or PATCH /users)."""
        create = PlanCreate.model_validate(body.model_dump(exclude_unset=True))
        plan, _ = await api.change(request, body.name, lambda s: s.plans.add(create))
        return plan

    @plans.get("/{name}", dependencies=[read])
    async def plan_show(name: str) -> PlanShown:
        """One plan and the users who hold it."""
        services = api.services()
        plan = await services.plans.get(name)
        return PlanShown(**plan.model_dump(), holders=await services.plans.holders(name))

    @plans.patch("/{name}", dependencies=[write])
    async def plan_update(request: Request, name: str, body: PlanUpdateIn) -> Plan:
        """Change a plan; only the fields sent change (null: unlimited or never). Its users
        keep their limits until it is given to them again."""
        change = PlanUpdate.model_validate(body.model_dump(exclude_unset=True))
        plan, _ = await api.change(request, name, lambda s: s.plans.update(name, change))
        return plan

    @plans.delete("/{name}", dependencies=[write])
    async def plan_remove(request: Request, name: str, force: Force = False) -> PlanRemoved:
        """Remove a plan; refused (409, naming the users) while users hold it, unless
        force=true: then they keep their limits and lose the reference."""
        try:
            holders, _ = await api.change(request, name, lambda s: s.plans.remove(name, force))
        except Conflict as exc:
            raise Conflict(exc.message, hint=FORCE_HINT) from None
        held = len(holders)
        kept = f" {held} user{'s' if held != 1 else ''} kept their limits." if held else ""
        return PlanRemoved(name=name, done=f"Removed plan {name}.{kept}", holders=holders)

    return plans
