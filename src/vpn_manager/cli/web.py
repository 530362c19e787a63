"""`vpn web`: the subscription server, in the foreground (for systemd or a container)."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Annotated

import typer

from vpn_manager.cli.context import app_context
from vpn_manager.web import server
from vpn_manager.web.urls import listen_url

if TYPE_CHECKING:
    from fastapi import FastAPI

    from vpn_manager.services.root import Services
    from vpn_manager.services.subscriptions import Subscriber, Subscriptions


def web(
    ctx: typer.Context,
    listen: Annotated[
        str | None,
        typer.Option("--listen", metavar="ADDRESS", help="Listen here (web.listen)."),
    ] = None,
    port: Annotated[
        int | None,
        typer.Option("--port", metavar="PORT", min=1, max=65535, help="On this port (web.port)."),
    ] = None,
    cert: Annotated[
        str | None,
        typer.Option("--cert", metavar="FILE", help="HTTPS with this certificate (web.cert_file)."),
    ] = None,
    key: Annotated[
        str | None,
        typer.Option("--key", metavar="FILE", help="… and its private key (web.key_file)."),
    ] = None,
) -> None:
    """Serve each user's subscription URL: their servers for their app, their page in a browser.

    Each app gets the format it reads (base64 links, sing-box, Clash/Mihomo); a browser gets the
    user's page. Runs until Ctrl-C or SIGTERM; see the README's Subscriptions."""
    from vpn_manager.web.app import subscription_app
    from vpn_manager.web.subscriptions import WebConfig

    context = app_context(ctx)
    settings = context.settings.web
    host = listen if listen is not None else settings.listen
    port = port if port is not None else settings.port
    cert_file = cert if cert is not None else settings.cert_file
    key_file = key if key is not None else settings.key_file
    server.check_tls(cert_file, key_file)
    config = WebConfig(
        prefix=settings.path_prefix,
        public_url=settings.public_url,
        trusted_proxies=settings.trusted_proxies,
        title=settings.title,
    )
    opened: list[tuple[Services, Subscriptions]] = []

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        services = context.services()
        opened.append((services, services.subscriptions))  # one, for its cache
        try:
            yield
        finally:
            services, subscriptions = opened.pop()
            subscriptions.close()
            await services.close()

    async def lookup(token: str) -> Subscriber | None:
        return await opened[0][1].find(token)

    app = subscription_app(lookup, config, lifespan=lifespan)
    sock = server.bind(host, port)
    where = listen_url(host, port, config.prefix, tls=bool(cert_file))
    sys.stderr.write(f"Serving subscriptions on {where}/sub/TOKEN (Ctrl-C stops).\n")
    sys.stderr.flush()
    server.serve(app, sock, cert_file=cert_file, key_file=key_file)
