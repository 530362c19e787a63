"""The ASGI applications of `vpn web`: the subscription listener's (the subscription routes, and
for any other path the same plain 404: nothing tells what else the server is), and `Listeners`,
which sends each connection to the app of the listener it came in on (the REST API has its own,
web/api) and runs the one lifespan both share."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass

from fastapi import FastAPI, Request
from fastapi.responses import PlainTextResponse, Response
from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from vpn_manager.web.subscriptions import NOT_FOUND, Lookup, WebConfig, router

Lifespan = Callable[[FastAPI], AbstractAsyncContextManager[None]]
WILDCARDS = ("0.0.0.0", "::", "")
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


@dataclass(frozen=True)
class Listener:
    """One listening socket's address and the app that answers on it."""

    host: str
    port: int
    app: ASGIApp

    def takes(self, host: str, port: int) -> bool:
        bound = self.host.strip("[]")
        return port == self.port and (bound in WILDCARDS or _same(bound, host))


def _same(bound: str, host: str) -> bool:
    return host == bound or host.removeprefix("::ffff:") == bound


class OnFirstRequest:
    """An app built when its first request comes: the REST API's routes and models (some 3 MB)
    stay out of a `vpn web` whose API nobody calls (web-rss in bench/run.py)."""

    def __init__(self, build: Callable[[], ASGIApp]) -> None:
        self.build = build
        self._app: ASGIApp | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self._app is None:
            self._app = self.build()  # no await before this: built once
        await self._app(scope, receive, send)


class Listeners:
    """One ASGI app for one uvicorn server with several sockets: each connection goes to the
    app of the listener it came in on (scope["server"], the local address it reached), so the
    API answers nothing on the subscription socket and the other way round. The lifespan
    (opening the services both use) runs once, here."""

    def __init__(
        self,
        listeners: list[Listener],
        lifespan: Callable[[], AbstractAsyncContextManager[None]] | None = None,
    ) -> None:
        self.listeners = listeners
        self.lifespan = lifespan

    def app_for(self, server: tuple[str, int] | None) -> ASGIApp | None:
        if server is None:
            return None
        host, port = server[0], int(server[1])
        for listener in self.listeners:
            if listener.takes(host, port):
                return listener.app
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        app = self.app_for(scope.get("server"))
        if app is None:
            if scope["type"] == "http":
                await PlainTextResponse(NOT_FOUND, status_code=404)(scope, receive, send)
            return
        await app(scope, receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        await receive()  # lifespan.startup
        context = self.lifespan() if self.lifespan is not None else None
        try:
            if context is not None:
                await context.__aenter__()
        except Exception as exc:
            await send({"type": "lifespan.startup.failed", "message": str(exc)})
            return
        await send({"type": "lifespan.startup.complete"})
        await receive()  # lifespan.shutdown
        try:
            if context is not None:
                await context.__aexit__(None, None, None)
        finally:
            await send({"type": "lifespan.shutdown.complete"})


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
