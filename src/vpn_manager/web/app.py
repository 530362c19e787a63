"""The ASGI application of the subscription listener: the subscription routes, and for any
other path the same plain 404 (nothing tells what else the server is)."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager

from fastapi import FastAPI, Request
from fastapi.responses import PlainTextResponse, Response
from starlette.exceptions import HTTPException

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

    @app.middleware("http")
    async def headers(request: Request, call_next):  # type: ignore[no-untyped-def]
        response: Response = await call_next(request)
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        response.headers["Server"] = "vpn-manager"
        return response

    return app
