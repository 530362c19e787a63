"""Traffic counting: what each user moved through each server, read from the engines.

Each poll reads every running engine's counters without resetting them and keeps, per counter,
the last value read and the engine process it came from (a baseline in the database). What a
counter grew by since the last read is added to its user's totals, period usage and hourly
history, in the same transaction as the new baseline: a failed read or a crash between reads
loses nothing that was counted and counts nothing twice (the next read catches up). A counter
read from a new engine process (restart, crash) or that went backwards is counted from zero.
Readings taken just before an engine reset (pending_readings.py) are counted first.
"""

from __future__ import annotations

import json
import logging
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from vpn_manager import storage
from vpn_manager.engines.base import Counter, Engine, Follower
from vpn_manager.errors import VpnError
from vpn_manager.services import pending_readings
from vpn_manager.services.servers import ServerService, owners, utcnow
from vpn_manager.specs import ServerSpec

if TYPE_CHECKING:
    from vpn_manager.storage import Database

log = logging.getLogger("vpn_manager.accounting")
HISTORY_DAYS = 90


@dataclass
class PollReport:
    servers: int = 0
    counters: int = 0
    counted_bytes: int = 0
    took_ms: float = 0.0
    failed: dict[str, str] = field(default_factory=dict)


class Traffic:
    """Counts traffic into the database; remembers, since it was made, bytes per server and who
    moved any in the last poll (for the metrics)."""

    def __init__(
        self,
        servers: ServerService,
        clock: Callable[[], datetime] = utcnow,
        follow: bool = False,
    ) -> None:
        """`follow`: keep following engines' events between polls where their counters alone
        can miss some (Engine.follower); for the long-running service, whose polls are a few
        seconds apart. Call close() when done."""
        self.servers = servers
        self.db: Database = servers.db
        self.clock = clock
        self.last_poll = PollReport()
        self.server_bytes: dict[int, list[int]] = defaultdict(lambda: [0, 0])
        self.online: dict[int, set[int]] = {}
        self.pruned_at: float | None = None  # time.monotonic() of the last prune_history
        self.follow = follow
        # server id → (engine epoch, where it is reached, its follower)
        self.followers: dict[int, tuple[str, str, Follower]] = {}

    async def poll(self) -> PollReport:
        """Read every running server once and add what each counter grew by. Pollers on this
        machine (the service, `vpn monitor traffic`) take turns: two reading the same baseline
        at once would both add the same growth."""
        async with pending_readings.poll_lock(self.servers.paths.run_dir):
            return await self._poll()

    async def _poll(self) -> PollReport:
        report = PollReport()
        running: set[int] = set()
        started = time.perf_counter()
        async with self.db.reading() as session:
            rows = [r for r, _ in await storage.servers.list_servers(session)]
        run_dir = self.servers.paths.run_dir
        pending_readings.remove_temps(run_dir)
        for row in rows:
            # Readings taken just before a stop or reload first, then the live counters.
            readings = pending_readings.pending(run_dir, row.name)
            if readings is not None:  # most polls: no file, no further I/O
                for epoch, kept in readings:
                    report.counted_bytes += await self._count(row.id, epoch, kept)
                pending_readings.done(run_dir, row.name)
            spec = storage.servers.spec_of(row)
            try:
                state = self.servers.state_of(row)
                if not state.running:
                    continue
                # Running: its follower goes on even if this reading fails (an API that did not
                # answer in time), and hands what it saw to the next poll that reads the server.
                running.add(row.id)
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
                # What a follower handed over exists nowhere else now: the whole reading is
                # kept, and the next poll that reaches the database counts it first.
                pending_readings.keep(run_dir, row.name, state.epoch, counters)
                raise
            report.counters += len(counters)
            report.servers += 1
        for server_id in set(self.followers) - running:  # stopped or removed
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
        async with self.db.session() as session:
            pruned = await storage.accounting.prune_hourly(
                session, self.clock() - timedelta(days=keep_days)
            )
        self.pruned_at = time.monotonic()
        return pruned

    async def _count(self, server_id: int, epoch: str, counters: list[Counter]) -> int:
        now = self.clock()
        async with self.db.session() as session:
            owner = owners(await storage.servers.identities(session, server_id))
            baselines = await storage.accounting.baselines(session, server_id)
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
            await storage.accounting.save_baselines(
                session, server_id, epoch, fresh, baselines, now
            )
            deltas = {uid: (up, down) for uid, (up, down) in grown.items() if up or down}
            await storage.accounting.add_usage(session, server_id, deltas, now)
            self.online[server_id] = set(deltas)
            total = self.server_bytes[server_id]
            total[0] += sum(up for up, _ in deltas.values())
            total[1] += sum(down for _, down in deltas.values())
            return sum(up + down for up, down in deltas.values())


def merged(polled: list[Counter], followed: list[Counter]) -> list[Counter]:
    """One counter per key: the higher of the polled and the followed reading of each direction
    (both are the engine's own totals, read at different moments)."""
    by_key = {c.key: c for c in polled}
    for seen in followed:
        known = by_key.get(seen.key, seen)
        up, down = max(known.up, seen.up), max(known.down, seen.down)
        by_key[seen.key] = Counter(seen.key, seen.user, up, down)
    return list(by_key.values())
