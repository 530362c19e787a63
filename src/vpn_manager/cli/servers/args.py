"""The arguments and options that several `vpn server …` and `vpn proxy …` commands share."""

from __future__ import annotations

from typing import Annotated

import typer

from vpn_manager.cli.options import complete_servers

ServerName = Annotated[
    str,
    typer.Argument(metavar="SERVER", help="The server's name.", autocompletion=complete_servers),
]
AnyServer = Annotated[
    str | None,
    typer.Argument(
        metavar="SERVER",
        help="The server's name (default: all).",
        autocompletion=complete_servers,
    ),
]
Listen = Annotated[
    str, typer.Option("--listen", metavar="ADDR", help="The local address to listen on.")
]
HostOpt = Annotated[
    str | None,
    typer.Option(
        "--host",
        metavar="ADDRESS",
        help="The address links carry, e.g. a CDN name (default: this machine's).",
    ),
]
AllowPrivate = Annotated[
    bool,
    typer.Option(
        "--allow-private",
        help="Let users reach private and loopback addresses through the server.",
    ),
]
