"""`vpn plan add|list|show|update|remove`: named limits that `vpn user add|update --plan` gives
users (services/plans.py). A plan's name follows the rules of user names."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from vpn_manager.cli.context import app_context
from vpn_manager.cli.options import FormatOption
from vpn_manager.models import PlanCreate, PlanUpdate, validated
from vpn_manager.units import MOST_DAYS, format_size, parse_count, parse_reset_period, parse_size

if TYPE_CHECKING:
    from vpn_manager.models import Plan
    from vpn_manager.services.root import Services

app = typer.Typer(
    help="Named limits (quota, reset period, days, devices) to give users.", no_args_is_help=True
)

PlanArg = Annotated[str, typer.Argument(metavar="NAME", help="The plan's name.")]
Quota = Annotated[
    str | None,
    typer.Option(
        "--quota", metavar="SIZE", help="Data quota per period: 50GB, 500MiB; 0 = unlimited."
    ),
]
Period = Annotated[
    str | None,
    typer.Option(
        "--period",
        metavar="PERIOD",
        help="When the used data resets: never, daily, weekly, monthly or Nd (N: 1 to 9999).",
    ),
]
Days = Annotated[
    str | None,
    typer.Option(
        "--days",
        metavar="N",
        help=f"Users given the plan expire N days later (0: never; at most {MOST_DAYS}).",
    ),
]
Devices = Annotated[
    str | None,
    typer.Option("--devices", metavar="N", help="Devices (client IPs) at once; 0 = unlimited."),
]
COLUMNS = [
    ("name", "NAME"),
    ("quota_bytes", "QUOTA"),
    ("reset_period", "PERIOD"),
    ("days", "DAYS"),
    ("device_limit", "DEVICES"),
    ("users", "USERS"),
]


def _fields(
    quota: str | None, period: str | None, days: str | None, devices: str | None
) -> dict[str, Any]:
    """The options that were given, as model fields."""
    fields: dict[str, Any] = {}
    if quota is not None:
        fields["quota_bytes"] = parse_size(quota)
    if period is not None:
        fields["reset_period"] = parse_reset_period(period)
    if days is not None:
        fields["days"] = parse_count(days, "number of days", MOST_DAYS)
    if devices is not None:
        fields["device_limit"] = parse_count(devices, "device limit")
    return fields


def _record(plan: Plan) -> dict[str, Any]:
    return plan.model_dump(mode="json")


def _text(key: str, value: Any) -> str:
    if key == "quota_bytes":
        return format_size(value)
    if key == "device_limit" and value is None:
        return "unlimited"
    if key == "days" and value is None:
        return "never"
    if key.endswith("_at") and value:
        return str(value).replace("T", " ")[:16]
    if isinstance(value, list):
        return ", ".join(value) or "-"
    return "-" if value is None else str(value)


@app.command("add")
def add(
    ctx: typer.Context,
    name: PlanArg,
    quota: Quota = None,
    period: Period = None,
    days: Days = None,
    devices: Devices = None,
    output_format: FormatOption = None,
) -> None:
    """Make a plan."""
    context = app_context(ctx)
    create = validated(PlanCreate, {"name": name, **_fields(quota, period, days, devices)})
    plan = context.run(lambda services: services.plans.add(create))
    out = context.output(output_format)
    out.record(_record(plan), _text)
    if out.format == "table":
        out.note(f"Made plan {plan.name}. Give it to users: vpn user add NAME --plan {plan.name}")


@app.command("list")
def list_plans(ctx: typer.Context, output_format: FormatOption = None) -> None:
    """List the plans and how many users hold each."""
    context = app_context(ctx)
    plans = context.run(lambda services: services.plans.list())
    context.output(output_format).records(
        [_record(plan) for plan in plans],
        COLUMNS,
        _text,
        empty="No plans yet. Make one with `vpn plan add NAME --quota 50GB --period monthly`.",
    )


@app.command("show")
def show(ctx: typer.Context, name: PlanArg, output_format: FormatOption = None) -> None:
    """Show one plan and the users who hold it."""
    context = app_context(ctx)

    async def work(services: Services) -> dict[str, Any]:
        plan = await services.plans.get(name)
        return _record(plan) | {"holders": await services.plans.holders(name)}

    context.output(output_format).record(context.run(work), _text)


@app.command("update")
def update(
    ctx: typer.Context,
    name: PlanArg,
    quota: Quota = None,
    period: Period = None,
    days: Days = None,
    devices: Devices = None,
    output_format: FormatOption = None,
) -> None:
    """Change a plan; only the options given change. Its users keep their limits until it is
    given to them again (vpn user update NAME --plan PLAN)."""
    context = app_context(ctx)
    change = validated(PlanUpdate, _fields(quota, period, days, devices))
    plan = context.run(lambda services: services.plans.update(name, change))
    out = context.output(output_format)
    out.record(_record(plan), _text)
    if out.format == "table" and plan.users:
        out.note(
            f"{plan.users} user{'s' if plan.users != 1 else ''} hold this plan and keep their "
            f"limits until it is given again: vpn user update NAME… --plan {plan.name}"
        )


@app.command("remove")
def remove(
    ctx: typer.Context,
    name: PlanArg,
    force: Annotated[
        bool,
        typer.Option("--force", help="Remove it even if users hold it (they keep their limits)."),
    ] = False,
    output_format: FormatOption = None,
) -> None:
    """Remove a plan; refused while users hold it, unless --force."""
    context = app_context(ctx)
    users = context.run(lambda services: services.plans.remove(name, force))
    held = f" {len(users)} user{'s' if len(users) != 1 else ''} kept their limits." if users else ""
    context.output(output_format).result(
        {"removed": name, "holders": users}, f"Removed plan {name}.{held}"
    )
