"""User rows in and out of the database. Every function runs inside the caller's session."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Select, delete, func, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from vpn_manager.errors import Conflict, NotFound
from vpn_manager.models import User, UserCreate, UserFilter, UserStatus
from vpn_manager.models.user import like_pattern
from vpn_manager.storage.orm import PlanRow, UserCredentialRow, UserRow
from vpn_manager.storage.plans import plan_id
from vpn_manager.storage.servers import servers_of_user, spec_of
from vpn_manager.storage.sqlite_subscriptions import SubscriptionRecord

_CHUNK = 500  # rows per statement: well under every backend's bound-parameter limit
# A user's columns as the read model has them: not the id, not the subscription token's hash
# and sealed copy (those only through subscription_of and subscription_record), and the plan by
# its name rather than its row id.
_HIDDEN = ("subscription_hash", "subscription_sealed", "plan_id")
_USER_COLUMNS = [c for c in UserRow.__table__.columns if c.key != "id" and c.key not in _HIDDEN]
# What an undone change puts back (UserService.update): the record and its limits, not the
# traffic counted meanwhile.
_RESTORED = (
    "name",
    "email",
    "note",
    "status",
    "expires_at",
    "quota_bytes",
    "reset_period",
    "device_limit",
    "expire_after_days",
    "plan_id",
    "updated_at",
)


def _user_query() -> Select[Any]:
    return select(UserRow.id, *_USER_COLUMNS, PlanRow.name.label("plan")).outerjoin(
        PlanRow, PlanRow.id == UserRow.plan_id
    )


def _chunks(items: Sequence[Any], size: int = _CHUNK) -> Iterable[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


async def existing_names(session: AsyncSession, names: Sequence[str]) -> set[str]:
    found: set[str] = set()
    for chunk in _chunks(names):
        result = await session.execute(select(UserRow.name).where(UserRow.name.in_(chunk)))
        found.update(result.scalars())
    return found


async def token_owners(session: AsyncSession, hashes: Sequence[str]) -> dict[str, str]:
    """Which of these subscription token hashes users hold already: hash → user name."""
    found: dict[str, str] = {}
    for chunk in _chunks(hashes):
        result = await session.execute(
            select(UserRow.subscription_hash, UserRow.name).where(
                UserRow.subscription_hash.in_(chunk)
            )
        )
        found.update((digest, name) for digest, name in result.all() if digest is not None)
    return found


async def subscription_of(session: AsyncSession, name: str) -> tuple[int, str | None]:
    """A user's id and sealed subscription token (None: none made yet); NotFound if no user."""
    row = (
        await session.execute(
            select(UserRow.id, UserRow.subscription_sealed).where(UserRow.name == name)
        )
    ).first()
    if row is None:
        raise NotFound(f"There is no user named {name!r}.", hint="See `vpn user list`.")
    return row[0], row[1]


async def sealed_tokens(session: AsyncSession, names: Sequence[str]) -> dict[str, str]:
    """The sealed subscription tokens of those of `names` that have one: name → sealed."""
    found: dict[str, str] = {}
    for chunk in _chunks(names):
        result = await session.execute(
            select(UserRow.name, UserRow.subscription_sealed).where(
                UserRow.name.in_(chunk), UserRow.subscription_sealed.is_not(None)
            )
        )
        found.update((name, sealed) for name, sealed in result.all() if sealed is not None)
    return found


async def set_subscription(
    session: AsyncSession, user_id: int, digest: str, sealed: str, now: datetime
) -> None:
    """Give a user a new subscription token (its hash and sealed copy): the old one is gone."""
    await session.execute(
        update(UserRow)
        .where(UserRow.id == user_id)
        .values(subscription_hash=digest, subscription_sealed=sealed, updated_at=now)
    )


async def set_first_subscription(
    session: AsyncSession, user_id: int, digest: str, sealed: str
) -> bool:
    """Give a user their first subscription token, unless another command just did: whether
    this one was kept."""
    result = await session.execute(
        update(UserRow)
        .where(UserRow.id == user_id, UserRow.subscription_sealed.is_(None))
        .values(subscription_hash=digest, subscription_sealed=sealed)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def subscription_record(session: AsyncSession, digest: str) -> SubscriptionRecord | None:
    """What a subscription reads, for the token with this SHA-256 (None: no user has it); the
    same as SubscriptionFile.read gives from a SQLite file."""
    row = (
        await session.execute(
            select(
                UserRow.id,
                UserRow.name,
                UserRow.status,
                UserRow.period_upload_bytes,
                UserRow.period_download_bytes,
                UserRow.quota_bytes,
                UserRow.expires_at,
            ).where(UserRow.subscription_hash == digest)
        )
    ).first()
    if row is None:
        return None
    user_id, name, status, upload, download, quota, expires = row
    found = await servers_of_user(session, user_id)
    servers = [(spec_of(server), secret) for server, secret in found]
    return SubscriptionRecord(user_id, name, status, upload, download, quota, expires, servers)


async def insert_users(
    session: AsyncSession,
    creates: Sequence[UserCreate],
    now: datetime,
    progress: Callable[[int], None] | None = None,
    extras: Sequence[dict[str, Any]] | None = None,
) -> list[User]:
    """Insert new users in one transaction; `extras` may carry a kept subscription token, traffic
    totals or creation time per user (imports)."""
    taken = await existing_names(session, [c.name for c in creates])
    if taken:
        shown = ", ".join(sorted(taken)[:5]) + (" …" if len(taken) > 5 else "")
        raise Conflict(
            f"{_plural(len(taken), 'user')} already exist"
            f"{'s' if len(taken) == 1 else ''}: {shown}.",
            hint="Pick other names, or change the existing users with `vpn user update`.",
        )
    plans = {name: await plan_id(session, name) for name in {c.plan for c in creates if c.plan}}
    rows = []
    for index, create in enumerate(creates):
        row = create.model_dump(exclude={"plan"}) | {
            "plan_id": plans.get(create.plan) if create.plan else None,
            "status": create.status.value,
            "created_at": now,
            "updated_at": now,
            "upload_bytes": 0,
            "download_bytes": 0,
        }
        if extras:
            row.update({key: value for key, value in extras[index].items() if value is not None})
        rows.append(row)
    for chunk in _chunks(rows):
        await session.execute(insert(UserRow), list(chunk))
        if progress:
            progress(len(chunk))
    return [
        User.model_validate(
            {k: v for k, v in row.items() if k not in _HIDDEN} | {"plan": create.plan}
        )
        for row, create in zip(rows, creates, strict=True)
    ]


def _filtered(query: Select[Any], where: UserFilter | None) -> Select[Any]:
    if where is None:
        return query
    if where.status is not None:
        query = query.where(UserRow.status == where.status.value)
    if where.search:
        needle = like_pattern(where.search)
        query = query.where(
            or_(
                func.lower(UserRow.name).like(needle, escape="\\"),
                func.lower(func.coalesce(UserRow.email, "")).like(needle, escape="\\"),
                func.lower(func.coalesce(UserRow.note, "")).like(needle, escape="\\"),
            )
        )
    return query


async def list_users(session: AsyncSession, where: UserFilter | None = None) -> list[User]:
    query = _filtered(_user_query(), where).order_by(UserRow.name)
    result = await session.execute(query)
    rows = result.mappings().all()
    servers = await _servers_by_user(session, None if where is None else [r["id"] for r in rows])
    return [_to_user(row, servers.get(row["id"], [])) for row in rows]


async def count_by_status(session: AsyncSession) -> dict[str, int]:
    result = await session.execute(select(UserRow.status, func.count()).group_by(UserRow.status))
    return dict(result.all())


async def _servers_by_user(
    session: AsyncSession, user_ids: Sequence[int] | None
) -> dict[int, list[str]]:
    query = select(UserCredentialRow.user_id, UserCredentialRow.server).order_by(
        UserCredentialRow.server
    )
    servers: dict[int, list[str]] = defaultdict(list)
    if user_ids is None:
        for user_id, server in (await session.execute(query)).all():
            servers[user_id].append(server)
        return servers
    for chunk in _chunks(user_ids):
        result = await session.execute(query.where(UserCredentialRow.user_id.in_(chunk)))
        for user_id, server in result.all():
            servers[user_id].append(server)
    return servers


def _to_user(row: Any, servers: list[str]) -> User:
    data = {key: row[key] for key in row if key != "id"}
    data["servers"] = servers
    return User.model_validate(data)


async def _row_id(session: AsyncSession, name: str) -> int:
    result = await session.execute(select(UserRow.id).where(UserRow.name == name))
    user_id = result.scalar()
    if user_id is None:
        raise NotFound(f"There is no user named {name!r}.", hint="See `vpn user list`.")
    return user_id


async def get_user(session: AsyncSession, name: str) -> User:
    user_id = await _row_id(session, name)
    result = await session.execute(_user_query().where(UserRow.id == user_id))
    servers = await _servers_by_user(session, [user_id])
    return _to_user(result.mappings().one(), servers.get(user_id, []))


async def ids_for(session: AsyncSession, names: Sequence[str]) -> dict[str, int]:
    """Map names to row ids; raise NotFound naming every missing user."""
    ids: dict[str, int] = {}
    for chunk in _chunks(names):
        result = await session.execute(
            select(UserRow.name, UserRow.id).where(UserRow.name.in_(chunk))
        )
        ids.update((name, user_id) for name, user_id in result.all())
    missing = [name for name in names if name not in ids]
    if missing:
        shown = ", ".join(repr(n) for n in missing[:5]) + (" …" if len(missing) > 5 else "")
        raise NotFound(
            f"There is no user named {shown}."
            if len(missing) == 1
            else f"{len(missing)} users do not exist: {shown}.",
            hint="See `vpn user list`.",
        )
    return ids


async def update_user(
    session: AsyncSession, name: str, changes: dict[str, Any], now: datetime
) -> User:
    user_id = await _row_id(session, name)
    new_name = changes.get("name")
    if new_name is not None and new_name != name and await existing_names(session, [new_name]):
        raise Conflict(f"A user named {new_name!r} already exists.", hint="Pick another name.")
    values = {
        key: value.value if isinstance(value, UserStatus) else value
        for key, value in changes.items()
        if key != "plan"
    }
    if "plan" in changes:
        values["plan_id"] = await plan_id(session, changes["plan"]) if changes["plan"] else None
    await session.execute(
        update(UserRow).where(UserRow.id == user_id).values(**values, updated_at=now)
    )
    return await get_user(session, new_name or name)


async def snapshot(session: AsyncSession, user_ids: Sequence[int]) -> dict[int, dict[str, Any]]:
    """These users' records and limits as they are, to put back if a change is undone."""
    found: dict[int, dict[str, Any]] = {}
    columns = [getattr(UserRow, key) for key in _RESTORED]
    for chunk in _chunks(list(user_ids)):
        result = await session.execute(select(UserRow.id, *columns).where(UserRow.id.in_(chunk)))
        for row in result.all():
            found[row[0]] = dict(zip(_RESTORED, row[1:], strict=True))
    return found


async def restore(session: AsyncSession, kept: dict[int, dict[str, Any]]) -> None:
    """Put back what `snapshot` kept."""
    for user_id, values in kept.items():
        await session.execute(update(UserRow).where(UserRow.id == user_id).values(**values))


async def set_status(
    session: AsyncSession, names: Sequence[str], status: UserStatus, now: datetime
) -> int:
    """Give these users `status`; returns how many did not have it already (only they change,
    so "Disabled 1 user." is never said of a user who was disabled before)."""
    ids = await ids_for(session, names)
    changed = 0
    for chunk in _chunks(list(ids.values())):
        other = await session.execute(
            select(UserRow.id).where(UserRow.id.in_(chunk), UserRow.status != status.value)
        )
        todo = list(other.scalars())
        if todo:
            await session.execute(
                update(UserRow)
                .where(UserRow.id.in_(todo))
                .values(status=status.value, updated_at=now)
            )
        changed += len(todo)
    return changed


async def all_names(session: AsyncSession, status: UserStatus | None = None) -> list[str]:
    """Every user's name in order (only those in `status` if given): what a bulk change for
    everyone selects, without building each user."""
    query = select(UserRow.name).order_by(UserRow.name)
    if status is not None:
        query = query.where(UserRow.status == status.value)
    return list((await session.execute(query)).scalars())


async def statuses(session: AsyncSession, names: Sequence[str]) -> dict[str, UserStatus]:
    """These users' statuses now (to put them back if a change is undone)."""
    found: dict[str, UserStatus] = {}
    for chunk in _chunks(list(names)):
        rows = await session.execute(
            select(UserRow.name, UserRow.status).where(UserRow.name.in_(chunk))
        )
        found |= {name: UserStatus(status) for name, status in rows}
    return found


async def delete_users(session: AsyncSession, names: Sequence[str]) -> int:
    ids = await ids_for(session, names)
    for chunk in _chunks(list(ids.values())):
        await session.execute(delete(UserCredentialRow).where(UserCredentialRow.user_id.in_(chunk)))
        await session.execute(delete(UserRow).where(UserRow.id.in_(chunk)))
    return len(ids)


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"
