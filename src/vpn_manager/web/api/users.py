"""/api/v1/users: what `vpn user …` does, through the same service calls.

GET    /users                      list (?status=, ?search=)
POST   /users                      create (with servers: applied live)
GET    /users/{name}               one user
PATCH  /users/{name}               change details, limits or plan (only the fields sent)
DELETE /users/{name}               delete (taken off every server)
POST   /users/{name}/enable        let them connect again
POST   /users/{name}/disable       stop them (open connections cut)
POST   /users/{name}/grant         access to a server ({"server": …})
POST   /users/{name}/revoke        access taken away ({"server": …})
GET    /users/{name}/links         share links and the subscription URL (credentials: a write key)
GET    /users/{name}/usage         totals, the period's usage and hourly history
POST   /users/{name}/reset-usage   a new quota period now
POST   /users/{name}/rotate-token  a new subscription URL (the old one stops working)
POST   /grants                     many users on many servers at once ({"users", "servers"})
POST   /revokes                    many users off many servers at once (all or nothing)
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, Query, Request
from pydantic import AwareDatetime

from vpn_manager.models import User, UserCreate, UserFilter, UserStatus
from vpn_manager.web.api.access import Api, dependencies
from vpn_manager.web.api.models import (
    AccessIn,
    BulkDone,
    BulkGrantIn,
    Done,
    Granted,
    GrantIn,
    HourOut,
    LinkOut,
    LinksOut,
    PairOut,
    RevokeIn,
    TokenOut,
    UserChanged,
    UserCreateIn,
    UserUpdateIn,
    UserUsage,
)
from vpn_manager.web.urls import subscription_url

if TYPE_CHECKING:
    from collections.abc import Sequence

    from vpn_manager.services.root import Services
    from vpn_manager.services.servers import Pair

UsagePeriod = Annotated[
    AwareDatetime | None,
    Query(description="Hourly history from this time (default: the last 7 days)."),
]


def router(api: Api, responses: dict[int | str, dict[str, Any]]) -> APIRouter:
    """The records and their limits (as cli/users/records.py); `access` adds the rest."""
    read, write = dependencies(api)
    users = APIRouter(prefix="/users", tags=["users"], responses=responses)

    @users.get("", dependencies=[read])
    async def user_list(
        status: UserStatus | None = None,
        search: Annotated[str | None, Query(max_length=200)] = None,
    ) -> list[User]:
        """Users, all or those in a status or whose name, e-mail or note contains `search`."""
        return await api.services().users.list(UserFilter(status=status, search=search))

    @users.post("", status_code=201, dependencies=[write])
    async def user_add(request: Request, body: UserCreateIn) -> UserChanged:
        """Create a user; with `servers`, they get access there at once (applied live)."""
        create = UserCreate.model_validate(body.model_dump(exclude={"servers"}, exclude_unset=True))
        made, applied = await api.change(
            request,
            body.name,
            lambda s: s.users.add([create], servers=body.servers),
        )
        return UserChanged(user=made[0], applied=applied)

    @users.get("/{name}", dependencies=[read])
    async def user_show(name: str) -> User:
        """One user: limits, usage and servers."""
        return await api.services().users.get(name)

    @users.patch("/{name}", dependencies=[write])
    async def user_update(
        request: Request,
        name: str,
        body: UserUpdateIn,
        force: Annotated[
            bool, Query(description="Accept an expiry in the past: the user expires at once.")
        ] = False,
    ) -> UserChanged:
        """Change a user's details or limits; only the fields sent change (null clears). The
        limits are checked at once: a raised quota or a later expiry lets a limited user back
        in, on their running servers too."""
        user, applied = await api.change(request, name, lambda s: s.users.update(name, body, force))
        return UserChanged(user=user, applied=applied)

    @users.delete("/{name}", dependencies=[write])
    async def user_delete(request: Request, name: str) -> Done:
        """Delete a user and their credentials on every server."""
        _, applied = await api.change(request, name, lambda s: s.users.delete([name]))
        return Done(name=name, done=f"Deleted {name}.", applied=applied)

    @users.post("/{name}/enable", dependencies=[write])
    async def user_enable(request: Request, name: str) -> UserChanged:
        """Let a user connect again."""

        async def work(s: Services) -> User:
            await s.users.enable([name])
            return await s.users.get(name)

        user, applied = await api.change(request, name, work)
        return UserChanged(user=user, applied=applied)

    @users.post("/{name}/disable", dependencies=[write])
    async def user_disable(request: Request, name: str) -> UserChanged:
        """Stop a user from connecting; their open connections are cut."""

        async def work(s: Services) -> User:
            await s.users.disable([name])
            return await s.users.get(name)

        user, applied = await api.change(request, name, work)
        return UserChanged(user=user, applied=applied)

    access(api, users)
    return users


def access(api: Api, users: APIRouter) -> None:
    """A user's access to servers and what their client needs; their usage and token."""
    read, write = dependencies(api)

    @users.post("/{name}/grant", dependencies=[write])
    async def user_grant(request: Request, name: str, body: GrantIn) -> Granted:
        """Give a user access to a server (credentials made once; applied live)."""
        added, applied = await api.change(
            request,
            f"{name} on {body.server}",
            lambda s: s.servers.grant([name], body.server, body.password),
        )
        return Granted(name=name, server=body.server, granted=bool(added), applied=applied)

    @users.post("/{name}/revoke", dependencies=[write])
    async def user_revoke(request: Request, name: str, body: RevokeIn) -> Done:
        """Take a user's access to a server away; their open connections are cut."""
        _, applied = await api.change(
            request, f"{name} on {body.server}", lambda s: s.servers.revoke([name], body.server)
        )
        return Done(
            name=name, done=f"{name} no longer has access to {body.server}.", applied=applied
        )

    @users.get("/{name}/links", dependencies=[write])
    async def user_links(name: str, server: str | None = None) -> LinksOut:
        """A user's share links (what client apps import; they hold credentials), one per
        server or the one named, and their subscription URL. Credentials: a write key only,
        so that a key made to look (a dashboard's) hands out no way in."""
        services = api.services()
        user = await services.users.get(name)  # NotFound first
        links: list[LinkOut] = []
        if user.servers or server is not None:
            links = [
                LinkOut(server=a.server, protocol=a.protocol, link=a.link, note=a.note)
                for a in await services.servers.access(name, server)
            ]
        url = None
        if api.base_url is not None:
            url = subscription_url(api.base_url, await services.users.subscription_token(name))
        return LinksOut(name=name, subscription_url=url, links=links)

    @users.get("/{name}/usage", dependencies=[read])
    async def user_usage(name: str, since: UsagePeriod = None) -> UserUsage:
        """A user's traffic: lifetime totals, this quota period's, and per hour and server."""
        services = api.services()
        user = await services.users.get(name)
        start = since or datetime.now(UTC) - timedelta(days=7)
        hours = [
            HourOut(hour=h, user=u, server=s, upload_bytes=up, download_bytes=down)
            for h, u, s, up, down in await services.history.hours(start, None, user=name)
        ]
        return UserUsage(
            name=name,
            upload_bytes=user.upload_bytes,
            download_bytes=user.download_bytes,
            used_bytes=user.used_bytes,
            period_upload_bytes=user.period_upload_bytes,
            period_download_bytes=user.period_download_bytes,
            period_started_at=user.period_started_at,
            quota_bytes=user.quota_bytes,
            hours=hours,
        )

    @users.post("/{name}/reset-usage", dependencies=[write])
    async def user_reset_usage(request: Request, name: str) -> Done:
        """Start a new quota period now; a user over quota can connect again."""
        _, applied = await api.change(request, name, lambda s: s.limits.reset_usage([name]))
        return Done(name=name, done=f"Reset the usage of {name}.", applied=applied)

    @users.post("/{name}/rotate-token", dependencies=[write])
    async def user_rotate_token(request: Request, name: str) -> TokenOut:
        """A new subscription token; the old URL stops working at once."""
        token, _ = await api.change(request, name, lambda s: s.users.rotate_token(name))
        url = subscription_url(api.base_url, token) if api.base_url is not None else None
        return TokenOut(name=name, subscription_token=token, subscription_url=url)


def grants_router(api: Api, responses: dict[int | str, dict[str, Any]]) -> APIRouter:
    """Access in bulk (as `vpn user grant|revoke NAME... --server S...`): every pair in one
    transaction, one apply per server, all or nothing."""
    _, write = dependencies(api)
    bulk = APIRouter(tags=["users"], responses=responses)

    @bulk.post("/grants", dependencies=[write])
    async def users_grant(request: Request, body: BulkGrantIn) -> BulkDone:
        """Give users access to servers; `changed` is False where they had it already."""
        done, applied = await api.change(
            request,
            _target(body),
            lambda s: s.servers.grant_many(
                body.selected(), body.servers, password=body.password, status=body.status
            ),
        )
        return BulkDone(pairs=_pairs(done), applied=applied)

    @bulk.post("/revokes", dependencies=[write])
    async def users_revoke(request: Request, body: AccessIn) -> BulkDone:
        """Take users' access to servers away (open connections cut); `changed` is False where
        they had none."""
        done, applied = await api.change(
            request,
            _target(body),
            lambda s: s.servers.revoke_many(body.selected(), body.servers, status=body.status),
        )
        return BulkDone(pairs=_pairs(done), applied=applied)

    return bulk


def _target(body: AccessIn) -> str:
    """What the audit log names: the users (a count past a few) on the servers."""
    if body.all_users:
        users = "every user"
    elif len(body.users) <= 3:
        users = ", ".join(body.users)
    else:
        users = f"{len(body.users)} users"
    if body.status is not None:
        users += f" ({body.status})"
    servers = ", ".join(body.servers)
    return f"{users} on {servers}"


def _pairs(done: Sequence[Pair]) -> list[PairOut]:
    return [PairOut(name=p.user, server=p.server, changed=p.changed) for p in done]
