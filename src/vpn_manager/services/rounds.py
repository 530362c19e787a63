"""One round of the long-running service: start what should run, bring engines in line with the
database, count traffic, enforce limits, cut extra devices, prune history (restarts.py,
traffic.py, limits.py, devices.py). The process that repeats it is daemon/main.py; `vpn serve
--once` runs one round in the CLI process.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from datetime import datetime, tzinfo
from typing import Any, TypeVar

from vpn_manager.errors import StorageError, VpnError
from vpn_manager.services.devices import Devices
from vpn_manager.services.limits import EnforceReport, Limits
from vpn_manager.services.restarts import Restarts
from vpn_manager.services.servers import ServerService
from vpn_manager.services.traffic import PollReport, Traffic

T = TypeVar("T")
PRUNE_EVERY_S = 3600  # history is hourly: pruning once an hour is enough
DATABASE_RETRY_MAX_S = 30.0  # the longest wait between two tries of a database that is down

log = logging.getLogger("vpn_manager.serve")


class Rounds:
    """The service's work, one round at a time, and what it remembers between rounds: the
    parts' own state, and what the last round found of the database (for the metrics)."""

    def __init__(
        self,
        servers: ServerService,
        clock: Callable[[], datetime],
        zone: tzinfo,
        device_ban_s: int,
        follow: bool = False,
    ) -> None:
        self.servers = servers
        self.db = servers.db
        self.traffic = Traffic(servers, clock, follow=follow)
        self.limits = Limits(servers, clock, zone)
        self.devices = Devices(servers)
        self.restarts = Restarts(servers, clock)
        self.device_ban_s = device_ban_s
        # Why the database could not be used (None: it could), since when (time.time()), the
        # last good round, and rounds in a row that found it unusable.
        self.database_error: str | None = None
        self.database_down_at: float | None = None
        self.good_round_at: float | None = None
        self.retries = 0

    async def run_once(self) -> dict[str, Any]:
        """One round. A step that fails (an engine not answering, a bug) is logged and reported
        under "errors", and the round goes on with the next step: the service never stops on
        it, and the next round tries again. A database that cannot be used (down, locked,
        refusing writes) ends the round, since every step needs it: reported under "errors",
        and logged once by database_checked."""
        errors: dict[str, str] = {}
        unusable: list[str] = []  # why the database cannot be used, once a step found it so

        async def step(name: str, work: Callable[[], Awaitable[T]], default: T) -> T:
            if unusable:
                return default  # every step needs the database: the rest of the round waits
            try:
                return await work()
            except StorageError as exc:
                errors[name] = exc.message
                unusable.append(exc.message)
            except VpnError as exc:
                errors[name] = exc.message
                log.error("%s failed: %s", name, exc.message)
            except Exception as exc:  # a bug: say it and go on; --debug shows where
                errors[name] = f"{type(exc).__name__}: {exc}"
                log.error("%s failed on an unexpected error: %s", name, errors[name])
                log.debug("where", exc_info=True)
            return default

        no_names: list[str] = []
        started = await step("starting servers", self.restarts.restart_crashed, no_names)
        for name in started:
            log.info("started %s", name)
        no_fixes: dict[str, list[str]] = {}
        fixed = await step("bringing engines in line", self.restarts.converge, no_fixes)
        polled = await step("counting traffic", self.traffic.poll, PollReport())
        log.debug(
            "poll: %d counters on %d servers, %d bytes counted, %.1f ms",
            polled.counters,
            polled.servers,
            polled.counted_bytes,
            polled.took_ms,
        )
        enforced = await step("enforcing limits", self.limits.enforce, EnforceReport())
        no_cuts: dict[str, list[str]] = {}
        devices = await step(
            "limiting devices", lambda: self.devices.limit_devices(self.device_ban_s), no_cuts
        )
        pruned_at = self.traffic.pruned_at
        if pruned_at is None or time.monotonic() - pruned_at > PRUNE_EVERY_S:
            await step("pruning history", self.traffic.prune_history, 0)
        self.database_checked(unusable[0] if unusable else None)
        for name, status in enforced.limited.items():
            log.info("%s is now %s: removed from its servers", name, status)
        for name in enforced.restored:
            log.info("%s is active again", name)
        return {
            "started": started,
            "fixed": fixed,
            "servers_polled": polled.servers,
            "counters": polled.counters,
            "counted_bytes": polled.counted_bytes,
            "poll_ms": round(polled.took_ms, 1),
            "failed": polled.failed | enforced.failed,
            "limited": enforced.limited,
            "restored": enforced.restored,
            "devices_cut": devices,
            "errors": errors,
        }

    def database_checked(self, error: str | None) -> None:
        """Note what this round found of the database (`error`: why it could not be used),
        saying in the log only when that changes: one line when it goes, one when it is back."""
        now = time.time()
        if error is None:
            if self.database_error is not None:
                gone = now - (self.database_down_at or now)
                log.warning(
                    "the database is back after %.0f s: what the engines counted meanwhile is "
                    "counted",
                    gone,
                )
            self.database_error = None
            self.database_down_at = None
            self.good_round_at = now
            return
        if self.database_error is None:
            log.error(
                "%s The service keeps running (engines serve, what they count is kept) and tries "
                "again after growing waits, up to %.0f s.",
                error,
                DATABASE_RETRY_MAX_S,
            )
            self.database_down_at = now
        self.database_error = error

    def pause(self, interval: float) -> float:
        """How long to wait before the next round: `interval`, or while the database cannot be
        used, growing waits (engines keep running and followers keep what they see; the
        database is asked again, not hammered, nor the log filled, every interval)."""
        if self.database_error is None:
            self.retries = 0
            return interval
        pause: float = max(interval, min(DATABASE_RETRY_MAX_S, interval * 2**self.retries))
        self.retries += 1
        log.debug("the database is still unusable: next try in %.0f s", pause)
        return pause

    async def close(self) -> None:
        """Stop following the engines."""
        await self.traffic.close()
