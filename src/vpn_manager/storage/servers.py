"""Server rows and the credentials users hold on them. Every function runs in the caller's
session."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from vpn_manager.errors import Conflict, NotFound
from vpn_manager.kinds import UserStatus
from vpn_manager.specs import Client, ServerSpec
from vpn_manager.storage.orm import ServerRow, UserCredentialRow, UserRow

if TYPE_CHECKING:
    from vpn_manager.models.server import Server


def spec_of(row: ServerRow) -> ServerSpec:
    return ServerSpec(
        name=row.name,
        protocol=row.protocol,
        listen=row.listen,
        port=row.port,
        host=row.host,
        settings=dict(row.settings),
        secret=dict(row.secret),
        runtime=row.runtime,
        image=row.image,
        docker_host=row.docker_host,
        engine=row.engine,
    )


def read_model(row: ServerRow, users: int) -> Server:
    from vpn_manager.models.server import Server  # built for commands, never in the service

    return Server.model_validate(
        {
            "name": row.name,
            "protocol": row.protocol,
            "engine": row.engine,
            "runtime": row.runtime,
            "image": row.image,
            "docker_host": row.docker_host,
            "listen": row.listen,
            "port": row.port,
            "host": row.host,
            "desired": row.desired,
            "settings": dict(row.settings),
            "users": users,
            "created_at": row.created_at,
            "updated_at": row.updated_at,
        }
    )


async def server_row(session: AsyncSession, name: str) -> ServerRow:
    row = (await session.execute(select(ServerRow).where(ServerRow.name == name))).scalar()
    if row is None:
        raise NotFound(f"There is no server named {name!r}.", hint="See `vpn server list`.")
    return row


async def name_taken(session: AsyncSession, name: str) -> bool:
    found = await session.execute(select(ServerRow.id).where(ServerRow.name == name))
    return found.scalar() is not None


async def ports_in_use(
    session: AsyncSession, control_ports: Callable[[str, str, dict[str, Any]], Iterable[int]]
) -> dict[int, str]:
    """Ports our servers hold (their own, and their control APIs' as `control_ports` reads them
    from an engine's name, a protocol and the stored settings), to refuse clashes early."""
    ports: dict[int, str] = {}
    for row in (await session.execute(select(ServerRow))).scalars():
        ports[row.port] = row.name
        for port in control_ports(row.engine, row.protocol, row.settings):
            ports[port] = f"{row.name} (API)"
    return ports


async def insert_server(session: AsyncSession, values: dict[str, Any], now: datetime) -> ServerRow:
    if await name_taken(session, values["name"]):
        raise Conflict(
            f"A server named {values['name']!r} already exists.", hint="Pick another --name."
        )
    row = ServerRow(**values, created_at=now, updated_at=now)
    session.add(row)
    await session.flush()
    return row


async def list_servers(session: AsyncSession) -> list[tuple[ServerRow, int]]:
    counts = dict(
        (
            await session.execute(
                select(UserCredentialRow.server_id, func.count()).group_by(
                    UserCredentialRow.server_id
                )
            )
        ).all()
    )
    rows = (await session.execute(select(ServerRow).order_by(ServerRow.name))).scalars()
    return [(row, counts.get(row.id, 0)) for row in rows]


_IN_LIMIT = 500  # more ids than this: read everyone and pick in Python (SQL variable limits)


async def clients(
    session: AsyncSession,
    server_id: int,
    *,
    active_only: bool = True,
    user_ids: Sequence[int] | None = None,
) -> list[Client]:
    """The users holding credentials on a server, with them, by user id: by default only those
    who may connect now (active), else everyone whatever their status; only `user_ids` if
    given."""
    return [c for c, _ in await _clients(session, server_id, user_ids, active_only)]


async def clients_and_status(session: AsyncSession, server_id: int) -> list[tuple[Client, bool]]:
    """Everyone holding credentials on a server, by user id, each with whether they may connect
    now (active): one read serves both views."""
    return await _clients(session, server_id, None, active_only=False)


async def _clients(
    session: AsyncSession, server_id: int, user_ids: Sequence[int] | None, active_only: bool
) -> list[tuple[Client, bool]]:
    active = UserRow.status == UserStatus.ACTIVE.value
    query = (
        select(UserRow.id, UserRow.name, UserCredentialRow.secret, active)
        .join(UserCredentialRow, UserCredentialRow.user_id == UserRow.id)
        .where(UserCredentialRow.server_id == server_id)
        .order_by(UserRow.id)
    )
    if active_only:
        query = query.where(active)
    wanted = None if user_ids is None else set(user_ids)
    if wanted is not None and len(wanted) <= _IN_LIMIT:
        query = query.where(UserRow.id.in_(wanted))
    connection = await session.connection()  # plain rows: no ORM bookkeeping for 10,000 users
    result = await connection.execute(query)
    return [
        (Client(user_id, name, dict(secret)), bool(ok))
        for user_id, name, secret, ok in result.all()
        if wanted is None or user_id in wanted
    ]


async def identities(session: AsyncSession, server_id: int) -> list[Client]:
    """Everyone on a server with just what identifies them to the engine (no secrets): the
    accounting poll's view, read without decoding every credential."""
    public_key = UserCredentialRow.secret["public_key"].as_string()
    connection = await session.connection()  # plain rows: no ORM bookkeeping for 10,000 peers
    result = await connection.execute(
        select(UserRow.id, UserRow.name, public_key)
        .join(UserCredentialRow, UserCredentialRow.user_id == UserRow.id)
        .where(UserCredentialRow.server_id == server_id)
    )
    return [
        Client(user_id, name, {"public_key": key} if key else {})
        for user_id, name, key in result.all()
    ]


async def holders(session: AsyncSession, server_id: int, user_ids: Sequence[int]) -> set[int]:
    """Which of these users already hold credentials on the server."""
    found: set[int] = set()
    for start in range(0, len(user_ids), 500):
        result = await session.execute(
            select(UserCredentialRow.user_id).where(
                UserCredentialRow.server_id == server_id,
                UserCredentialRow.user_id.in_(user_ids[start : start + 500]),
            )
        )
        found.update(result.scalars())
    return found


async def add_credentials(
    session: AsyncSession,
    server: ServerRow,
    grants: Sequence[tuple[int, dict[str, Any]]],
    now: datetime,
) -> None:
    rows = [
        {
            "user_id": user_id,
            "server_id": server.id,
            "server": server.name,
            "protocol": server.protocol,
            "secret": secret,
            "created_at": now,
        }
        for user_id, secret in grants
    ]
    for start in range(0, len(rows), 500):
        await session.execute(insert(UserCredentialRow), rows[start : start + 500])


async def set_credentials(
    session: AsyncSession, server_id: int, secrets: Sequence[tuple[int, dict[str, Any]]]
) -> None:
    """Replace users' credentials on a server (a change of settings their old ones do not fit)."""
    for user_id, secret in secrets:
        await session.execute(
            update(UserCredentialRow)
            .where(UserCredentialRow.user_id == user_id, UserCredentialRow.server_id == server_id)
            .values(secret=secret)
        )


async def remove_credential(session: AsyncSession, user_id: int, server_id: int) -> None:
    await session.execute(
        delete(UserCredentialRow).where(
            UserCredentialRow.user_id == user_id, UserCredentialRow.server_id == server_id
        )
    )


async def servers_of_user(
    session: AsyncSession, user_id: int
) -> list[tuple[ServerRow, dict[str, Any]]]:
    """The servers a user holds credentials on, with those credentials."""
    result = await session.execute(
        select(ServerRow, UserCredentialRow.secret)
        .join(UserCredentialRow, UserCredentialRow.server_id == ServerRow.id)
        .where(UserCredentialRow.user_id == user_id)
        .order_by(ServerRow.name)
    )
    return [(row, dict(secret)) for row, secret in result.all()]


async def server_ids_of_users(session: AsyncSession, user_ids: Sequence[int]) -> list[int]:
    found: set[int] = set()
    for start in range(0, len(user_ids), 500):
        result = await session.execute(
            select(UserCredentialRow.server_id)
            .where(
                UserCredentialRow.user_id.in_(user_ids[start : start + 500]),
                UserCredentialRow.server_id.is_not(None),
            )
            .distinct()
        )
        found.update(sid for sid in result.scalars() if sid is not None)
    return sorted(found)


async def servers_by_id(session: AsyncSession, ids: Sequence[int]) -> list[ServerRow]:
    if not ids:
        return []
    result = await session.execute(select(ServerRow).where(ServerRow.id.in_(list(ids))))
    return list(result.scalars())


async def set_server(session: AsyncSession, row: ServerRow, now: datetime, **values: Any) -> None:
    await session.execute(
        update(ServerRow).where(ServerRow.id == row.id).values(**values, updated_at=now)
    )
    for key, value in values.items():
        setattr(row, key, value)


async def delete_server(session: AsyncSession, row: ServerRow) -> None:
    await session.execute(delete(UserCredentialRow).where(UserCredentialRow.server_id == row.id))
    await session.execute(delete(ServerRow).where(ServerRow.id == row.id))
