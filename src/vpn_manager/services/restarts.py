"""Restarts: keeping the engines running and in line with the database.

Servers that should run but do not (crashed, killed, machine rebooted) are started again, with an
exponential backoff per server; an engine that stopped answering its probe for HUNG_ROUNDS rounds
in a row (hung, or SIGSTOPped) is restarted; every other server is brought in line with the
database (ServerService.converge), and engines of this home that no server owns are removed.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from vpn_manager import storage
from vpn_manager.errors import VpnError
from vpn_manager.kinds import DesiredState
from vpn_manager.services.servers import ServerService, utcnow

if TYPE_CHECKING:
    from vpn_manager.storage.orm import ServerRow

log = logging.getLogger("vpn_manager.accounting")
HUNG_ROUNDS = 3  # probes failed in a row before a running engine is restarted
PROBE_TIMEOUT = 5.0
MOST_BACKOFF_S = 300


class Restarts:
    """Starts crashed servers, restarts hung ones, repairs the rest; remembers per server the
    failed starts (for the backoff), the probes failed in a row and the fixes made (metrics)."""

    def __init__(self, servers: ServerService, clock: Callable[[], datetime] = utcnow) -> None:
        self.servers = servers
        self.db = servers.db
        self.clock = clock
        self.backoff: dict[str, tuple[int, datetime]] = {}  # server → (failures, not before)
        self.unanswered: dict[str, int] = {}  # server → probes failed in a row
        self.repairs: dict[str, int] = defaultdict(int)  # server → fixes by converge()

    async def restart_crashed(self) -> list[str]:
        """Start servers that should run but do not (crashed, killed, machine rebooted), with an
        exponential backoff per server. Returns the ones started."""
        now = self.clock()
        started = []
        backoff = self.backoff
        async with self.db.reading() as session:
            rows = [r for r, _ in await storage.servers.list_servers(session)]
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
                wait = min(MOST_BACKOFF_S, 2 ** (failures + 1))
                backoff[row.name] = (failures + 1, now + timedelta(seconds=wait))
                log.error("starting %s failed (%s); next try in %d s", row.name, exc.message, wait)
                continue
            backoff.pop(row.name, None)
            started.append(row.name)
        for name in await self.servers.guard_running(running_rows):
            log.warning("%s: its control API ports were open to every local user: closed", name)
        return started

    async def converge(self) -> dict[str, list[str]]:
        """Every server's engine, rendered config and users made to agree with the database
        (ServerService.converge: what a command killed half-way left, users an engine lost or
        got behind our back); an engine that stopped answering for HUNG_ROUNDS rounds in a row
        (hung, or SIGSTOPped) is restarted; engines and files of this home that no server owns
        are removed. Returns what was fixed, per server; a server that fails is logged and the
        others go on."""
        async with self.db.reading() as session:
            rows = [r for r, _ in await storage.servers.list_servers(session)]
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
            orphans = await self.servers.stop_orphans(
                [storage.servers.spec_of(row) for row in rows]
            )
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
        if row.desired != DesiredState.RUNNING.value or not self.servers.is_running(row):
            self.unanswered.pop(row.name, None)
            return False
        spec = storage.servers.spec_of(row)
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
