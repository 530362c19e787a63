"""`vpn web`: the subscription server and the REST API, in the foreground (for systemd or a
container). One process, one uvicorn server, two listening sockets: subscriptions on web.listen
(public by choice) and the API on api.listen (loopback unless chosen)."""

from __future__ import annotations

import ipaddress
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Annotated

import typer

from vpn_manager.cli.context import app_context
from vpn_manager.errors import InvalidInput
from vpn_manager.web import server
from vpn_manager.web.urls import base_url, listen_url

if TYPE_CHECKING:
    from fastapi import Request
    from starlette.types import ASGIApp

    from vpn_manager.services.apikeys import ApiKey
    from vpn_manager.services.root import Services
    from vpn_manager.services.subscriptions import Subscriber, Subscriptions
    from vpn_manager.web.subscriptions import WebConfig


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
    api_listen: Annotated[
        str | None,
        typer.Option(
            "--api-listen", metavar="ADDRESS", help="The REST API listens here (api.listen)."
        ),
    ] = None,
    api_port: Annotated[
        int | None,
        typer.Option(
            "--api-port", metavar="PORT", min=1, max=65535, help="On this port (api.port)."
        ),
    ] = None,
    no_api: Annotated[
        bool, typer.Option("--no-api", help="Serve subscriptions only (api.enabled = false).")
    ] = False,
) -> None:
    """Serve each user's subscription URL, and the REST API on its own address.

    Each app gets the format it reads (base64 links, sing-box, Clash/Mihomo); a browser gets the
    user's page. The API (/api/v1, docs at /api/docs) takes API keys. Runs until Ctrl-C or
    SIGTERM; see the README's Subscriptions and REST API."""
    from vpn_manager.web.app import Listener, Listeners, OnFirstRequest, subscription_app
    from vpn_manager.web.subscriptions import WebConfig

    context = app_context(ctx)
    settings = context.settings.web
    api_settings = context.settings.api
    host = listen if listen is not None else settings.listen
    port = port if port is not None else settings.port
    cert_file = cert if cert is not None else settings.cert_file
    key_file = key if key is not None else settings.key_file
    with_api = api_settings.enabled and not no_api
    api_host = api_listen if api_listen is not None else api_settings.listen
    api_port = api_port if api_port is not None else api_settings.port
    server.check_tls(cert_file, key_file)
    tls = bool(cert_file)
    config = WebConfig(
        prefix=settings.path_prefix,
        public_url=settings.public_url,
        trusted_proxies=settings.trusted_proxies,
        title=settings.title,
    )
    opened: list[tuple[Services, Subscriptions]] = []

    @asynccontextmanager
    async def lifespan() -> AsyncIterator[None]:
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

    listeners = [Listener(host, port, subscription_app(lookup, config))]
    if with_api:
        users_url = _users_url(settings.public_url, host, port, settings.path_prefix, tls)
        api = OnFirstRequest(lambda: _api(opened, config, users_url))
        listeners.append(Listener(api_host, api_port, api))
    socks = [server.bind(host, port)]
    try:
        if with_api:
            socks.append(server.bind(api_host, api_port, setting="api"))
    except BaseException:
        socks[0].close()
        raise
    where = listen_url(host, port, config.prefix, tls=tls)
    sys.stderr.write(f"Serving subscriptions on {where}/sub/TOKEN (Ctrl-C stops).\n")
    if with_api:
        _announce_api(api_host, api_port, tls)
    sys.stderr.flush()
    server.serve(Listeners(listeners, lifespan), socks, cert_file=cert_file, key_file=key_file)


def _api(
    opened: list[tuple[Services, Subscriptions]], config: WebConfig, users_url: str | None
) -> ASGIApp:
    """The API's app over the services the lifespan opens (`opened[0][0]`)."""
    from vpn_manager.web.api.access import Api
    from vpn_manager.web.api.app import api_app
    from vpn_manager.web.subscriptions import client_address

    async def authenticate(secret: str) -> ApiKey | None:
        return await opened[0][0].api_keys.authenticate(secret)

    async def record(actor: str, action: str, target: str, result: str) -> None:
        await opened[0][0].audit.record(actor, action, target, result)

    def address(request: Request) -> str:
        return client_address(request, config)

    return api_app(
        Api(
            services=lambda: opened[0][0],
            authenticate=authenticate,
            record=record,
            address=address,
            base_url=users_url,
        )
    )


def _users_url(public_url: str | None, host: str, port: int, prefix: str, tls: bool) -> str | None:
    """Where users' apps reach their subscriptions, for the URLs the API returns; None when
    vpn web listens on every address and public_url is not set."""
    try:
        return base_url(public_url=public_url, listen=host, port=port, prefix=prefix, tls=tls)
    except InvalidInput:
        return None


def _announce_api(host: str, port: int, tls: bool) -> None:
    where = listen_url(host, port, "", tls=tls)
    sys.stderr.write(f"Serving the REST API on {where}/api/v1 (docs: {where}/api/docs).\n")
    if not _loopback(host):
        sys.stderr.write(
            f"Warning: the API listens on {host}, so it is reachable from the network; API "
            "keys are its only protection (--api-listen 127.0.0.1 keeps it local).\n"
        )


def _loopback(host: str) -> bool:
    if host.strip("[]") == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
