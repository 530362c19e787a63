"""`vpn user link|config`: what a user's client needs to use their servers (share links, QR
codes, ready client configs); access itself is granted in grants.py."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated
from urllib.parse import quote

import typer

from vpn_manager.cli.context import AppContext, app_context
from vpn_manager.cli.options import FormatOption, complete_servers
from vpn_manager.cli.output import Output
from vpn_manager.cli.users.args import Name
from vpn_manager.delivery.files import check_file, private_dir, write_private
from vpn_manager.delivery.qr import png_bytes, qr_png, qr_text
from vpn_manager.errors import InvalidInput
from vpn_manager.web.urls import settings_base_url, subscription_url

if TYPE_CHECKING:
    from vpn_manager.services.root import Services
    from vpn_manager.services.servers import Access


def link(
    ctx: typer.Context,
    name: Name,
    server: Annotated[
        str | None,
        typer.Option(
            "--server",
            metavar="SERVER",
            help="Only this server's link.",
            autocompletion=complete_servers,
        ),
    ] = None,
    qr: Annotated[bool, typer.Option("--qr", help="Also draw a QR code in the terminal.")] = False,
    png: Annotated[
        Path | None,
        typer.Option(
            "--png",
            metavar="FILE|DIR",
            help="Write the QR code as a PNG (0600); for a user on several servers, one per "
            "server into DIR (made 0700), named USER@SERVER.png.",
        ),
    ] = None,
    subscription: Annotated[
        bool,
        typer.Option(
            "--subscription",
            help="Print the user's subscription URL instead: every server, kept up to date by "
            "their app (served by `vpn web`).",
        ),
    ] = False,
    outline: Annotated[
        bool,
        typer.Option(
            "--outline",
            help="Print the user's Outline access keys (ssconf://, served by `vpn web`) for "
            "their Shadowsocks servers instead; refused for a 2022 cipher, which Outline's "
            "apps cannot use.",
        ),
    ] = False,
    output_format: FormatOption = None,
) -> None:
    """Print a user's share link(s) — what client apps import — and QR codes.

    Each link is labelled USER@SERVER in the app (the links.label setting); with several servers,
    each is printed under its server's name."""
    context = app_context(ctx)
    out = context.output(output_format)
    if outline and subscription:
        raise InvalidInput(
            "--outline and --subscription print different things; give one of them.",
            hint=f"vpn user link {name} --outline",
        )
    if subscription:
        if server is not None:
            raise InvalidInput(
                "A subscription holds every server of the user; --server does not apply.",
                hint=f"vpn user link {name} --subscription",
            )
        _subscription(context, name, qr=qr, png=png, output_format=output_format)
        return
    status, accesses = context.run(lambda services: _accesses(services, name, server, outline))
    if status in STATUS_WARNINGS:
        out.note(f"Warning: {name} {STATUS_WARNINGS[status].format(name=name)}")
    if outline:
        accesses = _outline_keys(context, name, accesses)
    if png is not None:
        _write_pngs(out, name, accesses, png)
    if out.structured:
        out.data([{"server": a.server, "protocol": a.protocol, "link": a.link} for a in accesses])
        return
    for access in accesses:
        if access.note:
            out.note(f"{access.server}: {access.note}")
    _print_links(out, accesses, qr=qr)


def _outline_keys(context: AppContext, name: str, accesses: list[Access]) -> list[Access]:
    """Each Shadowsocks server of the user's with its Outline dynamic access key as its link:
    `ssconf://` + the subscription's /outline/SERVER address (checked by the service first:
    `outline_access`)."""
    base = settings_base_url(context.settings.web)
    scheme, _, rest = base.partition("://")
    if scheme != "https":
        context.output().note(
            "Note: Outline's apps fetch ssconf:// keys over HTTPS: give `vpn web` a certificate "
            "(web.cert_file) or a TLS proxy in front (web.public_url https://…)."
        )
    url = subscription_url(rest, context.users(lambda s: s.subscription_token(name)))
    return [
        dataclasses.replace(a, link=f"ssconf://{url}/outline/{quote(a.server)}", note="")
        for a in accesses
    ]


# Why a user's links do not work now, and what lets them back in (after "Warning: NAME ").
STATUS_WARNINGS = {
    "disabled": "is disabled: these links do not work until `vpn user enable {name}`.",
    "expired": "has expired: these links do not work until their expiry is moved "
    "(`vpn user update {name} --expires …`).",
    "over-quota": "is over quota: these links do not work until the next reset period or "
    "`vpn user reset-usage {name}`.",
}


async def _accesses(
    services: Services, name: str, server: str | None, outline: bool
) -> tuple[str, list[Access]]:
    """The user's status and their ways into each server (or the one named; with `outline`,
    only Shadowsocks servers whose cipher Outline's apps speak), in one run."""
    if outline:
        accesses = await services.servers.outline_access(name, server)
    else:
        accesses = await services.servers.access(name, server)
    return (await services.users.get(name)).status.value, accesses


def _print_links(out: Output, accesses: list[Access], *, qr: bool) -> None:
    """One link alone as it is (to pipe or paste); several each under a line naming its server
    and protocol, the share links first and WireGuard's `.conf` blocks after them, so that a
    `.conf` never sits between links."""
    alone = len(accesses) == 1
    ordered = sorted(accesses, key=lambda a: a.data.format == "wireguard")  # a stable sort
    for number, access in enumerate(ordered):
        if not alone:
            out.out.write(("\n" if number else "") + f"{access.server} ({access.protocol})\n")
        if qr:
            out.out.write(qr_text(access.link) + "\n")
        out.out.write(access.link.rstrip("\n") + "\n")


def _write_pngs(out: Output, name: str, accesses: list[Access], path: Path) -> None:
    """One server's QR code to the file `path`, or (several servers, or `path` a directory)
    each server's to DIR/USER@SERVER.png. Every code is made before any file is written."""
    if len(accesses) == 1 and not path.is_dir():
        qr_png(accesses[0].link, path)
        out.note(f"Wrote the QR code to {path}.")
        return
    codes = [(f"{name}@{a.server}.png", png_bytes(a.link)) for a in accesses]
    if path.exists() and not path.is_dir():
        raise InvalidInput(
            f"{name} is on {len(accesses)} servers: --png needs a directory for their QR codes, "
            f"and {path} is not one.",
            hint="Give a directory (it is made if missing), or add --server.",
        )
    folder = private_dir(path, hint="Give a directory, or add --server.")
    for file_name, png_data in codes:
        write_private(folder / file_name, png_data)
    out.note(f"Wrote {len(codes)} QR codes to {folder}: " + ", ".join(f for f, _ in codes) + ".")


def client_config(
    ctx: typer.Context,
    name: Name,
    server: Annotated[
        str,
        typer.Option(
            "--server", metavar="SERVER", help="The server.", autocompletion=complete_servers
        ),
    ],
    client: Annotated[
        str, typer.Option("--client", metavar="xray|sing-box", help="Which client program.")
    ] = "xray",
    socks_port: Annotated[
        int,
        typer.Option("--socks-port", metavar="PORT", help="The local proxy port the client opens."),
    ] = 1080,
    file: Annotated[
        Path | None,
        typer.Option(
            "--file",
            "-o",
            metavar="FILE",
            help="Write it here (mode 0600) instead of stdout: it holds the user's secrets.",
        ),
    ] = None,
) -> None:
    """Print a ready client config for a user on a server (a local SOCKS/HTTP proxy); for a
    WireGuard server, the client's .conf."""
    context = app_context(ctx)
    if file is not None:
        check_file(file, CONFIG_FILE_HINT)  # before anything is read
    text, note = context.servers(lambda s: s.client_config(name, server, client, socks_port))
    if note:
        context.output().note(note)
    if file is None:
        sys.stdout.write(text)
        return
    write_private(file, text, CONFIG_FILE_HINT)
    context.output().note(f"Wrote the config to {file} (mode 0600).")


CONFIG_FILE_HINT = "Give a file name for the config, e.g. --file alice.json."


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
