"""Users on servers: grant and revoke credentials, bring user changes to the engines after the
database committed them (live where the engine can, undone if that fails), and each user's ways
in (share links and what a client needs).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, TypeVar

from vpn_manager import storage
from vpn_manager.engines.linkdata import check_outline
from vpn_manager.engines.registry import engine_name
from vpn_manager.errors import InvalidInput, NotFound, VpnError
from vpn_manager.kinds import UserStatus
from vpn_manager.labels import link_label
from vpn_manager.services.batches import reject_repeats
from vpn_manager.services.locks import interrupt_after, no_interrupt
from vpn_manager.services.servers.apply import Apply
from vpn_manager.services.servers.context import ServerContext
from vpn_manager.services.servers.convergence import Convergence
from vpn_manager.specs import Client, ServerSpec

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

    from vpn_manager.engines.linkdata import LinkData

T = TypeVar("T")
Removed = dict[str, dict[str, tuple[int, dict[str, Any]]]]  # server -> user -> (id, credential)

log = logging.getLogger("vpn_manager.servers")


@dataclass(frozen=True)
class Access:
    """How one user reaches one server: the link, and the typed data it is written from (for
    client configs: vpn_manager.links.client_config)."""

    server: str
    protocol: str
    link: str
    data: LinkData = field(repr=False)
    note: str = ""


@dataclass(frozen=True)
class Pair:
    """One user and one server of a bulk grant or revoke, and whether the change made a
    difference there (False: they had access already, or none to take away)."""

    user: str
    server: str
    changed: bool


def _pairs(
    names: Sequence[str], servers: Sequence[str], changed: set[tuple[str, str]]
) -> list[Pair]:
    """Every user with every server, server by server, in the order they were given."""
    return [Pair(name, server, (name, server) in changed) for server in servers for name in names]


def _check_servers(servers: Sequence[str]) -> None:
    """A bulk change names at least one server and each server once."""
    if not servers:
        raise InvalidInput("Give at least one server.", hint="Add --server SERVER.")
    repeated = [server for server in servers if servers.count(server) > 1]
    if repeated:
        raise InvalidInput(f"Server {repeated[0]!r} is named more than once.")


async def _selected(
    session: AsyncSession, user_names: Sequence[str] | None, status: UserStatus | None
) -> list[str]:
    """The users a bulk change is for: those named (NotFound for one that does not exist), or
    everyone for None, then only those in `status` if given; refused if that leaves no one."""
    if user_names is None:
        names = await storage.users.all_names(session, status)
    else:
        await storage.users.ids_for(session, user_names)  # NotFound names every missing user
        names = list(user_names)
        if status is not None:
            now = await storage.users.statuses(session, names)
            names = [name for name in names if now[name] == status]
    if not names:
        whom = (
            "There are no users yet"
            if user_names is None and status is None
            else f"No user of the selection is {status}"
        )
        raise InvalidInput(
            f"{whom}: the change would reach no one, so nothing was done.",
            hint="See `vpn user list`.",
        )
    return names


def _held_by_none(names: Sequence[str], servers: Sequence[str]) -> NotFound:
    if len(names) == 1 and len(servers) == 1:
        return NotFound(
            f"User {names[0]!r} is not on server {servers[0]!r}.",
            hint=f"See `vpn user show {names[0]}`.",
        )
    return NotFound(
        "None of these users is on any of these servers: nothing to revoke.",
        hint="See `vpn user list`.",
    )


@dataclass
class Pending:
    """A committed user change one server has still to get: engine identities (Client.email)
    added and removed there."""

    added: dict[str, Client] = field(default_factory=dict)
    removed: dict[str, Client] = field(default_factory=dict)

    def note(self, before: list[Client], after: list[Client]) -> None:
        old = {c.email: c for c in before}
        new = {c.email: c for c in after}
        for email, client in new.items():
            if email not in old:
                self.removed.pop(email, None)
                self.added[email] = client
        for email, client in old.items():
            if email not in new:
                self.added.pop(email, None)
                self.removed[email] = client

    def reversed(self) -> Pending:
        return Pending(added=dict(self.removed), removed=dict(self.added))


def pending_of(session: AsyncSession) -> dict[int, Pending]:
    """The changes a transaction made to servers' users, by server id (kept on the session)."""
    pending: dict[int, Pending] = session.info.setdefault("vpn_pending", {})
    return pending


class ServerUsers:
    """Puts users on servers and takes them off, in the database and in the running engines."""

    def __init__(self, ctx: ServerContext, apply: Apply, convergence: Convergence) -> None:
        self.ctx = ctx
        self.apply = apply
        self.convergence = convergence

    async def grant(
        self, user_names: Sequence[str], server: str, password: str | None = None
    ) -> list[str]:
        """Give users credentials on a server; applied live when it runs. Returns who was new."""
        done = await self.grant_many(user_names, [server], password=password)
        return [pair.user for pair in done if pair.changed]

    async def grant_many(
        self,
        user_names: Sequence[str] | None,
        servers: Sequence[str],
        *,
        password: str | None = None,
        status: UserStatus | None = None,
    ) -> list[Pair]:
        """Give users credentials on several servers at once, all or nothing: every grant is
        written in one transaction, then each server is applied once (one live call, or one
        reload for all its new users); if one server fails, every server gets the change taken
        back (commit_then_apply). `user_names` None: every user; `status`: only the selected
        users in that status. A pair that already had access is kept and reported unchanged.
        A password is one user's own (a proxy's login), so it is refused with several users."""
        _check_servers(servers)
        if user_names is not None:
            reject_repeats(user_names)
        if password is not None and (user_names is None or len(user_names) != 1):
            raise InvalidInput(
                "A password is one user's own proxy login, so it is given with one user only.",
                hint="Leave the password out to give each user a generated one.",
            )

        async def work(session: AsyncSession) -> tuple[list[str], dict[str, list[str]]]:
            names = await _selected(session, user_names, status)
            added = {
                server: await self.grant_in(session, names, server, password) for server in servers
            }
            return names, added

        async def undo(session: AsyncSession, done: tuple[list[str], dict[str, list[str]]]) -> None:
            for server, added in done[1].items():
                row = await storage.servers.server_row(session, server)
                for user_id in (await storage.users.ids_for(session, added)).values():
                    await storage.servers.remove_credential(session, user_id, row.id)

        names, added = await self.commit_then_apply(work, undo)
        return _pairs(names, servers, {(u, s) for s, new in added.items() for u in new})

    async def grant_in(
        self,
        session: AsyncSession,
        user_names: Sequence[str],
        server: str,
        password: str | None = None,
    ) -> list[str]:
        """grant() inside the caller's transaction (so `vpn user add --server` is all or none);
        the engine gets the new users when the caller settles (commit_then_apply)."""
        row = await storage.servers.server_row(session, server)
        spec = storage.servers.spec_of(row)
        engine = self.ctx.engine(spec)
        ids = await storage.users.ids_for(session, user_names)
        holders = await storage.servers.holders(session, row.id, list(ids.values()))
        added = [name for name in user_names if ids[name] not in holders]
        taken = [c.secret for c, _ in await storage.servers.clients_and_status(session, row.id)]
        grants = []
        for name in added:
            credential = engine.new_credential(spec, password, taken)
            taken.append(credential)
            grants.append((ids[name], credential))
        await storage.servers.add_credentials(session, row, grants, self.ctx.now())
        # The active ones among the new (read back: no one else's credentials twice).
        fresh = await storage.servers.clients(
            session, row.id, user_ids=[user_id for user_id, _ in grants]
        )
        pending_of(session).setdefault(row.id, Pending()).note([], fresh)
        return added

    async def access(self, user_name: str, server: str | None = None) -> list[Access]:
        """A user's ways in: for each server they hold credentials on (or the one named), the
        share link and what a client needs."""
        from vpn_manager.links import share_link, trust_note

        async with self.ctx.db.reading() as session:
            user_id = (await storage.users.ids_for(session, [user_name]))[user_name]
            rows = await storage.servers.servers_of_user(session, user_id)
            if server is not None:
                rows = [(r, s) for r, s in rows if r.name == server]
                if not rows:
                    await storage.servers.server_row(session, server)  # NotFound if no such server
                    raise NotFound(
                        f"User {user_name!r} is not on server {server!r}.",
                        hint=f"Grant it first: vpn user grant {user_name} {server}",
                    )
            if not rows:
                raise NotFound(
                    f"User {user_name!r} has no server yet.",
                    hint=f"Grant one: vpn user grant {user_name} SERVER",
                )
            out = []
            for row, secret in rows:
                data = self._link_data(storage.servers.spec_of(row), secret, user_id, user_name)
                out.append(
                    Access(
                        server=row.name,
                        protocol=row.protocol,
                        link=share_link(data),
                        data=data,
                        note=trust_note(data),
                    )
                )
            return out

    async def outline_access(self, user_name: str, server: str | None = None) -> list[Access]:
        """A user's Shadowsocks servers (or the one named) for Outline's apps; InvalidInput when
        there is none, Conflict (one sentence naming the way out) when one has a 2022 cipher,
        which Outline's apps cannot use: no key is better than one that fails."""
        shadowsocks = [
            a for a in await self.access(user_name, server) if a.protocol == "shadowsocks"
        ]
        if not shadowsocks:
            raise InvalidInput(
                f"Outline keys are for Shadowsocks servers, and {server} is not one."
                if server is not None
                else f"{user_name} is on no Shadowsocks server, and Outline keys are for those.",
                hint=f"vpn user link {user_name}" + (f" --server {server}" if server else ""),
            )
        for access in shadowsocks:
            check_outline(access.data)
        return shadowsocks

    def ways(
        self, servers: Sequence[tuple[ServerSpec, dict[str, Any]]], user_id: int, user_name: str
    ) -> list[tuple[str, str, LinkData]]:
        """A user's ways in as (server, protocol, what its link is written from), from the
        servers they hold credentials on and those credentials (as storage reads them for a
        subscription, which writes the links in the format asked for)."""
        return [
            (spec.name, spec.protocol, self._link_data(spec, secret, user_id, user_name))
            for spec, secret in servers
        ]

    def _link_data(
        self, spec: ServerSpec, secret: dict[str, Any], user_id: int, user_name: str
    ) -> LinkData:
        """What the user's link to the server is written from, named with its label (USER@SERVER
        or the settings' links.label) for the client app to show."""
        client = Client(user_id, user_name, dict(secret))
        data = self.ctx.engine_for(engine_name(spec), None).link_data(spec, client)
        return replace(data, name=link_label(user_name, spec.name, self.ctx.link_label))

    async def client_config(
        self, user_name: str, server: str, client: str, socks_port: int
    ) -> tuple[str, str]:
        """A ready config for `client` (xray, sing-box) that opens a local proxy on
        `socks_port` through the user's way into `server`, and how it trusts the server's
        certificate ("" when nothing needs saying)."""
        from vpn_manager.links import check_client, client_config

        check_client(client)  # before anything is read
        access = (await self.access(user_name, server))[0]
        return client_config(access.data, client, socks_port), access.note

    async def revoke(self, user_names: Sequence[str], server: str) -> None:
        await self.revoke_many(user_names, [server])

    async def revoke_many(
        self,
        user_names: Sequence[str] | None,
        servers: Sequence[str],
        *,
        status: UserStatus | None = None,
    ) -> list[Pair]:
        """Take users' access to several servers away at once, all or nothing, one apply per
        server (as grant_many); their open connections are cut. A selected user who is not on
        a server is reported unchanged; NotFound if none of them is on any of the servers."""
        _check_servers(servers)
        if user_names is not None:
            reject_repeats(user_names)

        async def work(session: AsyncSession) -> tuple[list[str], Removed]:
            names = await _selected(session, user_names, status)
            ids = await storage.users.ids_for(session, names)
            removed: Removed = {}
            for server in servers:
                removed[server] = await self._revoke_in(session, ids, server)
            if not any(removed.values()):
                raise _held_by_none(names, servers)
            return names, removed

        async def undo(session: AsyncSession, done: tuple[list[str], Removed]) -> None:
            for server, removed in done[1].items():
                if removed:
                    row = await storage.servers.server_row(session, server)
                    grants = list(removed.values())
                    await storage.servers.add_credentials(session, row, grants, self.ctx.now())

        names, removed = await self.commit_then_apply(work, undo)
        return _pairs(names, servers, {(u, s) for s, gone in removed.items() for u in gone})

    async def _revoke_in(
        self, session: AsyncSession, ids: dict[str, int], server: str
    ) -> dict[str, tuple[int, dict[str, Any]]]:
        """Take these users off one server inside the caller's transaction: those who were on it,
        by name, with the credentials they had (to put back if the change is undone)."""
        row = await storage.servers.server_row(session, server)
        everyone = await storage.servers.clients_and_status(session, row.id)
        before = [c for c, active in everyone if active]
        kept = {c.user_id: c.secret for c, _ in everyone}
        removed = {name: (ids[name], kept[ids[name]]) for name in ids if ids[name] in kept}
        for user_id, _ in removed.values():
            await storage.servers.remove_credential(session, user_id, row.id)
        after = await storage.servers.clients(session, row.id)
        pending_of(session).setdefault(row.id, Pending()).note(before, after)
        return removed

    async def clients_before(
        self, session: AsyncSession, user_ids: Sequence[int]
    ) -> dict[int, list[Client]]:
        """Before a change to these users: each of their servers with its active clients."""
        server_ids = await storage.servers.server_ids_of_users(session, user_ids)
        return {sid: await storage.servers.clients(session, sid) for sid in server_ids}

    async def resync(self, session: AsyncSession, before: dict[int, list[Client]]) -> None:
        """After users changed (status, deletion): note what each affected server must add and
        remove; the engines get it when the caller settles (commit_then_apply, settle)."""
        for row in await storage.servers.servers_by_id(session, list(before)):
            after = await storage.servers.clients(session, row.id)
            pending_of(session).setdefault(row.id, Pending()).note(before[row.id], after)

    async def commit_then_apply(
        self,
        work: Callable[[AsyncSession], Awaitable[T]],
        undo: Callable[[AsyncSession, T], Awaitable[None]] | None = None,
    ) -> T:
        """A user change: `work` writes it in one short transaction, which is committed before
        any engine is touched (the database is never held across engine calls); then each
        server it touched is brought in line (settle). If that fails or is interrupted (Ctrl-C),
        `undo` writes the change back in a new transaction and the servers are brought in line
        again, so nothing is left half-applied. Without `undo` (a deletion), the change stands and
        the error says the engine still has to catch up; the service does it on its next round.
        If this process dies half-way, the service's next round finishes or removes what the
        engines got (converge)."""
        with contextlib.ExitStack() as commit:
            async with self.ctx.db.session() as session:
                result = await work(session)
                pending = pending_of(session)
                commit.enter_context(interrupt_after())  # Ctrl-C: after the commit, then undone
        if not pending:
            return result
        try:
            await self.settle(pending)
        except BaseException as exc:
            if undo is None:
                if isinstance(exc, VpnError):
                    raise type(exc)(
                        f"{exc.message} The change is saved; `vpn serve` brings the engine in "
                        "line on its next round.",
                        hint=exc.hint,
                    ) from None
                raise
            told = len(self.ctx.applied)
            with no_interrupt():
                try:
                    async with self.ctx.db.session() as session:
                        await undo(session, result)
                except VpnError as failed:  # the database went away since the commit
                    raise type(failed)(
                        f"{failed.message} The change is saved (it could not be undone); `vpn "
                        "serve` brings the engines in line on its next round.",
                        hint=failed.hint,
                    ) from None
                try:
                    await self.settle({sid: p.reversed() for sid, p in pending.items()})
                    # A push still in flight when the change was interrupted may land after
                    # that: compare each engine's users with the database once more.
                    await self._converge_ids(list(pending))
                except VpnError as again:
                    log.error("undoing an interrupted change failed: %s", again.message)
            del self.ctx.applied[told:]
            raise
        return result

    async def _converge_ids(self, server_ids: list[int]) -> None:
        async with self.ctx.db.reading() as session:
            names = [row.name for row in await storage.servers.servers_by_id(session, server_ids)]
        for name in names:
            await self.convergence.converge(name)

    async def settle(
        self, pending: dict[int, Pending], *, keep_going: bool = False
    ) -> dict[str, str]:
        """Bring each server in `pending` in line with the database, one at a time, each in its
        turn: the config rendered from the users the database has now, and the engine given
        the added users that are still there and rid of the removed ones that are still gone.
        The first failure is raised, or with `keep_going` (the service) logged and returned
        (server → why) while the other servers go on."""
        async with self.ctx.db.reading() as session:
            names = {
                row.id: row.name
                for row in await storage.servers.servers_by_id(session, list(pending))
            }
        failed: dict[str, str] = {}
        for server_id, change in sorted(pending.items()):
            if server_id not in names:
                continue  # removed since
            try:
                await self._settle_one(server_id, names[server_id], change)
            except VpnError as exc:
                if not keep_going:
                    raise
                failed[names[server_id]] = exc.message
                log.error("bringing %s in line failed: %s", names[server_id], exc.message)
        return failed

    async def _settle_one(self, server_id: int, name: str, change: Pending) -> None:
        async with self.ctx.turn(name):
            async with self.ctx.db.reading() as session:
                rows = await storage.servers.servers_by_id(session, [server_id])
                if not rows:
                    return
                row = rows[0]
                clients = await storage.servers.clients(session, row.id)
            spec = storage.servers.spec_of(row)
            now = {c.email for c in clients}
            added = [c for c in clients if c.email in change.added]
            removed = [c for email, c in change.removed.items() if email not in now]
            await self.apply.live(self.ctx.engine(spec), spec, row.desired, clients, added, removed)
