"""The arguments and options that several `vpn server …` and `vpn proxy …` commands share."""

from __future__ import annotations

from typing import Annotated

import typer

from vpn_manager.cli.context import app_context


def _complete_servers(ctx: typer.Context, incomplete: str) -> list[str]:
    try:
        servers = app_context(ctx).servers(lambda s: s.all())
    except Exception:  # completion must never print errors into the user's prompt
        return []
    return [s.name for s in servers if s.name.startswith(incomplete)]


ServerName = Annotated[
    str,
    typer.Argument(metavar="SERVER", help="The server's name.", autocompletion=_complete_servers),
]
Listen = Annotated[
    str, typer.Option("--listen", metavar="ADDR", help="The local address to listen on.")
]
HostOpt = Annotated[
    str | None,
    typer.Option(
        "--host", metavar="ADDRESS", help="The address clients use (default: this machine's)."
    ),
]
AllowPrivate = Annotated[
    bool,
    typer.Option(
        "--allow-private",
        help="Let users reach private and loopback addresses through the server.",
    ),
]
