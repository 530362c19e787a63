"""User management: the one place the CLI and the TUI go to for anything about users.

The SQLAlchemy queries (storage.users) are imported inside each method, not at the top: a listing
that the sqlite3 fast path serves then never pays for loading SQLAlchemy (storage/sqlite_read.py).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from vpn_manager.errors import InvalidInput
from vpn_manager.models import User, UserCreate, UserFilter, UserStatus, UserUpdate
from vpn_manager.storage import Database

Clock = Callable[[], datetime]
Progress = Callable[[int], None]


def utcnow() -> datetime:
    return datetime.now(UTC)


class UserService:
    def __init__(self, db: Database, clock: Clock = utcnow) -> None:
        self.db = db
        self.clock = clock

    async def add(
        self,
        creates: Sequence[UserCreate],
        progress: Progress | None = None,
        extras: Sequence[dict[str, Any]] | None = None,
    ) -> list[User]:
        """Create users, all or none."""
        from vpn_manager.storage import users as repo

        reject_repeats([c.name for c in creates])
        async with self.db.session() as session:
            return await repo.insert_users(session, creates, self.clock(), progress, extras)

    async def list(self, where: UserFilter | None = None) -> list[User]:
        fast = self.db.read_users(where)
        if fast is not None:
            return fast
        from vpn_manager.storage import users as repo

        async with self.db.session() as session:
            return await repo.list_users(session, where)

    async def get(self, name: str) -> User:
        from vpn_manager.storage import users as repo

        async with self.db.session() as session:
            return await repo.get_user(session, name)

    async def counts(self) -> dict[str, int]:
        from vpn_manager.storage import users as repo

        async with self.db.session() as session:
            return await repo.count_by_status(session)

    async def update(self, name: str, change: UserUpdate) -> User:
        from vpn_manager.storage import users as repo

        changes = change.changes()
        if not changes:
            raise InvalidInput("Nothing to change.", hint="See `vpn user update --help`.")
        async with self.db.session() as session:
            return await repo.update_user(session, name, changes, self.clock())

    async def set_status(self, names: Sequence[str], status: UserStatus) -> int:
        from vpn_manager.storage import users as repo

        reject_repeats(names)
        async with self.db.session() as session:
            return await repo.set_status(session, names, status, self.clock())

    async def enable(self, names: Sequence[str]) -> int:
        return await self.set_status(names, UserStatus.ACTIVE)

    async def disable(self, names: Sequence[str]) -> int:
        return await self.set_status(names, UserStatus.DISABLED)

    async def delete(self, names: Sequence[str]) -> int:
        from vpn_manager.storage import users as repo

        reject_repeats(names)
        async with self.db.session() as session:
            return await repo.delete_users(session, names)

    async def rotate_token(self, name: str) -> User:
        """Give the user a new subscription token; the old one stops working at once."""
        from vpn_manager.storage import users as repo

        async with self.db.session() as session:
            return await repo.update_user(
                session, name, {"subscription_token": repo.new_token()}, self.clock()
            )


def reject_repeats(names: Sequence[str]) -> None:
    """A batch must name at least one user and each user once."""
    if not names:
        raise InvalidInput("Give at least one user name.")
    repeated = [name for name, count in Counter(names).items() if count > 1]
    if repeated:
        raise InvalidInput(f"{repeated[0]!r} is named more than once.")
