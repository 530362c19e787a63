"""User management: the one place the CLI and the TUI go to for anything about users.

The SQLAlchemy queries (storage.users) load on their first use (the storage package hands them
out): a listing that the sqlite3 fast path serves never pays for loading SQLAlchemy
(storage/sqlite_read.py).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime, time, timedelta, tzinfo
from typing import TYPE_CHECKING, Any

from vpn_manager import storage
from vpn_manager.errors import ConfigError, InvalidInput
from vpn_manager.kinds import UserStatus
from vpn_manager.services import tokens
from vpn_manager.services.batches import reject_repeats
from vpn_manager.services.limits import check_limits
from vpn_manager.services.plans import plan_days, plan_limits, shown
from vpn_manager.services.tokens import TokenSeal
from vpn_manager.storage import Database
from vpn_manager.units import LAST_DAY, parse_span

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

    from vpn_manager.models import User, UserCreate, UserFilter, UserUpdate
    from vpn_manager.services.servers import ServerService
    from vpn_manager.specs import Client

Clock = Callable[[], datetime]
# The fields of a change after which a user's limits are checked at once (UserService.update).
LIMIT_FIELDS = {"expires_at", "extend", "quota_bytes", "reset_period", "expire_after_days", "plan"}
Clients = list["Client"]  # (a method named `list` shadows the builtin inside the class)
Users = list["User"]
Progress = Callable[[int], None]


def utcnow() -> datetime:
    return datetime.now(UTC)


class UserService:
    """Users in the database; with `servers`, their changes also reach the running engines."""

    def __init__(
        self,
        db: Database,
        clock: Clock = utcnow,
        servers: Callable[[], ServerService] | None = None,
        seal: TokenSeal | None = None,
        zone: tzinfo = UTC,
    ) -> None:
        self.db = db
        self.clock = clock
        self.zone = zone  # of calendar quota periods and of the last day an expiry may be
        self._servers = servers  # built only by changes that reach servers
        self.seal = seal  # subscription tokens are sealed with it (services/tokens.py)

    @property
    def servers(self) -> ServerService | None:
        return self._servers() if self._servers is not None else None

    async def add(
        self,
        creates: Sequence[UserCreate],
        progress: Progress | None = None,
        extras: Sequence[dict[str, Any]] | None = None,
        servers: Sequence[str] = (),
    ) -> list[User]:
        """Create users, all or none; with `servers`, also give them credentials there, applied
        live on running servers once the users are committed. If that fails or is interrupted,
        the users are deleted again and taken off the servers (ServerService.commit_then_apply)."""
        names = [c.name for c in creates]
        reject_repeats(names)
        now = self.clock()
        past = [c.name for c in creates if c.expires_at is not None and c.expires_at <= now]
        if past:
            raise InvalidInput(
                f"The expiry of {shown(past)} is in the past: they would expire at once.",
                hint="Give a later date, a span such as 30d, or never.",
            )
        if not servers:
            async with self.db.session() as session:
                creates = await self._with_plans(session, creates)
                return await storage.users.insert_users(
                    session, creates, self.clock(), progress, extras
                )
        fleet = self.servers
        if fleet is None:
            raise InvalidInput("Servers are not available here.")  # pragma: no cover

        async def work(session: AsyncSession) -> list[User]:
            planned = await self._with_plans(session, creates)
            users = await storage.users.insert_users(
                session, planned, self.clock(), progress, extras
            )
            for server in servers:
                await fleet.grant_in(session, names, server)
            # New users hold credentials on exactly these servers.
            where = sorted(set(servers))
            return [user.model_copy(update={"servers": where}) for user in users]

        async def undo(session: AsyncSession, _users: list[User]) -> None:
            await storage.users.delete_users(session, names)

        return await fleet.commit_then_apply(work, undo)

    async def _with_plans(
        self, session: AsyncSession, creates: Sequence[UserCreate]
    ) -> Sequence[UserCreate]:
        """The new users with their plans' limits where the command did not set them."""
        if not any(c.plan for c in creates):
            return creates
        plans = {
            name: await storage.plans.get_plan(session, name)
            for name in {c.plan for c in creates if c.plan}
        }
        now = self.clock()
        planned = []
        for create in creates:
            if create.plan is None:
                planned.append(create)
                continue
            plan = plans[create.plan]
            fields = plan_limits(plan, create.model_fields_set)
            days = plan_days(plan, create.model_fields_set)
            if days is not None:
                fields["expires_at"] = self._expiry(create.name, now, days, f"{plan.days}d")
            planned.append(create.model_copy(update=fields))
        return planned

    async def list(self, where: UserFilter | None = None) -> list[User]:
        fast = self.db.read_users(where)
        if fast is not None:
            return fast
        async with self.db.reading() as session:
            return await storage.users.list_users(session, where)

    async def get(self, name: str) -> User:
        async with self.db.reading() as session:
            return await storage.users.get_user(session, name)

    async def counts(self) -> dict[str, int]:
        async with self.db.reading() as session:
            return await storage.users.count_by_status(session)

    async def update(self, name: str, change: UserUpdate, force: bool = False) -> User:
        return (await self.update_many([name], change, force))[0]

    async def update_many(
        self, names: Sequence[str], change: UserUpdate, force: bool = False
    ) -> Users:
        """Change users' details or limits, all or none. Their limits are checked at once: a
        raised quota, a later expiry or a new plan lets a limited user back in, a lowered quota or
        (with `force`) an expiry in the past shuts one out, and the engines get it now (as
        `vpn user enable|disable`), not at the service's next round."""
        reject_repeats(names)
        changes = change.changes()
        if not changes:
            raise InvalidInput("Nothing to change.", hint="See `vpn user update --help`.")
        if len(names) > 1 and {"name", "email"} & set(changes):
            raise InvalidInput("A new name or e-mail can only be given to one user at a time.")
        now = self.clock()
        expires = changes.get("expires_at")
        if expires is not None and expires <= now and not force:
            raise InvalidInput(
                f"The expiry given is in the past: {shown(list(names))} would expire at once.",
                hint="Give a later date or a span such as 30d, or add --force to expire them now.",
            )
        limits = bool(LIMIT_FIELDS & set(changes))  # else no status, so no engine, changes
        fleet = self.servers if limits else None

        async def work(session: AsyncSession) -> tuple[Users, dict[int, dict[str, Any]]]:
            ids = await storage.users.ids_for(session, names)
            kept = await storage.users.snapshot(session, list(ids.values()))
            before = await fleet.clients_before(session, list(ids.values())) if fleet else {}
            for name in names:
                fields = await self._changed(session, name, changes, kept[ids[name]], now)
                await storage.users.update_user(session, name, fields, now)
            if limits:
                await self._check(session, list(ids.values()))
            if fleet is not None:
                await fleet.resync(session, before)
            after = [changes["name"]] if "name" in changes else names
            return [await storage.users.get_user(session, name) for name in after], kept

        async def undo(
            session: AsyncSession, done: tuple[Users, dict[int, dict[str, Any]]]
        ) -> None:
            await storage.users.restore(session, done[1])

        if fleet is None:
            async with self.db.session() as session:
                users, _ = await work(session)
            return users
        users, _ = await fleet.commit_then_apply(work, undo)
        return users

    async def _changed(
        self,
        session: AsyncSession,
        name: str,
        changes: dict[str, Any],
        current: dict[str, Any],
        now: datetime,
    ) -> dict[str, Any]:
        """One user's new field values: the change, its plan's limits where the change does not
        set them, and an extension counted from the later of now and the user's expiry."""
        fields = {key: value for key, value in changes.items() if key != "extend"}
        span, text = None, changes.get("extend")
        if text is not None:
            span = parse_span(text)
        if changes.get("plan"):
            plan = await storage.plans.get_plan(session, changes["plan"])
            fields |= plan_limits(plan, changes)
            days = plan_days(plan, changes)
            if days is not None:
                span, text = days, f"{plan.days}d"
        if span is not None and text is not None:
            base = max(now, current["expires_at"] or now)
            fields["expires_at"] = self._expiry(name, base, span, text)
        return fields

    def _expiry(self, name: str, base: datetime, span: timedelta, text: str) -> datetime:
        """`base` moved on by `span`; refused past the last day an expiry may be."""
        latest = datetime.combine(LAST_DAY + timedelta(days=1), time(), self.zone)
        if span >= latest - base:
            raise InvalidInput(
                f"{text} more would take {name}'s expiry past {LAST_DAY.isoformat()}.",
                hint="Give a shorter span, or a date with --expires.",
            )
        return base + span

    async def _check(self, session: AsyncSession, user_ids: Sequence[int]) -> None:
        """Give these users the status their limits call for now (services/limits.py)."""
        checked = await check_limits(session, self.clock(), self.zone, user_ids)
        await storage.accounting.set_statuses(session, checked.statuses, self.clock())

    async def set_status(self, names: Sequence[str], status: UserStatus) -> int:
        """Change users' status; on their running servers, disabled users are removed live and
        their open connections cut, enabled ones added back."""
        reject_repeats(names)
        servers = self.servers
        if servers is None:
            async with self.db.session() as session:
                return await self._set_status_in(session, names, status)
        fleet = servers

        async def work(session: AsyncSession) -> tuple[int, dict[str, UserStatus]]:
            was = await storage.users.statuses(session, names)
            before = await self._servers_before(session, names)
            count = await self._set_status_in(session, names, status)
            await fleet.resync(session, before)
            return count, was

        async def undo(session: AsyncSession, done: tuple[int, dict[str, UserStatus]]) -> None:
            by_status: dict[UserStatus, list[str]] = {}
            for name, previous in done[1].items():
                by_status.setdefault(previous, []).append(name)
            for previous, group in by_status.items():
                await storage.users.set_status(session, group, previous, self.clock())

        count, _ = await fleet.commit_then_apply(work, undo)
        return count

    async def _set_status_in(
        self, session: AsyncSession, names: Sequence[str], status: UserStatus
    ) -> int:
        """Set the status; users enabled are then held to their limits at once (an enabled
        user over quota or past their expiry is over-quota or expired, not active)."""
        count = await storage.users.set_status(session, names, status, self.clock())
        if status is UserStatus.ACTIVE:
            ids = await storage.users.ids_for(session, names)
            await self._check(session, list(ids.values()))
        return count

    async def enable(self, names: Sequence[str]) -> int:
        return await self.set_status(names, UserStatus.ACTIVE)

    async def disable(self, names: Sequence[str]) -> int:
        return await self.set_status(names, UserStatus.DISABLED)

    async def delete(self, names: Sequence[str]) -> int:
        reject_repeats(names)
        servers = self.servers
        if servers is None:
            async with self.db.session() as session:
                return await storage.users.delete_users(session, names)
        fleet = servers

        async def work(session: AsyncSession) -> int:
            before = await self._servers_before(session, names)
            count = await storage.users.delete_users(session, names)
            await fleet.resync(session, before)
            return count

        return await fleet.commit_then_apply(work)

    async def _servers_before(
        self, session: AsyncSession, names: Sequence[str]
    ) -> dict[int, Clients]:
        servers = self.servers
        if servers is None:
            return {}
        ids = await storage.users.ids_for(session, names)
        return await servers.clients_before(session, list(ids.values()))

    async def rotate_token(self, name: str) -> str:
        """Give the user a new subscription token and return it; the old one stops working at
        once (its URL gets the same 404 as a token that never was)."""
        token = tokens.new_token()
        async with self.db.session() as session:
            user_id, _ = await storage.users.subscription_of(session, name)  # NotFound first
            seal = self._the_seal()
            await storage.users.set_subscription(
                session, user_id, tokens.digest(token), seal.seal(token), self.clock()
            )
        return token

    async def subscription_token(self, name: str) -> str:
        """The user's subscription token, made the first time it is asked for (of two commands
        asking at once, both get the one made first)."""
        async with self.db.session() as session:
            user_id, sealed = await storage.users.subscription_of(session, name)  # NotFound first
            seal = self._the_seal()
            if sealed is None:
                token = tokens.new_token()
                if await storage.users.set_first_subscription(
                    session, user_id, tokens.digest(token), seal.seal(token)
                ):
                    return token
                _, sealed = await storage.users.subscription_of(session, name)
        opened = seal.open(sealed) if sealed else None
        if opened is None:
            raise ConfigError(
                f"This home's subscription key cannot open {name}'s token (was the database "
                "moved here from another home?).",
                hint=f"Copy subscription.key from that home, or make a new URL: "
                f"vpn user rotate-token {name}",
            )
        return opened

    async def tokens_of(self, names: Sequence[str]) -> dict[str, str]:
        """The subscription tokens of those of `names` that have one (for an export with
        secrets); ConfigError if this home's key cannot open one."""
        seal = self._the_seal()
        async with self.db.reading() as session:
            sealed = await storage.users.sealed_tokens(session, names)
        found = {}
        for name, value in sealed.items():
            token = seal.open(value)
            if token is None:
                raise ConfigError(
                    f"This home's subscription key cannot open {name}'s token.",
                    hint=f"Copy subscription.key from the home it was made in, or make a new "
                    f"one: vpn user rotate-token {name}",
                )
            found[name] = token
        return found

    def sealed(self, token: str) -> str:
        """`token` sealed with this home's key (what the database keeps beside its hash)."""
        return self._the_seal().seal(token)

    def _the_seal(self) -> TokenSeal:
        if self.seal is None:
            raise InvalidInput("Subscription tokens are not available here.")  # pragma: no cover
        return self.seal
