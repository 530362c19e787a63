"""The ASGI application of the subscription listener: the subscription routes, and for any
other path the same plain 404 (nothing tells what else the server is)."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager

from fastapi import FastAPI, Request
from fastapi.responses import PlainTextResponse, Response
from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from vpn_manager.web.subscriptions import NOT_FOUND, Lookup, WebConfig, router

Lifespan = Callable[[FastAPI], AbstractAsyncContextManager[None]]
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; img-src data:; "
    "form-action 'none'; frame-ancestors 'none'; base-uri 'none'",
}


def subscription_app(
    lookup: Lookup, config: WebConfig, lifespan: Lifespan | None = None
) -> FastAPI:
    """`lifespan`: opens what `lookup` uses (the services) in the server's event loop, and
    closes it when the server stops."""
    app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None, lifespan=lifespan)
    app.include_router(router(lookup, config))

    @app.exception_handler(HTTPException)
    async def plain(_request: Request, exc: HTTPException) -> Response:
        if exc.status_code == 404:
            return PlainTextResponse(NOT_FOUND, status_code=404)
        return PlainTextResponse(f"{exc.detail}\n", status_code=exc.status_code)

    app.add_middleware(SecurityHeaders)
    return app


class SecurityHeaders:
    """Every response gets SECURITY_HEADERS (unless it set its own) and `Server: vpn-manager`.
    Plain ASGI: Starlette's @app.middleware("http") runs each request in a task of its own with
    streams between them, which cost more than all else a subscription from the cache needs."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    headers.setdefault(name, value)
                headers["Server"] = "vpn-manager"
            await send(message)

        await self.app(scope, receive, with_headers)
