"""`vpn user add|list|show|update|enable|disable|delete|rotate-token|reset-usage`: the user
records and their limits."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from vpn_manager.cli.context import app_context
from vpn_manager.cli.options import FormatOption, complete_servers
from vpn_manager.cli.users.args import (
    Devices,
    Email,
    Expires,
    Extend,
    FirstUseDays,
    Force,
    Name,
    Names,
    Note,
    PlanName,
    Quota,
    Reset,
    Speed,
    limits,
)
from vpn_manager.cli.users.display import emit_users, progress_bar, row, show_text
from vpn_manager.errors import Cancelled, InvalidInput
from vpn_manager.models import UserCreate, UserFilter, UserStatus, UserUpdate, validated


def add(
    ctx: typer.Context,
    names: Names,
    email: Email = None,
    note: Note = None,
    quota: Quota = None,
    expires: Expires = None,
    reset: Reset = None,
    devices: Devices = None,
    speed: Speed = None,
    first_use_days: FirstUseDays = None,
    plan: PlanName = None,
    disabled: Annotated[bool, typer.Option("--disabled", help="Create them disabled.")] = False,
    server: Annotated[
        list[str] | None,
        typer.Option(
            "--server",
            metavar="SERVER",
            help="Also give them access to this server (repeatable); applied live.",
            autocompletion=complete_servers,
        ),
    ] = None,
    output_format: FormatOption = None,
) -> None:
    """Create one or more users (all or none)."""
    context = app_context(ctx)
    out = context.output(output_format)
    if email and len(names) > 1:
        raise InvalidInput("--email can only be given when adding one user.")
    common = limits(context, quota, expires, reset, devices, speed, first_use_days, plan=plan)
    common.update(email=email, note=note)
    if disabled:
        common["status"] = UserStatus.DISABLED
    creates = [validated(UserCreate, {"name": name, **common}) for name in names]
    servers = server or []
    with progress_bar(len(creates), "Adding users") as progress:
        users = context.users(lambda s: s.add(creates, progress, servers=servers))
    emit_users(out, users, context.settings.zone)
    if out.format == "table":
        out.note(f"Created {len(users)} user{'s' if len(users) != 1 else ''}.")
        if servers and len(users) == 1:
            out.note(f"Their link: vpn user link {users[0].name}")


def list_users(
    ctx: typer.Context,
    status: Annotated[
        str | None,
        typer.Option(
            "--status",
            metavar="STATUS",
            help="Only users in this state: active, disabled, expired, over-quota.",
        ),
    ] = None,
    search: Annotated[
        str | None,
        typer.Option(
            "--search", "-s", metavar="TEXT", help="Only names, e-mails or notes containing this."
        ),
    ] = None,
    output_format: FormatOption = None,
) -> None:
    """List users."""
    context = app_context(ctx)
    out = context.output(output_format)
    where = validated(UserFilter, {"status": status, "search": search})
    users = context.users(lambda s: s.list(where))
    empty = (
        "No users match." if status or search else "No users yet. Add one with `vpn user add NAME`."
    )
    emit_users(out, users, context.settings.zone, empty=empty)


def show(
    ctx: typer.Context,
    name: Name,
    secrets: Annotated[
        bool, typer.Option("--secrets", help="Include the subscription token.")
    ] = False,
    output_format: FormatOption = None,
) -> None:
    """Show one user: limits, usage and servers."""
    context = app_context(ctx)
    user = context.users(lambda s: s.get(name))
    data = row(user)
    if secrets:
        data["subscription_token"] = context.users(lambda s: s.subscription_token(name))
    context.output(output_format).record(data, show_text(context.settings.zone))


def update(
    ctx: typer.Context,
    names: Names,
    new_name: Annotated[
        str | None, typer.Option("--name", metavar="NEW", help="Rename the user.")
    ] = None,
    email: Annotated[
        str | None, typer.Option("--email", metavar="EMAIL", help="Contact e-mail; '' clears it.")
    ] = None,
    note: Annotated[
        str | None, typer.Option("--note", metavar="TEXT", help="Free text; '' clears it.")
    ] = None,
    quota: Quota = None,
    expires: Expires = None,
    extend: Extend = None,
    reset: Reset = None,
    devices: Devices = None,
    speed: Speed = None,
    first_use_days: FirstUseDays = None,
    plan: PlanName = None,
    force: Force = False,
    output_format: FormatOption = None,
) -> None:
    """Change users' details or limits (all or none); only the options given change. Their
    limits are checked at once: a raised quota or a later expiry lets a limited user back in,
    applied live on their running servers."""
    context = app_context(ctx)
    fields = limits(
        context,
        quota,
        expires,
        reset,
        devices,
        speed,
        first_use_days,
        extend=extend,
        plan=plan,
        past=True,
    )
    if new_name is not None:
        fields["new_name"] = new_name
    if email is not None:
        fields["email"] = email or None
    if note is not None:
        fields["note"] = note or None
    change = validated(UserUpdate, fields)
    users = context.users(lambda s: s.update_many(names, change, force))
    out = context.output(output_format)
    if len(users) == 1:
        out.record(row(users[0]), show_text(context.settings.zone))
    else:
        emit_users(out, users, context.settings.zone)


def _set_status(ctx: typer.Context, names: list[str], enable: bool, fmt: FormatOption) -> None:
    context = app_context(ctx)
    out = context.output(fmt)
    if enable:
        count = context.users(lambda s: s.enable(names))
    else:
        count = context.users(lambda s: s.disable(names))
    verb = "enabled" if enable else "disabled"
    out.result({verb: names, "changed": count}, _status_message(verb, names, count))


def _status_message(verb: str, names: list[str], changed: int) -> str:
    """Say what changed, and how many already had that status (nothing changed for them)."""
    same = len(names) - changed
    if changed == 0:
        if len(names) == 1:
            return f"{names[0]} is already {verb}."
        return f"All {len(names)} users are already {verb}."
    message = f"{verb.capitalize()} {changed} user{'s' if changed != 1 else ''}."
    return message if same == 0 else message[:-1] + f" ({same} already {verb})."


def enable(ctx: typer.Context, names: Names, output_format: FormatOption = None) -> None:
    """Let users connect again."""
    _set_status(ctx, names, True, output_format)


def disable(ctx: typer.Context, names: Names, output_format: FormatOption = None) -> None:
    """Stop users from connecting (their data and credentials are kept)."""
    _set_status(ctx, names, False, output_format)


def delete(
    ctx: typer.Context,
    names: Names,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    output_format: FormatOption = None,
) -> None:
    """Delete users and their credentials on every server."""
    context = app_context(ctx)
    out = context.output(output_format)
    if not yes:
        if not sys.stdin.isatty():
            raise Cancelled(  # nobody to ask: as if the question were declined (exit 10)
                "Refusing to delete users without confirmation.", hint="Add --yes to confirm."
            )
        shown = ", ".join(names[:5]) + (" …" if len(names) > 5 else "")
        if not typer.confirm(f"Delete {len(names)} user(s): {shown}?"):
            raise Cancelled("Nothing was deleted.")
    count = context.users(lambda s: s.delete(names))
    out.result({"deleted": names}, f"Deleted {count} user{'s' if count != 1 else ''}.")


def rotate_token(ctx: typer.Context, name: Name, output_format: FormatOption = None) -> None:
    """Give a user a new subscription token; the old one stops working."""
    context = app_context(ctx)
    token = context.users(lambda s: s.rotate_token(name))
    context.output(output_format).result({"name": name, "subscription_token": token}, token)


def reset_usage(ctx: typer.Context, names: Names, output_format: FormatOption = None) -> None:
    """Start a new quota period now: period usage back to zero (lifetime totals are kept), and
    users who were over quota can connect again."""
    context = app_context(ctx)
    context.run(lambda services: services.limits.reset_usage(names))
    context.output(output_format).result(
        {"reset": names}, f"Reset the usage of {len(names)} user{'s' if len(names) != 1 else ''}."
    )
