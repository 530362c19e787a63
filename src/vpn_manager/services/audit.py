"""The audit log: who changed what through the REST API, and which API keys the CLI made or
revoked; newest first.

It keeps the newest 100,000 entries (KEEP): every 1000th entry written (PRUNE_EVERY, by its id)
removes the ones older than that, so the table never grows past about 101,000 rows and no write
pays for more than one cheap delete in a thousand. Entries hold names and one-sentence results,
never a secret; control characters are replaced (they are printed to terminals) and each field
is cut to its column's length.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from vpn_manager import storage
from vpn_manager.errors import InvalidInput
from vpn_manager.storage import Database

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

Clock = Callable[[], datetime]

KEEP = 100_000
PRUNE_EVERY = 1000
MOST_SHOWN = KEEP + PRUNE_EVERY  # more entries than this are never kept at once
# The columns' lengths (storage/orm.py AuditRow).
_LENGTHS = {"actor": 96, "action": 64, "target": 255, "result": 500}
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclasses.dataclass(frozen=True)
class AuditEntry:
    at: datetime
    actor: str  # API key name, or "cli:<unix user>" for CLI changes to keys
    action: str  # e.g. "user.add", "server.restart", "api-key.create"
    target: str  # e.g. user name, server name, "" when none
    result: str  # "ok" or a one-sentence error ("InvalidInput: ...")


def _field(value: str, column: str) -> str:
    """`value` safe to print and short enough for its column."""
    cleaned = _CONTROL.sub("?", value)
    most = _LENGTHS[column]
    return cleaned if len(cleaned) <= most else cleaned[: most - 1] + "…"


async def record_in(
    session: AsyncSession, at: datetime, actor: str, action: str, target: str, result: str
) -> None:
    """Add an entry inside the caller's transaction (a change and its entry commit together);
    every PRUNE_EVERY-th one also drops all but the newest KEEP."""
    entry_id = await storage.apikeys.insert_audit(
        session,
        at,
        _field(actor, "actor"),
        _field(action, "action"),
        _field(target, "target"),
        _field(result, "result"),
    )
    if entry_id % PRUNE_EVERY == 0:
        await storage.apikeys.prune_audit(session, entry_id - KEEP + 1)


class AuditLog:
    """The audit log in the database."""

    def __init__(self, db: Database, clock: Clock = utcnow) -> None:
        self.db = db
        self.clock = clock

    async def record(self, actor: str, action: str, target: str, result: str) -> None:
        """Add an entry at the clock's time."""
        async with self.db.session() as session:
            await record_in(session, self.clock(), actor, action, target, result)

    async def entries(
        self, limit: int = 100, actor: str | None = None, since: datetime | None = None
    ) -> list[AuditEntry]:
        """The newest `limit` entries, newest first; only `actor`'s, and only from `since` on,
        when given. A limit over what is ever kept is the same as all of them."""
        if limit < 1:
            raise InvalidInput(
                f"Show at least one audit entry, not {limit}.", hint="Give --limit 1 or more."
            )
        if since is not None and since.tzinfo is None:
            raise InvalidInput("The audit's --since needs a time zone.")  # pragma: no cover
        async with self.db.reading() as session:
            rows = await storage.apikeys.audit_entries(
                session, min(limit, MOST_SHOWN), actor, since
            )
        return [AuditEntry(row.at, row.actor, row.action, row.target, row.result) for row in rows]
