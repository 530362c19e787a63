"""`vpn user …`: create, list, show, change, enable/disable, delete, export and import users."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta, tzinfo
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from vpn_manager.cli.context import AppContext, app_context
from vpn_manager.cli.options import FormatOption

if TYPE_CHECKING:
    from vpn_manager.cli.output import Output
    from vpn_manager.models import User
    from vpn_manager.services.transfer import ImportPlan

app = typer.Typer(help="Create, list, change and remove users.", no_args_is_help=True)

LIST_COLUMNS = [
    ("name", "NAME"),
    ("status", "STATUS"),
    ("usage", "USED/QUOTA"),
    ("expires_at", "EXPIRES"),
    ("servers", "SERVERS"),
    ("email", "EMAIL"),
]


def _complete_names(ctx: typer.Context, incomplete: str) -> list[str]:
    try:
        users = app_context(ctx).users(lambda s: s.list())
    except Exception:  # completion must never print errors into the user's prompt
        return []
    return [u.name for u in users if u.name.startswith(incomplete)]


Names = Annotated[
    list[str],
    typer.Argument(help="One or more user names.", metavar="NAME", autocompletion=_complete_names),
]
Name = Annotated[
    str, typer.Argument(help="The user's name.", metavar="NAME", autocompletion=_complete_names)
]
Email = Annotated[str | None, typer.Option("--email", metavar="EMAIL", help="Contact e-mail.")]
Note = Annotated[str | None, typer.Option("--note", metavar="TEXT", help="Free text for yourself.")]
Quota = Annotated[
    str | None,
    typer.Option(
        "--quota",
        metavar="SIZE",
        help="Data quota per reset period: 50GB, 500MiB, 1.5TB; 0 = unlimited.",
    ),
]
Expires = Annotated[
    str | None,
    typer.Option(
        "--expires",
        metavar="WHEN",
        help="Last day (2027-01-31), a span from now (30d, 2w, 12h), or never; not in the past, "
        "and 2099-12-31 at the latest.",
    ),
]
Reset = Annotated[
    str | None,
    typer.Option(
        "--reset",
        metavar="PERIOD",
        help="When the used data resets: never, daily, weekly, monthly or Nd (N: 1 to 9999).",
    ),
]
Devices = Annotated[
    str | None,
    typer.Option("--devices", metavar="N", help="Devices (client IPs) at once; 0 = unlimited."),
]
FirstUseDays = Annotated[
    str | None,
    typer.Option(
        "--first-use-days",
        metavar="N",
        help="Expire N days after the first connection (0: off; at most 36500); --expires wins "
        "if both.",
    ),
]
Speed = Annotated[
    str | None,
    typer.Option("--speed", metavar="RATE", hidden=True, help="Refused: not enforced yet."),
]


def _limits(
    context: AppContext,
    quota: str | None,
    expires: str | None,
    reset: str | None,
    devices: str | None,
    speed: str | None,
    first_use_days: str | None = None,
) -> dict[str, Any]:
    """Turn the limit flags that were given into model fields (None = flag not given)."""
    from vpn_manager.units import (
        MOST_DAYS,
        parse_count,
        parse_expiry,
        parse_reset_period,
        parse_size,
    )

    fields: dict[str, Any] = {}
    if quota is not None:
        fields["quota_bytes"] = parse_size(quota)
    if expires is not None:
        fields["expires_at"] = parse_expiry(
            expires, now=datetime.now(UTC), zone=context.settings.zone
        )
    if reset is not None:
        fields["reset_period"] = parse_reset_period(reset)
    if devices is not None:
        fields["device_limit"] = parse_count(devices, "device limit")
    if first_use_days is not None:
        fields["expire_after_days"] = parse_count(first_use_days, "number of days", MOST_DAYS)
    if speed is not None:
        from vpn_manager.errors import InvalidInput

        raise InvalidInput(
            "Speed limits are not enforced yet, so --speed is refused rather than stored.",
            hint="Leave --speed out; the user's traffic is not limited in speed.",
        )
    return fields


def _row(user: User) -> dict[str, Any]:
    """A user as scripts see it (json/yaml): everything but the subscription token."""
    return user.model_dump(mode="json", exclude={"subscription_token"})


def _rows(users: list[User]) -> list[dict[str, Any]]:
    from pydantic import TypeAdapter

    from vpn_manager.models import User

    adapter = TypeAdapter(list[User])
    return adapter.dump_python(users, mode="json", exclude={"__all__": {"subscription_token"}})  # type: ignore[no-any-return]


def _last_day(moment: datetime, zone: tzinfo) -> str:
    """The last day on which a user still works: an expiry at midnight ends the day before."""
    return (moment.astimezone(zone) - timedelta(microseconds=1)).strftime("%Y-%m-%d")


def _list_cells(users: list[User], zone: tzinfo) -> list[dict[str, Any]]:
    """The table columns for many users, computed straight from the models (10,000 rows fast)."""
    from vpn_manager.units import format_size

    return [
        {
            "name": u.name,
            "status": u.status.value,
            "usage": f"{format_size(u.used_bytes)}/"
            + (format_size(u.quota_bytes) if u.quota_bytes else "∞"),
            "expires_at": _last_day(u.expires_at, zone) if u.expires_at else "never",
            "servers": ",".join(u.servers) or "-",
            "email": u.email or "-",
        }
        for u in users
    ]


def _show_text(zone: tzinfo) -> Callable[[str, Any], str]:
    """How `show` prints each field for people: sizes with units, times in the configured zone."""

    def text(key: str, value: Any) -> str:
        if key == "expires_at" and value:
            moment = datetime.fromisoformat(value)
            return f"{_local(moment, zone)} (last day {_last_day(moment, zone)})"
        if key in ("created_at", "updated_at") and value:
            return _local(datetime.fromisoformat(value), zone)
        return _text(key, value)

    return text


def _local(moment: datetime, zone: tzinfo) -> str:
    return moment.astimezone(zone).strftime("%Y-%m-%d %H:%M %Z")


def _text(key: str, value: Any) -> str:
    from vpn_manager.units import format_rate, format_size

    if value is None:
        return "-" if key not in ("quota_bytes", "speed_limit_bps", "device_limit") else "unlimited"
    if key in (
        "quota_bytes",
        "upload_bytes",
        "download_bytes",
        "used_bytes",
        "period_upload_bytes",
        "period_download_bytes",
    ):
        return format_size(value)
    if key == "speed_limit_bps":
        return format_rate(value)
    if isinstance(value, list):
        return ", ".join(value) or "-"
    return str(value)


def _emit_users(
    out: Output, users: list[User], zone: tzinfo, empty: str = "Nothing to show."
) -> None:
    if out.structured:
        out.data(_rows(users))
    else:
        out.records(_list_cells(users, zone), LIST_COLUMNS, _plain, empty=empty)


def _plain(_key: str, value: Any) -> str:
    return str(value)


@contextmanager
def _progress(total: int, label: str) -> Iterator[Callable[[int], None] | None]:
    """A progress bar on stderr for batches, when a person is watching."""
    if total < 20 or not sys.stderr.isatty():
        yield None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    with Progress(
        TextColumn(label),
        BarColumn(),
        MofNCompleteColumn(),
        console=Console(stderr=True),
        transient=True,
    ) as bar:
        task = bar.add_task(label, total=total)
        yield lambda done: bar.advance(task, done)


@app.command("add")
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
    disabled: Annotated[bool, typer.Option("--disabled", help="Create them disabled.")] = False,
    server: Annotated[
        list[str] | None,
        typer.Option(
            "--server",
            metavar="SERVER",
            help="Also give them access to this server (repeatable); applied live.",
        ),
    ] = None,
    output_format: FormatOption = None,
) -> None:
    """Create one or more users (all or none)."""
    from vpn_manager.errors import InvalidInput
    from vpn_manager.models import UserCreate, UserStatus, validated

    context = app_context(ctx)
    out = context.output(output_format)
    if email and len(names) > 1:
        raise InvalidInput("--email can only be given when adding one user.")
    common = _limits(context, quota, expires, reset, devices, speed, first_use_days)
    common.update(email=email, note=note)
    if disabled:
        common["status"] = UserStatus.DISABLED
    creates = [validated(UserCreate, {"name": name, **common}) for name in names]
    servers = server or []
    with _progress(len(creates), "Adding users") as progress:
        users = context.users(lambda s: s.add(creates, progress, servers=servers))
    _emit_users(out, users, context.settings.zone)
    if out.format == "table":
        out.note(f"Created {len(users)} user{'s' if len(users) != 1 else ''}.")
        if servers and len(users) == 1:
            out.note(f"Their link: vpn user link {users[0].name}")


@app.command("list")
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
    from vpn_manager.models import UserFilter, validated

    context = app_context(ctx)
    out = context.output(output_format)
    where = validated(UserFilter, {"status": status, "search": search})
    users = context.users(lambda s: s.list(where))
    empty = (
        "No users match." if status or search else "No users yet. Add one with `vpn user add NAME`."
    )
    _emit_users(out, users, context.settings.zone, empty=empty)


@app.command("show")
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
    data = _row(user)
    if secrets:
        data["subscription_token"] = user.subscription_token.get_secret_value()
    context.output(output_format).record(data, _show_text(context.settings.zone))


@app.command("update")
def update(
    ctx: typer.Context,
    name: Name,
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
    reset: Reset = None,
    devices: Devices = None,
    speed: Speed = None,
    first_use_days: FirstUseDays = None,
    output_format: FormatOption = None,
) -> None:
    """Change a user's details or limits; only the options given change."""
    from vpn_manager.models import UserUpdate, validated

    context = app_context(ctx)
    fields = _limits(context, quota, expires, reset, devices, speed, first_use_days)
    if new_name is not None:
        fields["new_name"] = new_name
    if email is not None:
        fields["email"] = email or None
    if note is not None:
        fields["note"] = note or None
    change = validated(UserUpdate, fields)
    user = context.users(lambda s: s.update(name, change))
    context.output(output_format).record(_row(user), _show_text(context.settings.zone))


def _set_status(ctx: typer.Context, names: list[str], enable: bool, fmt: FormatOption) -> None:
    context = app_context(ctx)
    out = context.output(fmt)
    if enable:
        count = context.users(lambda s: s.enable(names))
    else:
        count = context.users(lambda s: s.disable(names))
    verb = "enabled" if enable else "disabled"
    out.result({verb: names}, f"{verb.capitalize()} {count} user{'s' if count != 1 else ''}.")


@app.command("enable")
def enable(ctx: typer.Context, names: Names, output_format: FormatOption = None) -> None:
    """Let users connect again."""
    _set_status(ctx, names, True, output_format)


@app.command("disable")
def disable(ctx: typer.Context, names: Names, output_format: FormatOption = None) -> None:
    """Stop users from connecting (their data and credentials are kept)."""
    _set_status(ctx, names, False, output_format)


@app.command("delete")
def delete(
    ctx: typer.Context,
    names: Names,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    output_format: FormatOption = None,
) -> None:
    """Delete users and their credentials on every server."""
    from vpn_manager.errors import Cancelled, InvalidInput

    context = app_context(ctx)
    out = context.output(output_format)
    if not yes:
        if not sys.stdin.isatty():
            raise InvalidInput(
                "Refusing to delete users without confirmation.", hint="Add --yes to confirm."
            )
        shown = ", ".join(names[:5]) + (" …" if len(names) > 5 else "")
        if not typer.confirm(f"Delete {len(names)} user(s): {shown}?"):
            raise Cancelled("Nothing was deleted.")
    count = context.users(lambda s: s.delete(names))
    out.result({"deleted": names}, f"Deleted {count} user{'s' if count != 1 else ''}.")


@app.command("rotate-token")
def rotate_token(ctx: typer.Context, name: Name, output_format: FormatOption = None) -> None:
    """Give a user a new subscription token; the old one stops working."""
    context = app_context(ctx)
    user = context.users(lambda s: s.rotate_token(name))
    token = user.subscription_token.get_secret_value()
    context.output(output_format).result({"name": user.name, "subscription_token": token}, token)


@app.command("export")
def export(
    ctx: typer.Context,
    file: Annotated[
        Path | None,
        typer.Option(
            "--file", "-o", metavar="FILE", help="Write here (mode 0600) instead of stdout."
        ),
    ] = None,
    file_format: Annotated[
        str | None,
        typer.Option(
            "--format",
            "-f",
            metavar="json|csv",
            help="json or csv (default: from --file's suffix, else json).",
        ),
    ] = None,
    secrets: Annotated[
        bool, typer.Option("--secrets", help="Include subscription tokens, so links keep working.")
    ] = False,
) -> None:
    """Export every user to JSON or CSV."""
    from vpn_manager.errors import InvalidInput
    from vpn_manager.fsutil import atomic_write
    from vpn_manager.services.transfer import dump, export_records

    context = app_context(ctx)
    fmt = file_format or ("csv" if file is not None and file.suffix.lower() == ".csv" else "json")
    if fmt not in ("json", "csv"):
        raise InvalidInput(f"Cannot export as {fmt!r}.", hint="Use --format json or --format csv.")
    users = context.users(lambda s: s.list())
    text = dump(export_records(users, secrets=secrets), "csv" if fmt == "csv" else "json")
    if file is None:
        sys.stdout.write(text)
        return
    atomic_write(file, text)
    context.output().note(f"Exported {len(users)} users to {file}.")


@app.command("import")
def import_users(
    ctx: typer.Context,
    file: Annotated[
        Path,
        typer.Argument(metavar="FILE", help="A JSON or CSV file as written by `vpn user export`."),
    ],
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show what would change; write nothing.")
    ] = False,
    on_existing: Annotated[
        str,
        typer.Option(
            "--on-existing",
            metavar="skip|update|fail",
            help="For names that exist: skip, update or fail.",
        ),
    ] = "skip",
    output_format: FormatOption = None,
) -> None:
    """Import users from a file: all are checked first, then written in one transaction."""
    from vpn_manager.errors import InvalidInput
    from vpn_manager.services.transfer import OnExisting, import_users, parse_file

    context = app_context(ctx)
    out = context.output(output_format)
    try:
        policy = OnExisting(on_existing)
    except ValueError:
        raise InvalidInput(
            f"--on-existing {on_existing!r} is not one of skip, update, fail."
        ) from None
    records = parse_file(
        file, zone=context.settings.zone, max_bytes=context.settings.import_max_mb * 1000**2
    )
    plan: ImportPlan = context.users(
        lambda s: import_users(s, records, dry_run=dry_run, on_existing=policy)
    )
    lead = "Would create" if dry_run else "Created"
    message = (
        f"{lead} {len(plan.create)}, "
        f"{'would update' if dry_run else 'updated'} {len(plan.update)}, "
        f"skipped {len(plan.skip)} (already exist)."
    )
    out.result(plan.model_dump(), message)


ServerArg = Annotated[str, typer.Argument(metavar="SERVER", help="The server's name.")]


@app.command("grant")
def grant(
    ctx: typer.Context,
    name: Name,
    server: ServerArg,
    password: Annotated[
        str | None,
        typer.Option(
            "--password", metavar="PASSWORD", help="Proxies: the user's password (else generated)."
        ),
    ] = None,
    output_format: FormatOption = None,
) -> None:
    """Give a user access to a server (credentials made once; applied live)."""
    context = app_context(ctx)
    added = context.servers(lambda s: s.grant([name], server, password))
    context.output(output_format).result(
        {"name": name, "server": server, "granted": bool(added)},
        f"{name} can now use {server}: vpn user link {name} --server {server}"
        if added
        else f"{name} already had access to {server}.",
    )


@app.command("revoke")
def revoke(
    ctx: typer.Context, name: Name, server: ServerArg, output_format: FormatOption = None
) -> None:
    """Take a user's access to a server away; their open connections are cut."""
    context = app_context(ctx)
    context.servers(lambda s: s.revoke([name], server))
    context.output(output_format).result(
        {"name": name, "server": server, "revoked": True},
        f"{name} no longer has access to {server}.",
    )


@app.command("link")
def link(
    ctx: typer.Context,
    name: Name,
    server: Annotated[
        str | None, typer.Option("--server", metavar="SERVER", help="Only this server's link.")
    ] = None,
    qr: Annotated[bool, typer.Option("--qr", help="Also draw a QR code in the terminal.")] = False,
    png: Annotated[
        Path | None,
        typer.Option("--png", metavar="FILE", help="Write the QR code as a PNG (0600)."),
    ] = None,
    output_format: FormatOption = None,
) -> None:
    """Print a user's share link(s) — what client apps import — and QR codes."""
    from vpn_manager.errors import InvalidInput

    context = app_context(ctx)
    out = context.output(output_format)
    accesses = context.servers(lambda s: s.access(name, server))
    if png is not None and len(accesses) != 1:
        raise InvalidInput(
            f"{name} is on {len(accesses)} servers; a PNG holds one link.", hint="Add --server."
        )
    if png is not None:
        from vpn_manager.delivery.qr import qr_png

        qr_png(accesses[0].link, png)
        out.note(f"Wrote the QR code to {png}.")
    if out.structured:
        out.data([{"server": a.server, "protocol": a.protocol, "link": a.link} for a in accesses])
        return
    for access in accesses:
        if access.note:
            out.note(f"{access.server}: {access.note}")
        if qr:
            from vpn_manager.delivery.qr import qr_text

            out.out.write(qr_text(access.link) + "\n")
        out.out.write(access.link.rstrip("\n") + "\n")


@app.command("config")
def client_config(
    ctx: typer.Context,
    name: Name,
    server: Annotated[str, typer.Option("--server", metavar="SERVER", help="The server.")],
    client: Annotated[
        str, typer.Option("--client", metavar="xray|sing-box", help="Which client program.")
    ] = "xray",
    socks_port: Annotated[
        int,
        typer.Option("--socks-port", metavar="PORT", help="The local proxy port the client opens."),
    ] = 1080,
) -> None:
    """Print a ready client config for a user on a server (a local SOCKS/HTTP proxy)."""
    from vpn_manager.links.clients import check_client
    from vpn_manager.links.clients import client_config as config_of

    check_client(client)
    context = app_context(ctx)
    access = context.servers(lambda s: s.access(name, server))[0]
    text = config_of(access.data, client, socks_port)
    if access.note:
        context.output().note(access.note)
    sys.stdout.write(text)


@app.command("reset-usage")
def reset_usage(ctx: typer.Context, names: Names, output_format: FormatOption = None) -> None:
    """Start a new quota period now: period usage back to zero (lifetime totals are kept), and
    users who were over quota can connect again."""
    context = app_context(ctx)
    context.run(lambda services: services.limits.reset_usage(names))
    context.output(output_format).result(
        {"reset": names}, f"Reset the usage of {len(names)} user{'s' if len(names) != 1 else ''}."
    )
