"""`vpn proxy …`: HTTP (with CONNECT), SOCKS5 and mixed proxies, managed like any other server."""

from __future__ import annotations

from typing import Annotated

import typer

from vpn_manager.cli.context import app_context
from vpn_manager.cli.options import FormatOption
from vpn_manager.cli.servers import lifecycle
from vpn_manager.cli.servers.args import AllowPrivate, AnyServer, HostOpt, Listen
from vpn_manager.cli.servers.display import emit_servers
from vpn_manager.cli.servers.install import install_fields
from vpn_manager.errors import InvalidInput
from vpn_manager.models.server import PROXY_PROTOCOLS

app = typer.Typer(
    help="HTTP, SOCKS5 and mixed proxies with a password per user.", no_args_is_help=True
)


@app.command("add")
def add(
    ctx: typer.Context,
    kind: Annotated[str, typer.Argument(metavar="KIND", help="http, socks5 or mixed (both).")],
    name: Annotated[str, typer.Option("--name", metavar="NAME", help="A name for the proxy.")],
    port: Annotated[int, typer.Option("--port", metavar="PORT", help="The port to listen on.")],
    listen: Listen = "0.0.0.0",
    host: HostOpt = None,
    allow_anonymous: Annotated[
        bool,
        typer.Option(
            "--allow-anonymous", help="Serve clients without a password too (off by default)."
        ),
    ] = False,
    allow_private: AllowPrivate = False,
    output_format: FormatOption = None,
) -> None:
    """Add a proxy and start it. Each user granted on it gets their own password."""
    if kind not in ("http", "socks5", "mixed"):
        raise InvalidInput(f"Unknown proxy kind {kind!r}.", hint="Use http, socks5 or mixed.")
    install_fields(
        ctx,
        {
            "name": name,
            "protocol": kind,
            "port": port,
            "listen": listen,
            "host": host,
            "allow_anonymous": allow_anonymous,
            "allow_private": allow_private,
        },
        output_format,
    )


@app.command("list")
def list_proxies(ctx: typer.Context, output_format: FormatOption = None) -> None:
    """List proxies."""
    context = app_context(ctx)
    proxies = [s for s in context.servers(lambda s: s.all()) if s.protocol in PROXY_PROTOCOLS]
    emit_servers(context.output(output_format), proxies, "No proxies yet.")


@app.command("status")
def status(ctx: typer.Context, name: AnyServer = None, output_format: FormatOption = None) -> None:
    """Show whether a proxy runs and answers on its port (every proxy's, one line each, without
    a name)."""
    if name is None:
        lifecycle.statuses(ctx, output_format, PROXY_PROTOCOLS, "No proxies yet.")
    else:
        lifecycle.status(ctx, name, output_format)


for command in ("start", "stop", "restart", "logs", "remove"):
    app.command(command)(getattr(lifecycle, command))
