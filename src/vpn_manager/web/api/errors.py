"""How the API reports a failure: always JSON `{"error": sentence, "hint": hint or null}`.

The project's error classes (vpn_manager.errors) map to HTTP statuses in one table, STATUSES,
with the same meanings as the CLI's exit codes; request validation (FastAPI's 422) and HTTP
errors (unknown path, wrong method) take the same shape; anything unexpected is a 500 saying
"Internal error." and nothing else (the traceback goes to the log, never to the client).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException

from vpn_manager.errors import (
    Cancelled,
    ConfigError,
    Conflict,
    EngineError,
    EngineMissing,
    FileError,
    InvalidInput,
    NotFound,
    StorageError,
    VpnError,
)

log = logging.getLogger("vpn_manager.web.api")

# Error class -> (HTTP status, what it means); the most specific class wins (an EngineMissing is
# an EngineError too). The README's "REST API" shows this table.
STATUSES: dict[type[VpnError], tuple[int, str]] = {
    InvalidInput: (400, "a value the API cannot accept (exit code 3)"),
    NotFound: (404, "no user or server of that name (exit code 4)"),
    Conflict: (409, "clashes with what exists: a taken name or port (exit code 5)"),
    Cancelled: (409, "the change was interrupted (exit code 10)"),
    ConfigError: (500, "the settings or this home's keys cannot be used (exit code 6)"),
    FileError: (500, "a file the change needs cannot be written or read (exit code 11)"),
    EngineError: (502, "a VPN engine refused the change or is not running (exit code 8)"),
    EngineMissing: (503, "the engine a server needs is not installed (exit code 9)"),
    StorageError: (503, "the database cannot be reached or is locked (exit code 7)"),
    VpnError: (500, "any other failure (exit code 1)"),
}
INTERNAL = "Internal error."


class ErrorOut(BaseModel):
    """Every error response."""

    error: str
    hint: str | None = None


def status_of(exc: VpnError) -> int:
    for cls in type(exc).__mro__:
        if cls in STATUSES:
            return STATUSES[cls][0]
    return 500  # pragma: no cover - VpnError is in the table


def error_response(
    status: int, error: str, hint: str | None = None, headers: Mapping[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(
        {"error": error, "hint": hint}, status_code=status, headers=dict(headers or {})
    )


def validation_sentence(exc: RequestValidationError) -> str:
    """The first problem of a request, as one sentence (as models.invalid_input words it)."""
    errors: list[Any] = list(exc.errors())
    if not errors:
        return "The request is not valid."
    first = errors[0]
    where = ".".join(str(part) for part in first.get("loc", ())) or "request"
    reason = str(first.get("msg", "is not valid")).removeprefix("Value error, ")
    value = first.get("input")
    secret = any(word in where for word in SECRET_FIELDS)  # never echoed, nor audited
    shown = (
        f" {value!r}"
        if isinstance(value, str | int) and len(str(value)) <= 80 and not secret
        else ""
    )
    return f"Invalid {where}{shown}: {reason}."


SECRET_FIELDS = ("password", "key", "token", "secret")
HTTP_SENTENCES = {
    404: "Not found.",
    405: "This path does not take that method.",
}


def http_sentence(exc: HTTPException) -> str:
    if isinstance(exc.detail, str) and exc.detail and exc.status_code not in HTTP_SENTENCES:
        return exc.detail
    return HTTP_SENTENCES.get(exc.status_code, "The request cannot be served.")


def unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.error("%s %s failed", request.method, request.url.path, exc_info=exc)
    return error_response(500, INTERNAL)
