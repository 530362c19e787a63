"""API key and audit log rows in and out of the database. Every function runs inside the
caller's session; services/apikeys.py and services/audit.py turn the rows into read models."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import delete, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from vpn_manager.errors import Conflict
from vpn_manager.storage.orm import ApiKeyRow, AuditRow


def _taken(name: str, expired: bool = False) -> Conflict:
    return Conflict(
        f"An API key named {name!r} exists already{' (expired)' if expired else ''}.",
        hint=f"Pick another name, or revoke it first: vpn api-key revoke {name}",
    )


async def insert_key(
    session: AsyncSession,
    name: str,
    key_hash: str,
    scope: str,
    created_at: datetime,
    expires_at: datetime | None,
) -> ApiKeyRow:
    """Add a key; Conflict if a key not revoked has this name, expired or not (looked for first,
    and held by the partial unique index against another process adding it at once)."""
    found = (
        await session.execute(
            select(ApiKeyRow.expires_at).where(
                ApiKeyRow.name == name, ApiKeyRow.revoked_at.is_(None)
            )
        )
    ).first()
    if found is not None:
        raise _taken(name, expired=found[0] is not None and found[0] <= created_at)
    row = ApiKeyRow(
        name=name,
        key_hash=key_hash,
        scope=scope,
        created_at=created_at,
        expires_at=expires_at,
        last_used_at=None,
        revoked_at=None,
    )
    try:
        async with session.begin_nested():  # a clash rolls back this insert only
            session.add(row)
            await session.flush()
    except IntegrityError:
        raise _taken(name) from None
    return row


async def list_keys(session: AsyncSession) -> Sequence[ApiKeyRow]:
    """Every key, revoked ones included, oldest first."""
    result = await session.execute(select(ApiKeyRow).order_by(ApiKeyRow.created_at, ApiKeyRow.id))
    return result.scalars().all()


async def key_named(session: AsyncSession, name: str) -> ApiKeyRow | None:
    """The key that holds this name (the one not revoked), else the one revoked last."""
    result = await session.execute(
        select(ApiKeyRow)
        .where(ApiKeyRow.name == name)
        .order_by(
            ApiKeyRow.revoked_at.is_not(None), ApiKeyRow.revoked_at.desc(), ApiKeyRow.id.desc()
        )
        .limit(1)
    )
    return result.scalars().first()


async def key_by_hash(session: AsyncSession, key_hash: str) -> ApiKeyRow | None:
    result = await session.execute(select(ApiKeyRow).where(ApiKeyRow.key_hash == key_hash))
    return result.scalars().first()


async def revoke_key(session: AsyncSession, key_id: int, now: datetime) -> bool:
    """Revoke a key unless it is revoked already: whether this call revoked it."""
    result = await session.execute(
        update(ApiKeyRow)
        .where(ApiKeyRow.id == key_id, ApiKeyRow.revoked_at.is_(None))
        .values(revoked_at=now)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def touch_key(session: AsyncSession, key_id: int, now: datetime, before: datetime) -> None:
    """Note that a key was used at `now`, unless that was noted at `before` or later already."""
    await session.execute(
        update(ApiKeyRow)
        .where(
            ApiKeyRow.id == key_id,
            (ApiKeyRow.last_used_at.is_(None)) | (ApiKeyRow.last_used_at < before),
        )
        .values(last_used_at=now)
    )


async def insert_audit(
    session: AsyncSession, at: datetime, actor: str, action: str, target: str, result: str
) -> int:
    """Add an audit entry; returns its id."""
    inserted = await session.execute(
        insert(AuditRow)
        .values(at=at, actor=actor, action=action, target=target, result=result)
        .returning(AuditRow.id)
    )
    return int(inserted.scalar_one())


async def prune_audit(session: AsyncSession, below_id: int) -> int:
    """Remove the audit entries older than entry `below_id`: how many went."""
    result = await session.execute(delete(AuditRow).where(AuditRow.id < below_id))
    return int(result.rowcount)  # type: ignore[attr-defined]


async def audit_entries(
    session: AsyncSession, limit: int, actor: str | None, since: datetime | None
) -> Sequence[AuditRow]:
    """The newest `limit` entries (newest first), of one actor and from `since` on if given."""
    query = select(AuditRow)
    if actor is not None:
        query = query.where(AuditRow.actor == actor)
    if since is not None:
        query = query.where(AuditRow.at >= since)
    result = await session.execute(
        query.order_by(AuditRow.at.desc(), AuditRow.id.desc()).limit(limit)
    )
    return result.scalars().all()
