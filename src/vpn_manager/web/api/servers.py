"""/api/v1/servers, /api/v1/stats and /api/v1/audit: what `vpn server …`, `vpn stats` and
`vpn audit` do, through the same service calls.

    GET    /servers                  list
    POST   /servers                  install and start (keys made once and kept)
    GET    /servers/{name}           one server
    DELETE /servers/{name}           stop and remove it with its users' credentials on it
    GET    /servers/{name}/status    running, answering, resources
    POST   /servers/{name}/start|stop|restart
    GET    /servers/{name}/usage     per-user traffic as the running engine counts it now
    GET    /stats                    users by status, servers, hourly traffic
    GET    /audit                    the audit log, newest first
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from pydantic import AwareDatetime

from vpn_manager.models.server import Server, ServerStatus
from vpn_manager.web.api.access import Api, dependencies
from vpn_manager.web.api.models import (
    AuditOut,
    Done,
    HourOut,
    ServerCreateIn,
    ServerUsage,
    Stats,
    Stopped,
)

Moment = Annotated[AwareDatetime | None, Query(description="An ISO time with its zone.")]


def router(api: Api, responses: dict[int | str, dict[str, Any]]) -> APIRouter:
    read, write = dependencies(api)
    servers = APIRouter(prefix="/servers", tags=["servers"], responses=responses)

    @servers.get("", dependencies=[read])
    async def server_list() -> list[Server]:
        """Servers, with whether each runs."""
        return await api.services().servers.all()

    @servers.post("", status_code=201, dependencies=[write])
    async def server_install(request: Request, body: ServerCreateIn) -> Server:
        """Install a server and start it: validated by its engine, probed, undone on failure."""
        server, _ = await api.change(request, body.name, lambda s: s.servers.install(body))
        return server

    @servers.get("/{name}", dependencies=[read])
    async def server_show(name: str) -> Server:
        """One server."""
        return await api.services().servers.get(name)

    @servers.delete("/{name}", dependencies=[write])
    async def server_remove(request: Request, name: str) -> Done:
        """Stop a server and remove it, with its rendered config and its users' credentials."""
        await api.change(request, name, lambda s: s.servers.remove(name))
        return Done(name=name, done=f"Removed {name}.")

    @servers.get("/{name}/status", dependencies=[read])
    async def server_status(name: str) -> ServerStatus:
        """Whether a server runs, answers on its port and API, and what it uses."""
        return await api.services().servers.status(name)

    @servers.post("/{name}/start", dependencies=[write])
    async def server_start(request: Request, name: str) -> ServerStatus:
        """Start a server (and keep it wanted running)."""
        state, _ = await api.change(request, name, lambda s: s.servers.start(name))
        return state

    @servers.post("/{name}/stop", dependencies=[write])
    async def server_stop(request: Request, name: str) -> Stopped:
        """Stop a server (it stays stopped until started)."""
        was, _ = await api.change(request, name, lambda s: s.servers.stop(name))
        return Stopped(name=name, stopped=was)

    @servers.post("/{name}/restart", dependencies=[write])
    async def server_restart(request: Request, name: str) -> ServerStatus:
        """Restart a server: validate its config, restart, probe; roll back if it fails."""
        state, _ = await api.change(request, name, lambda s: s.servers.restart(name))
        return state

    @servers.get("/{name}/usage", dependencies=[read])
    async def server_usage(name: str) -> list[ServerUsage]:
        """Per-user traffic as the running engine counts it now (since it started)."""
        counters = await api.services().servers.usage(name)
        return [
            ServerUsage(name=user, upload_bytes=up, download_bytes=down)
            for user, (up, down) in sorted(counters.items())
        ]

    return servers


def overview_router(api: Api, responses: dict[int | str, dict[str, Any]]) -> APIRouter:
    read, _ = dependencies(api)
    overview = APIRouter(tags=["stats and audit"], responses=responses)

    @overview.get("/stats", dependencies=[read])
    async def stats(since: Moment = None, until: Moment = None) -> Stats:
        """Users by status, servers (and how many run), and hourly traffic per user and server
        from `since` (inclusive) to `until` (exclusive); kept for 90 days."""
        services = api.services()
        counts = await services.users.counts()
        every = await services.servers.all()
        hours = await services.history.hours(since, until)
        return Stats(
            users={str(status): n for status, n in counts.items()},
            servers=len(every),
            running=sum(1 for s in every if s.running),
            hours=[
                HourOut(hour=h, user=u, server=s, upload_bytes=up, download_bytes=down)
                for h, u, s, up, down in hours
            ],
        )

    @overview.get("/audit", dependencies=[read])
    async def audit(
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
        actor: Annotated[str | None, Query(max_length=64)] = None,
        since: Moment = None,
    ) -> list[AuditOut]:
        """The changes made through the API (and the refused ones), newest first."""
        entries = await api.services().audit.entries(limit=limit, actor=actor, since=since)
        return [AuditOut.model_validate(entry) for entry in entries]

    return overview
