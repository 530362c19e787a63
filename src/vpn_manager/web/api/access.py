"""Who may call the API, and the record of what they changed.

A request carries its API key as `Authorization: Bearer KEY` or `X-API-Key: KEY`. No key or a
wrong one: 401; failed attempts count against the client's address (web.ratelimit) and past the
limit the address gets 429 until the window passes, whatever key it then sends. A read key on a
route that changes something: 403.

Every change (any method but GET) is written to the audit log with the key's name, the action,
its target and "ok" or the error's sentence, whether it succeeded or not (`Api.audit`).
Changes run one at a time (`Api.change`), so the lines saying how a change reached each server
(Services.take_applied) are the ones of that change.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Protocol, TypeVar

from fastapi import Depends, Request, Security, params
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from vpn_manager.web.ratelimit import FailureLimiter

if TYPE_CHECKING:
    from vpn_manager.services.root import Services

T = TypeVar("T")
READ = "read"
WRITE = "write"
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")


class Key(Protocol):
    """An API key as the key service returns it (services: ApiKey)."""

    @property
    def name(self) -> str: ...

    def allows(self, scope: str) -> bool: ...


Authenticate = Callable[[str], Awaitable[Key | None]]
Record = Callable[[str, str, str, str], Awaitable[object]]  # actor, action, target, result
Address = Callable[[Request], str]


class Refused(Exception):
    """The request is refused before any work: status, sentence, hint, headers."""

    def __init__(
        self, status: int, error: str, hint: str | None, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(error)
        self.status = status
        self.error = error
        self.hint = hint
        self.headers = headers


bearer = HTTPBearer(auto_error=False, description="Authorization: Bearer KEY")
header_key = APIKeyHeader(name="X-API-Key", auto_error=False, description="X-API-Key: KEY")
Bearer = Annotated[HTTPAuthorizationCredentials | None, Security(bearer)]
HeaderKey = Annotated[str | None, Security(header_key)]


@dataclass
class Api:
    """What the API's routes share: the open services, the key check, the audit log, the
    failure limiter, the subscription base URL (None when unknown) and the change turn."""

    services: Callable[[], Services]
    authenticate: Authenticate
    record: Record
    address: Address
    base_url: str | None = None
    failures: FailureLimiter = field(default_factory=FailureLimiter)
    turn: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def key(self, request: Request, scope: str, secret: str | None) -> Key:
        client = self.address(request)
        wait = self.failures.retry_after(client)
        if wait:
            raise Refused(
                429,
                "Too many failed attempts from this address.",
                f"Try again in {int(wait) + 1} seconds.",
                {"Retry-After": str(int(wait) + 1)},
            )
        if not secret:
            self.failures.failed(client)
            raise Refused(
                401,
                "This API needs a key.",
                "Send Authorization: Bearer KEY (make one with `vpn api-key create NAME`).",
                {"WWW-Authenticate": "Bearer"},
            )
        key = await self.authenticate(secret)
        if key is None:
            self.failures.failed(client)
            raise Refused(
                401,
                "This key is not valid (unknown, revoked or expired).",
                "Make one with `vpn api-key create NAME`.",
                {"WWW-Authenticate": "Bearer"},
            )
        request.state.actor = key.name
        if not key.allows(scope):
            what = "see credentials" if request.method in SAFE_METHODS else "make changes"
            raise Refused(
                403, f"The key {key.name!r} may not {what}.", "Use a key made with --scope write."
            )
        return key

    async def audit(self, request: Request, result: str, target: str | None = None) -> None:
        """Record a change (or a refused or failed one) made with the request's key; nothing
        for reads, or for a request whose key was not known."""
        actor = getattr(request.state, "actor", None)
        if actor is None or request.method in SAFE_METHODS:
            return
        if target is None:
            target = getattr(request.state, "target", None) or str(
                request.path_params.get("name", "-")
            )
        await self.record(actor, action_of(request), target, result)

    async def change(
        self, request: Request, target: str, work: Callable[[Services], Awaitable[T]]
    ) -> tuple[T, list[str]]:
        """Run a change in its turn; record it as "ok" (a failure is recorded by the error
        handlers, with its sentence). Returns the result and how it reached each server."""
        request.state.target = target
        async with self.turn:
            services = self.services()
            services.take_applied()  # lines a failed change left behind
            result = await work(services)
            applied = services.take_applied()
        await self.audit(request, "ok", target)
        return result, applied


def action_of(request: Request) -> str:
    """A route's action as the audit log names it, from its function: user_add -> "user.add",
    user_reset_usage -> "user.reset-usage"."""
    endpoint = request.scope.get("endpoint")
    name: str = getattr(endpoint, "__name__", "")
    if not name:
        return f"{request.method} {request.url.path}"
    noun, _, verb = name.partition("_")
    return f"{noun}.{verb.replace('_', '-')}" if verb else noun


def reader(api: Api) -> Callable[..., Awaitable[Key]]:
    async def read_key(request: Request, credentials: Bearer, x_api_key: HeaderKey) -> Key:
        return await api.key(request, READ, _secret(credentials, x_api_key))

    return read_key


def writer(api: Api) -> Callable[..., Awaitable[Key]]:
    async def write_key(request: Request, credentials: Bearer, x_api_key: HeaderKey) -> Key:
        return await api.key(request, WRITE, _secret(credentials, x_api_key))

    return write_key


def _secret(credentials: HTTPAuthorizationCredentials | None, header: str | None) -> str | None:
    if credentials is not None and credentials.credentials:
        return credentials.credentials
    return header or None


def dependencies(api: Api) -> tuple[params.Depends, params.Depends]:
    """The Depends() of read routes and of write routes."""
    return Depends(reader(api)), Depends(writer(api))
