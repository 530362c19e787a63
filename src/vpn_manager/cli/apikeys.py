"""`vpn api-key create|list|revoke`: the keys that clients of `vpn web`'s REST API send.

A key's secret is printed once, when it is made, and never again: the database keeps only its
hash. Making and revoking keys here writes audit entries by "cli:<unix user>" (`vpn audit`).
"""

from __future__ import annotations

import os
import pwd
from datetime import UTC, datetime, tzinfo
from typing import TYPE_CHECKING, Annotated, Any

import typer

from vpn_manager.cli.context import app_context
from vpn_manager.cli.options import FormatOption
from vpn_manager.errors import StorageError, VpnError
from vpn_manager.units import parse_expiry

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from vpn_manager.services.apikeys import ApiKey
    from vpn_manager.services.root import Services

app = typer.Typer(
    help="Make, list and revoke the keys of vpn web's REST API.", no_args_is_help=True
)

KeyName = Annotated[str, typer.Argument(metavar="NAME", help="The key's name.")]
COLUMNS = [
    ("name", "NAME"),
    ("scope", "SCOPE"),
    ("state", "STATE"),
    ("created_at", "CREATED"),
    ("expires_at", "EXPIRES"),
    ("last_used_at", "LAST USED"),
]


def cli_actor() -> str:
    """Who the audit log says made a change from the CLI: "cli:" and the unix user."""
    uid = os.getuid()
    try:
        return f"cli:{pwd.getpwuid(uid).pw_name}"
    except KeyError:  # a uid without a passwd entry (containers)
        return f"cli:{uid}"


def _when(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value is not None else None


def key_record(key: ApiKey) -> dict[str, Any]:
    """A key as scripts see it: never its secret, never its hash (the read model has neither)."""
    return {
        "name": key.name,
        "scope": key.scope,
        "state": key.state,
        "created_at": _when(key.created_at),
        "expires_at": _when(key.expires_at),
        "last_used_at": _when(key.last_used_at),
        "revoked_at": _when(key.revoked_at),
    }


def local_text(zone: tzinfo) -> Callable[[str, Any], str]:
    """Times in the configured zone to the minute; "-" for none."""

    def text(key: str, value: Any) -> str:
        if value is None:
            return "never" if key in ("expires_at", "last_used_at") else "-"
        if key == "at" or key.endswith("_at"):
            moment = datetime.fromisoformat(value)
            return moment.astimezone(zone).strftime("%Y-%m-%d %H:%M")
        return str(value)

    return text


async def _audited(
    services: Services, action: str, name: str, work: Callable[[str], Awaitable[Any]]
) -> Any:
    """Run `work(actor)`, which writes its own audit entry when it succeeds; a refusal (a taken
    name, no such key) is written as an entry of its own before it is reported."""
    actor = cli_actor()
    try:
        return await work(actor)
    except StorageError:
        raise  # the database cannot take the entry either
    except VpnError as exc:
        await services.audit.record(actor, action, name, f"{type(exc).__name__}: {exc.message}")
        raise


@app.command("create")
def create(
    ctx: typer.Context,
    name: KeyName,
    scope: Annotated[
        str,
        typer.Option(
            "--scope",
            metavar="read|write",
            help="read (the default): look only; write: also change users and servers.",
        ),
    ] = "read",
    expires: Annotated[
        str | None,
        typer.Option(
            "--expires",
            metavar="WHEN",
            help="Last day (2027-01-31), a span from now (90d, 2w, 12h), or never (the default); "
            "2099-12-31 at the latest.",
        ),
    ] = None,
    output_format: FormatOption = None,
) -> None:
    """Make a key and print its secret, once: it is never shown again."""
    context = app_context(ctx)
    out = context.output(output_format)
    expires_at = (
        parse_expiry(expires, now=datetime.now(UTC), zone=context.settings.zone, what="the key")
        if expires is not None
        else None
    )

    async def work(services: Services) -> tuple[ApiKey, str]:
        keys = services.api_keys
        result: tuple[ApiKey, str] = await _audited(
            services,
            "api-key.create",
            name,
            lambda actor: keys.create(name, scope, expires_at, audit_as=actor),
        )
        return result

    key, secret = context.run(work)
    if out.structured:
        out.data(
            {
                "name": key.name,
                "scope": key.scope,
                "expires_at": _when(key.expires_at),
                "key": secret,
            }
        )
    else:
        out.out.write(secret + "\n")
    out.out.flush()
    out.note(f"API key {key.name} ({key.scope}) made. Keep the key now: it is not shown again.")


@app.command("list")
def list_keys(ctx: typer.Context, output_format: FormatOption = None) -> None:
    """List the keys (revoked ones too), oldest first; never their secrets."""
    context = app_context(ctx)
    keys = context.run(lambda services: services.api_keys.list())
    context.output(output_format).records(
        [key_record(key) for key in keys],
        COLUMNS,
        local_text(context.settings.zone),
        empty="No API keys yet: make one with vpn api-key create NAME --scope read.",
    )


@app.command("revoke")
def revoke(ctx: typer.Context, name: KeyName, output_format: FormatOption = None) -> None:
    """Revoke a key: it stops working at once. Its name may then be given to a new key."""
    context = app_context(ctx)

    async def work(services: Services) -> tuple[ApiKey, bool]:
        keys = services.api_keys
        result: tuple[ApiKey, bool] = await _audited(
            services,
            "api-key.revoke",
            name,
            lambda actor: keys.revoke_once(name, audit_as=actor),
        )
        return result

    key, revoked = context.run(work)
    when = local_text(context.settings.zone)("revoked_at", _when(key.revoked_at))
    context.output(output_format).result(
        key_record(key) | {"changed": revoked},
        f"Revoked the API key {key.name}: it stops working at once."
        if revoked
        else f"The API key {key.name} was revoked already (at {when}); nothing changed.",
    )
