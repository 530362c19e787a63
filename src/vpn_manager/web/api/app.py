"""The ASGI application of the API listener: /api/v1 (users, plans, servers, stats, audit), its
OpenAPI document at /api/openapi.json and the interactive docs at /api/docs. Every answer,
errors included, is JSON (`errors`); nothing here answers on the subscription listener."""

from __future__ import annotations

from contextlib import suppress
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException

from vpn_manager import __version__
from vpn_manager.errors import VpnError
from vpn_manager.web.api import docs, plans, servers, users
from vpn_manager.web.api.access import Api, Refused
from vpn_manager.web.api.errors import (
    INTERNAL,
    ErrorOut,
    error_response,
    http_sentence,
    status_of,
    unexpected,
    validation_sentence,
)

PREFIX = "/api/v1"
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
    # swagger-ui (/api/docs) runs scripts, all from here; the subscription app has its own,
    # stricter policy (web/app.py).
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; "
    "style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; "
    "form-action 'none'; frame-ancestors 'none'; base-uri 'none'",
}
ERROR_STATUSES = (400, 401, 403, 404, 409, 422, 429, 500, 502, 503)
RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorOut, "description": "An error: one sentence and a hint."}
    for status in ERROR_STATUSES
}


def api_app(api: Api) -> FastAPI:
    app = FastAPI(
        title="vpn-manager API",
        version=__version__,
        description="Users, servers, traffic and the audit log of one vpn-manager home. "
        "Authenticate with an API key: `Authorization: Bearer KEY` or `X-API-Key: KEY` "
        "(`vpn api-key create NAME --scope read|write`). Errors are JSON "
        '`{"error": sentence, "hint": hint or null}`.',
        openapi_url="/api/openapi.json",
        generate_unique_id_function=lambda route: route.name,  # operationId: user_add, …
        docs_url=None,
        redoc_url=None,
    )
    app.include_router(users.router(api, RESPONSES), prefix=PREFIX)
    app.include_router(users.grants_router(api, RESPONSES), prefix=PREFIX)
    app.include_router(plans.router(api, RESPONSES), prefix=PREFIX)
    app.include_router(servers.router(api, RESPONSES), prefix=PREFIX)
    app.include_router(servers.overview_router(api, RESPONSES), prefix=PREFIX)
    docs.mount(app)

    async def failed(request: Request, response: JSONResponse, sentence: str) -> JSONResponse:
        await api.audit(request, sentence)
        return response

    @app.exception_handler(Refused)
    async def refused(request: Request, exc: Refused) -> Response:
        response = error_response(exc.status, exc.error, exc.hint, exc.headers)
        return await failed(request, response, exc.error)

    @app.exception_handler(VpnError)
    async def vpn_error(request: Request, exc: VpnError) -> Response:
        response = error_response(status_of(exc), exc.message, exc.hint)
        return await failed(request, response, exc.message)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> Response:
        sentence = validation_sentence(exc)
        return await failed(request, error_response(422, sentence), sentence)

    @app.exception_handler(HTTPException)
    async def http_error(_request: Request, exc: HTTPException) -> Response:
        return error_response(exc.status_code, http_sentence(exc), headers=exc.headers)

    @app.exception_handler(Exception)
    async def internal(request: Request, exc: Exception) -> Response:
        response = unexpected(request, exc)
        with suppress(Exception):  # the log is what failed, perhaps: the client gets its 500
            await api.audit(request, INTERNAL)
        return response

    @app.middleware("http")
    async def headers(request: Request, call_next):  # type: ignore[no-untyped-def]
        response: Response = await call_next(request)
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        response.headers["Server"] = "vpn-manager"
        return response

    return app
