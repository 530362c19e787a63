"""`vpn user link|config`: what a user's client needs to use their servers (share links, QR
codes, ready client configs); access itself is granted in grants.py."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from vpn_manager.cli.context import AppContext, app_context
from vpn_manager.cli.options import FormatOption
from vpn_manager.cli.users.args import Name
from vpn_manager.delivery.qr import qr_png, qr_text
from vpn_manager.errors import InvalidInput
from vpn_manager.web.urls import settings_base_url, subscription_url


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
    subscription: Annotated[
        bool,
        typer.Option(
            "--subscription",
            help="Print the user's subscription URL instead: every server, kept up to date by "
            "their app (served by `vpn web`).",
        ),
    ] = False,
    output_format: FormatOption = None,
) -> None:
    """Print a user's share link(s) — what client apps import — and QR codes."""
    context = app_context(ctx)
    out = context.output(output_format)
    if subscription:
        if server is not None:
            raise InvalidInput(
                "A subscription holds every server of the user; --server does not apply.",
                hint=f"vpn user link {name} --subscription",
            )
        _subscription(context, name, qr=qr, png=png, output_format=output_format)
        return
    accesses = context.servers(lambda s: s.access(name, server))
    if png is not None and len(accesses) != 1:
        raise InvalidInput(
            f"{name} is on {len(accesses)} servers; a PNG holds one link.", hint="Add --server."
        )
    if png is not None:
        qr_png(accesses[0].link, png)
        out.note(f"Wrote the QR code to {png}.")
    if out.structured:
        out.data([{"server": a.server, "protocol": a.protocol, "link": a.link} for a in accesses])
        return
    for access in accesses:
        if access.note:
            out.note(f"{access.server}: {access.note}")
        if qr:
            out.out.write(qr_text(access.link) + "\n")
        out.out.write(access.link.rstrip("\n") + "\n")


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
    context = app_context(ctx)
    text, note = context.servers(lambda s: s.client_config(name, server, client, socks_port))
    if note:
        context.output().note(note)
    sys.stdout.write(text)


def _subscription(
    context: AppContext, name: str, *, qr: bool, png: Path | None, output_format: FormatOption
) -> None:
    base = settings_base_url(context.settings.web)
    url = subscription_url(base, context.users(lambda s: s.subscription_token(name)))
    out = context.output(output_format)
    if png is not None:
        qr_png(url, png)
        out.note(f"Wrote the QR code to {png}.")
    if out.structured:
        out.data({"name": name, "subscription_url": url})
        return
    if qr:
        out.out.write(qr_text(url) + "\n")
    out.out.write(url + "\n")
