"""`vpn user grant|revoke`: users' access to servers, many users and servers in one command.

One command is one change: every pair is written in one transaction and each server is applied
once (one live call, or one reload that resets its connections once rather than per user); if a
server fails, every server is put back (ServerService.grant_many). The first form,
`vpn user grant NAME SERVER`, still works: without --server, the last argument is the server.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from vpn_manager.cli.context import app_context
from vpn_manager.cli.options import FormatOption, complete_servers, complete_users_then_server
from vpn_manager.errors import InvalidInput
from vpn_manager.models import UserFilter, UserStatus, validated

if TYPE_CHECKING:
    from vpn_manager.services.servers import Pair

Targets = Annotated[
    list[str] | None,
    typer.Argument(
        metavar="NAME",
        help="The users; without --server, the last name is the server (`grant alice edge`).",
        autocompletion=complete_users_then_server,
        show_default=False,
    ),
]
Servers = Annotated[
    list[str] | None,
    typer.Option(
        "--server",
        metavar="SERVER",
        help="A server (repeatable).",
        show_default=False,
        autocompletion=complete_servers,
    ),
]
AllUsers = Annotated[bool, typer.Option("--all-users", help="Every user instead of names.")]
Status = Annotated[
    str | None,
    typer.Option(
        "--status",
        metavar="STATUS",
        help="Only the selected users in this state: active, disabled, expired, over-quota.",
    ),
]


def grant(
    ctx: typer.Context,
    targets: Targets = None,
    server: Servers = None,
    all_users: AllUsers = False,
    status: Status = None,
    password: Annotated[
        str | None,
        typer.Option(
            "--password",
            metavar="PASSWORD",
            help="Proxies: the user's password (one user only; else generated).",
        ),
    ] = None,
    output_format: FormatOption = None,
) -> None:
    """Give users access to servers (credentials made once; applied live; all or none)."""
    context = app_context(ctx)
    names, servers, state = _selection(targets, server, all_users, status)
    done = context.servers(lambda s: s.grant_many(names, servers, password=password, status=state))
    out = context.output(output_format)
    if out.structured:
        out.data([{"name": p.user, "server": p.server, "granted": p.changed} for p in done])
    elif len(done) == 1:
        name, where = done[0].user, done[0].server
        out.out.write(
            f"{name} can now use {where}: vpn user link {name} --server {where}\n"
            if done[0].changed
            else f"{name} already had access to {where}.\n"
        )
    else:
        for where, new, old in _by_server(done):
            line = f"{_users(new)} given access" if new else ""
            if old:
                line += ("; " if new else "") + f"{_users(old)} already had access"
            out.out.write(f"{where}: {line}.\n")


def revoke(
    ctx: typer.Context,
    targets: Targets = None,
    server: Servers = None,
    all_users: AllUsers = False,
    status: Status = None,
    output_format: FormatOption = None,
) -> None:
    """Take users' access to servers away (all or none); their open connections are cut."""
    context = app_context(ctx)
    names, servers, state = _selection(targets, server, all_users, status)
    done = context.servers(lambda s: s.revoke_many(names, servers, status=state))
    out = context.output(output_format)
    if out.structured:
        out.data([{"name": p.user, "server": p.server, "revoked": p.changed} for p in done])
    elif len(done) == 1:
        out.out.write(f"{done[0].user} no longer has access to {done[0].server}.\n")
    else:
        for where, gone, none in _by_server(done):
            had = f"; {_users(none)} had none" if none else ""
            out.out.write(f"{where}: {_users(gone)} lost access{had}.\n")


def _selection(
    targets: list[str] | None, servers: list[str] | None, all_users: bool, status: str | None
) -> tuple[list[str] | None, list[str], UserStatus | None]:
    """The users (None: every user), the servers and the status filter the arguments name."""
    args = list(targets or [])
    servers = list(servers or [])
    if not servers:
        if not args or (len(args) == 1 and not all_users):
            raise InvalidInput(
                "Name the users and the server.",
                hint="vpn user grant NAME... --server SERVER (or --all-users instead of names)",
            )
        servers = [args.pop()]  # the first form: NAME SERVER
    if all_users and args:
        raise InvalidInput(
            "Give user names or --all-users, not both.",
            hint="--status filters either selection.",
        )
    where = validated(UserFilter, {"status": status})
    return (None if all_users else args), servers, where.status


def _by_server(done: list[Pair]) -> list[tuple[str, list[str], list[str]]]:
    """Per server, in the order given: the users the change reached and those it left as
    they were."""
    servers = list(dict.fromkeys(p.server for p in done))
    return [
        (
            server,
            [p.user for p in done if p.server == server and p.changed],
            [p.user for p in done if p.server == server and not p.changed],
        )
        for server in servers
    ]


def _users(names: list[str]) -> str:
    return f"{len(names)} user" if len(names) == 1 else f"{len(names)} users"
