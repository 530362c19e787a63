"""Traffic accounting and limits: what `vpn serve` does every poll.

Accounting reads each running engine's counters without resetting them and keeps, per counter,
the last value read and the engine process it came from (a baseline in the database). What a
counter grew by since the last read is added to its user's totals, period usage and hourly
history, in the same transaction as the new baseline: a failed read or a crash between reads
loses nothing that was counted and counts nothing twice (the next read catches up). A counter
read from a new engine process (restart, crash) or that went backwards is counted from zero.

Device limits: a user connected from more client IPs than allowed (counted over all their
servers, where the engine reports client IPs) keeps the IPs seen first; the others' connections
are cut and, where nftables can be used, those IPs are kept off the server's port for a while.

Limits: a user over their data quota for the current period becomes over-quota, an account past
its expiry expired; both are removed from their engines and their open connections cut (through
ServerService.resync, the same path as `vpn user disable`). A new period, a raised quota or an
extended expiry makes them active again.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, tzinfo
from typing import TYPE_CHECKING

from vpn_manager.engines.base import Counter, Engine, Follower, ServerSpec
from vpn_manager.errors import VpnError
from vpn_manager.kinds import DesiredState, UserStatus
from vpn_manager.services import pending_readings as spool
from vpn_manager.services.periods import days_after, period_start
from vpn_manager.services.servers import Pending, ServerService, owners, pending_of, utcnow

if TYPE_CHECKING:
    from vpn_manager.storage.orm import ServerRow

log = logging.getLogger("vpn_manager.accounting")
HISTORY_DAYS = 90
HUNG_ROUNDS = 3  # probes failed in a row before a running engine is restarted
PROBE_TIMEOUT = 5.0


@dataclass
class PollReport:
    servers: int = 0
    counters: int = 0
    counted_bytes: int = 0
    took_ms: float = 0.0
    failed: dict[str, str] = field(default_factory=dict)


@dataclass
class EnforceReport:
    limited: dict[str, str] = field(default_factory=dict)  # user → new status
    restored: list[str] = field(default_factory=list)
    reset: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)  # server → why its engine lags


class Accountant:
    def __init__(
        self,
        servers: ServerService,
        clock: Callable[[], datetime] = utcnow,
        zone: tzinfo = UTC,
        follow: bool = False,
    ) -> None:
        """`follow`: keep following engines' events between polls where their counters alone
        can miss some (Engine.follower); for the long-running service, whose polls are a few
        seconds apart. Call close() when done."""
        self.servers = servers
        self.db = servers.db
        self.clock = clock
        self.zone = zone
        self.last_poll = PollReport()
        # Since this process started, for the metrics: bytes per server, and who moved any in
        # the last poll ("online").
        self.server_bytes: dict[int, list[int]] = defaultdict(lambda: [0, 0])
        self.online: dict[int, set[int]] = {}
        self.unanswered: dict[str, int] = {}  # server → probes failed in a row
        self.repairs: dict[str, int] = defaultdict(int)  # server → fixes by converge()
        self.pruned_at: float | None = None  # time.monotonic() of the last prune_history
        self.follow = follow
        # server id → (engine epoch, where it is reached, its follower)
        self.followers: dict[int, tuple[str, str, Follower]] = {}
        # What the service last found of the database (services/daemon.py, metrics): why it
        # could not be used (None: it could), since when (time.time()), the last good round.
        self.database_error: str | None = None
        self.database_down_at: float | None = None
        self.good_round_at: float | None = None

    # -- accounting ----------------------------------------------------------------------------
    async def poll(self) -> PollReport:
        """Read every running server once and add what each counter grew by. Pollers on this
        machine (the service, `vpn monitor traffic`) take turns: two reading the same baseline
        at once would both add the same growth."""
        async with spool.poll_lock(self.servers.paths.run_dir):
            return await self._poll()

    async def _poll(self) -> PollReport:
        from vpn_manager.storage import servers as repo

        report = PollReport()
        polled: set[int] = set()
        started = time.perf_counter()
        async with self.db.reading() as session:
            rows = [r for r, _ in await repo.list_servers(session)]
        run_dir = self.servers.paths.run_dir
        spool.remove_temps(run_dir)
        for row in rows:
            # Readings taken just before a stop or reload first, then the live counters.
            readings = spool.pending(run_dir, row.name)
            if readings is not None:  # most polls: no file, no further I/O
                for epoch, kept in readings:
                    report.counted_bytes += await self._count(row.id, epoch, kept)
                spool.done(run_dir, row.name)
            spec = repo.spec_of(row)
            try:
                state = self.servers.state_of(row)
                if not state.running:
                    continue
                spec = await self.servers.reach(spec)
                engine = self.servers.engine(spec)
                counters = await engine.counters(spec)
            except VpnError as exc:  # nothing is lost: the next read sees the same counters
                report.failed[row.name] = exc.message
                log.warning("reading %s failed: %s", row.name, exc.message)
                continue
            if self.follow:
                counters = await self._with_followed(row.id, state.epoch, engine, spec, counters)
            try:
                report.counted_bytes += await self._count(row.id, state.epoch, counters)
            except VpnError:
                # What a follower handed over exists nowhere else now: the whole reading goes
                # to the spool, which the next poll that reaches the database counts first.
                spool.keep(run_dir, row.name, state.epoch, counters)
                raise
            report.counters += len(counters)
            report.servers += 1
            polled.add(row.id)
        for server_id in set(self.followers) - polled:  # stopped, removed, or unreadable
            await self.followers.pop(server_id)[2].stop()
        report.took_ms = (time.perf_counter() - started) * 1000
        self.last_poll = report
        return report

    async def _with_followed(
        self, server_id: int, epoch: str, engine: Engine, spec: ServerSpec, counters: list[Counter]
    ) -> list[Counter]:
        """The polled counters plus what the server's follower saw since the last poll (the
        higher reading of each counter). A follower belongs to one engine process: a new one
        (restart) gets a new follower, which starts with the next poll. One whose engine is now
        reached elsewhere (another tunnel port to a remote engine) hands over what it saw and
        is replaced."""
        where = json.dumps(spec.settings, sort_keys=True, default=str)
        held = self.followers.get(server_id)
        if held is not None:
            held_epoch, held_where, follower = held
            if held_epoch == epoch:
                counters = merged(counters, follower.take())
                if held_where == where:
                    return counters
            await follower.stop()
            del self.followers[server_id]
        fresh = engine.follower(spec)
        if fresh is not None:
            fresh.start()
            self.followers[server_id] = (epoch, where, fresh)
        return counters

    async def close(self) -> None:
        """Stop following."""
        for _, _, follower in self.followers.values():
            await follower.stop()
        self.followers.clear()

    async def prune_history(self, keep_days: int = HISTORY_DAYS) -> int:
        """Drop hourly history older than `keep_days`."""
        from vpn_manager.storage import accounting as store

        async with self.db.session() as session:
            pruned = await store.prune_hourly(session, self.clock() - timedelta(days=keep_days))
        self.pruned_at = time.monotonic()
        return pruned

    async def _count(self, server_id: int, epoch: str, counters: list[Counter]) -> int:
        from vpn_manager.storage import accounting as store
        from vpn_manager.storage import servers as repo

        now = self.clock()
        async with self.db.session() as session:
            owner = owners(await repo.identities(session, server_id))
            baselines = await store.baselines(session, server_id)
            grown: dict[int, list[int]] = defaultdict(lambda: [0, 0])
            fresh: dict[str, tuple[int, int]] = {}
            for counter in counters:
                last = baselines.get(counter.key)
                if (
                    last is None
                    or last[0] != epoch
                    or counter.up < last[1]
                    or counter.down < last[2]
                ):
                    before = (0, 0)  # a new counter, a new engine process, or one that was reset
                else:
                    before = (last[1], last[2])
                fresh[counter.key] = (counter.up, counter.down)
                client = owner.get(counter.user)
                if client is not None:
                    total = grown[client.user_id]
                    total[0] += counter.up - before[0]
                    total[1] += counter.down - before[1]
            await store.save_baselines(session, server_id, epoch, fresh, baselines, now)
            deltas = {uid: (up, down) for uid, (up, down) in grown.items() if up or down}
            await store.add_usage(session, server_id, deltas, now)
            self.online[server_id] = set(deltas)
            total = self.server_bytes[server_id]
            total[0] += sum(up for up, _ in deltas.values())
            total[1] += sum(down for _, down in deltas.values())
            return sum(up + down for up, down in deltas.values())

    # -- limits --------------------------------------------------------------------------------
    async def enforce(self) -> EnforceReport:
        """Apply periods, quotas and expiry dates; returns who changed."""
        from vpn_manager.storage import accounting as store

        report = EnforceReport()
        now = self.clock()
        pending: dict[int, Pending] = {}
        async with self.db.session() as session:
            users = await store.limit_view(session)
            targets: dict[int, UserStatus] = {}
            for user in users:
                start = period_start(
                    user.reset_period, now, self.zone, user.period_started_at or user.created_at
                )
                used = user.period_up + user.period_down
                if start is not None and (
                    user.period_started_at is None or user.period_started_at < start
                ):
                    if user.period_started_at is not None and used:
                        report.reset.append(user.name)
                    await store.start_period(session, user.id, start)
                    used = 0
                expires_at = user.expires_at
                if expires_at is None and user.expire_after_days and user.first_used_at:
                    expires_at = days_after(user.first_used_at, user.expire_after_days)
                    await store.set_expiry(session, user.id, expires_at)
                over = user.quota_bytes is not None and used >= user.quota_bytes
                expired = expires_at is not None and expires_at <= now
                status = UserStatus(user.status)
                if status is UserStatus.ACTIVE and expired:
                    targets[user.id] = UserStatus.EXPIRED
                elif status is UserStatus.ACTIVE and over:
                    targets[user.id] = UserStatus.OVER_QUOTA
                elif status is UserStatus.EXPIRED and not expired:
                    targets[user.id] = UserStatus.OVER_QUOTA if over else UserStatus.ACTIVE
                elif status is UserStatus.OVER_QUOTA and not over:
                    targets[user.id] = UserStatus.EXPIRED if expired else UserStatus.ACTIVE
            if not targets:
                return report
            names = {u.id: u.name for u in users}
            before = await self.servers.clients_before(session, list(targets))
            await store.set_statuses(session, targets, now)
            await self.servers.resync(session, before)
            pending = pending_of(session)
            for user_id, status in targets.items():
                if status is UserStatus.ACTIVE:
                    report.restored.append(names[user_id])
                else:
                    report.limited[names[user_id]] = status.value
        # Committed: now the engines (a server that fails is retried by converge next round).
        report.failed = await self.servers.settle(pending, keep_going=True)
        return report

    async def reset_usage(self, names: list[str]) -> None:
        """Start a new period for these users now (and let over-quota ones back in)."""
        from vpn_manager.storage import accounting as store
        from vpn_manager.storage import users as user_repo

        async with self.db.session() as session:
            ids = await user_repo.ids_for(session, names)
            for user_id in ids.values():
                await store.start_period(session, user_id, self.clock())
        await self.enforce()

    async def limit_devices(self, ban_seconds: int = 60) -> dict[str, list[str]]:
        """Cut the devices of users connected from more client IPs than their device limit;
        returns user → the IPs cut. The IPs seen first stay connected."""
        from vpn_manager.engines import bans
        from vpn_manager.storage import accounting as store
        from vpn_manager.storage import servers as repo

        async with self.db.reading() as session:
            limits = await store.device_limits(session)
            rows = [r for r, _ in await repo.list_servers(session)]
            running = [r for r in rows if self.servers.is_running(r)]
            owner_of = {r.id: owners(await repo.identities(session, r.id)) for r in running}
        if bans.available():
            await self._lift_bans(limits, {r.port for r in running})
        if not limits:
            return {}
        first_seen: dict[int, dict[str, float]] = defaultdict(dict)
        found: dict[int, list[tuple[str, str, str]]] = defaultdict(list)  # server, identity, ip
        specs = {}
        for row in running:
            spec = specs[row.name] = repo.spec_of(row)
            try:
                reached = await self.servers.reach(spec)
                sessions = await self.servers.engine(reached).sessions(reached)
            except VpnError as exc:
                log.warning("reading %s's client IPs failed: %s", row.name, exc.message)
                continue
            for item in sessions or ():
                client = owner_of[row.id].get(item.user)
                if client is None or client.user_id not in limits:
                    continue
                ips = first_seen[client.user_id]
                ips[item.ip] = min(ips.get(item.ip, item.since), item.since)
                found[client.user_id].append((row.name, item.user, item.ip))
        report: dict[str, list[str]] = {}
        for user_id, ips in first_seen.items():
            name, limit = limits[user_id]
            if len(ips) <= limit:
                continue
            excess = set(sorted(ips, key=lambda ip: (ips[ip], ip))[limit:])
            targets: dict[tuple[str, str], set[str]] = defaultdict(set)
            for server, identity, ip in found[user_id]:
                if ip in excess:
                    targets[server, identity].add(ip)
            for (server, identity), cut in targets.items():
                spec = specs[server]
                try:
                    reached = await self.servers.reach(spec)
                    await self.servers.engine(reached).cut_ips(
                        reached, identity, cut, self.servers.files(server)
                    )
                    # nftables here keeps devices off this machine's ports only.
                    remote = self.servers.on_remote_engine(spec)
                    if ban_seconds and bans.available() and not remote:
                        owner = bans.owner(self.servers.paths.home_id, user_id, limit)
                        await bans.ban(cut, spec.port, ban_seconds, owner)
                except VpnError as exc:
                    log.warning("cutting %s's extra devices on %s: %s", name, server, exc.message)
            report[name] = sorted(excess)
            log.info(
                "%s is connected from %d devices (limit %d): cut %s",
                name,
                len(ips),
                limit,
                ", ".join(sorted(excess)),
            )
        return report

    async def _lift_bans(self, limits: dict[int, tuple[str, int]], ports: set[int]) -> None:
        """End bans early that no longer stand: their user's limit was raised or removed (or
        the user is gone or no longer active), or no running server has that port."""
        from vpn_manager.engines import bans

        stale = []
        for item in await bans.listed():
            owner = item.user_limit(self.servers.paths.home_id)
            if owner is None:
                continue  # another home's, or not one of ours
            user_id, limit = owner
            if item.port not in ports or user_id not in limits or limits[user_id][1] > limit:
                stale.append(item)
        if stale:
            await bans.lift(stale)
            log.info("lifted %d device bans that no longer apply", len(stale))

    # -- keeping engines in line with the database ---------------------------------------------
    async def converge(self) -> dict[str, list[str]]:
        """Every server's engine, rendered config and users made to agree with the database
        (ServerService.converge: what a command killed half-way left, users an engine lost or
        got behind our back); an engine that stopped answering for HUNG_ROUNDS rounds in a row
        (hung, or SIGSTOPped) is restarted; engines and files of this home that no server owns
        are removed. Returns what was fixed, per server; a server that fails is logged and the
        others go on."""
        from vpn_manager.storage import servers as repo

        async with self.db.reading() as session:
            rows = [r for r, _ in await repo.list_servers(session)]
        fixed: dict[str, list[str]] = {}
        for row in rows:
            try:
                if await self._hung(row):
                    self.unanswered.pop(row.name, None)
                    await self.servers.restart(row.name)
                    done = [f"restarted it: it did not answer {HUNG_ROUNDS} probes in a row"]
                else:
                    done = await self.servers.converge(row.name)
            except VpnError as exc:
                log.error("bringing %s in line failed: %s", row.name, exc.message)
                continue
            if done:
                log.warning("%s: %s", row.name, "; ".join(done))
                fixed[row.name] = done
                self.repairs[row.name] += len(done)
        try:
            orphans = await self.servers.stop_orphans([repo.spec_of(row) for row in rows])
        except VpnError as exc:
            log.error("looking for engines no server owns failed: %s", exc.message)
        else:
            for what in orphans:
                log.warning("%s", what)
            if orphans:
                fixed[""] = orphans
        return fixed

    async def _hung(self, row: ServerRow) -> bool:
        """Probe a running server; True once it failed HUNG_ROUNDS probes in a row."""
        from vpn_manager.storage import servers as repo

        if row.desired != DesiredState.RUNNING.value or not self.servers.is_running(row):
            self.unanswered.pop(row.name, None)
            return False
        spec = repo.spec_of(row)
        try:
            health = await asyncio.wait_for(
                self.servers.engine(spec).probe(await self.servers.reach(spec)), PROBE_TIMEOUT
            )
            healthy = health.healthy
        except (VpnError, TimeoutError):
            healthy = False
        if healthy:
            self.unanswered.pop(row.name, None)
            return False
        self.unanswered[row.name] = self.unanswered.get(row.name, 0) + 1
        log.warning(
            "%s did not answer its probe (%d in a row)", row.name, self.unanswered[row.name]
        )
        return self.unanswered[row.name] >= HUNG_ROUNDS

    # -- supervision ---------------------------------------------------------------------------
    async def supervise(self, backoff: dict[str, tuple[int, datetime]]) -> list[str]:
        """Start servers that should run but do not (crashed, killed, machine rebooted), with an
        exponential backoff per server. Returns the ones started."""
        from vpn_manager.storage import servers as repo

        now = self.clock()
        started = []
        async with self.db.reading() as session:
            rows = [r for r, _ in await repo.list_servers(session)]
        running_rows = []
        for row in rows:
            try:
                running = self.servers.state_of(row).running
            except VpnError as exc:  # its Docker engine is unreachable: nothing to start it on
                log.error("cannot see %s: %s", row.name, exc.message)
                continue
            if row.desired != DesiredState.RUNNING.value or running:
                backoff.pop(row.name, None)
                if running:
                    running_rows.append(row)
                continue
            failures, not_before = backoff.get(row.name, (0, now))
            if now < not_before:
                continue
            log.warning("%s should run but does not: starting it", row.name)
            try:
                await self.servers.start(row.name)
            except VpnError as exc:
                wait = min(300, 2 ** (failures + 1))
                backoff[row.name] = (failures + 1, now + timedelta(seconds=wait))
                log.error("starting %s failed (%s); next try in %d s", row.name, exc.message, wait)
                continue
            backoff.pop(row.name, None)
            started.append(row.name)
        for name in await self.servers.guard_running(running_rows):
            log.warning("%s: its control API ports were open to every local user: closed", name)
        return started


def merged(polled: list[Counter], followed: list[Counter]) -> list[Counter]:
    """One counter per key: the higher of the polled and the followed reading of each direction
    (both are the engine's own totals, read at different moments)."""
    by_key = {c.key: c for c in polled}
    for seen in followed:
        known = by_key.get(seen.key, seen)
        up, down = max(known.up, seen.up), max(known.down, seen.down)
        by_key[seen.key] = Counter(seen.key, seen.user, up, down)
    return list(by_key.values())
