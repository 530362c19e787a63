"""The long-running service's loop, and the lean process that runs it.

`vpn serve` parses its options and loads the settings with the CLI, then replaces itself (exec,
same PID for systemd) with `python -m vpn_manager.services.daemon`, handing over what the service
needs of the settings as a ServiceConfig through a pipe: the service then never holds the
command-line libraries (typer, click, rich) nor pydantic in memory for its whole life. `vpn serve
--once` runs one round in the CLI process instead and prints it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import logging
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar
from zoneinfo import ZoneInfo

from vpn_manager.errors import StorageError, VpnError
from vpn_manager.paths import Paths

if TYPE_CHECKING:
    from vpn_manager.services.accounting import Accountant
    from vpn_manager.settings import DockerSshSettings, Settings

T = TypeVar("T")
PRUNE_EVERY_S = 3600  # history is hourly: pruning once an hour is enough
DATABASE_RETRY_MAX_S = 30.0  # the longest wait between two tries of a database that is down

log = logging.getLogger("vpn_manager.serve")


@dataclasses.dataclass(frozen=True)
class DockerPlain:
    """The settings' `docker` section as plain values (a runtimes.base.DockerDefaults)."""

    host: str | None
    images: dict[str, str]
    ssh_values: dict[str, Any] = dataclasses.field(default_factory=dict)

    def image(self, setting: str) -> str:
        return self.images[setting]

    @property
    def ssh(self) -> DockerSshSettings:
        """Built only when a remote engine is reached (which loads pydantic and the SDK)."""
        from vpn_manager.settings import DockerSshSettings

        return DockerSshSettings(**self.ssh_values)


@dataclasses.dataclass(frozen=True)
class ServiceConfig:
    """What the service reads of the settings, validated by the CLI and kept as plain values.
    It reaches the service process through a pipe, not argv or the environment, since the
    database URL may hold a password; that process then never loads pydantic (about 11 MB)."""

    database_url: str | None
    busy_timeout_ms: int
    connect_timeout_s: float
    timezone: str
    device_ban_s: int
    docker: DockerPlain

    @classmethod
    def from_settings(cls, settings: Settings) -> ServiceConfig:
        return cls(
            database_url=settings.database.url,
            busy_timeout_ms=settings.database.busy_timeout_ms,
            connect_timeout_s=settings.database.connect_timeout_s,
            timezone=settings.timezone,
            device_ban_s=settings.service.device_ban_s,
            docker=DockerPlain(
                settings.docker.host,
                settings.docker.images.model_dump(),
                settings.docker.ssh.model_dump(),
            ),
        )

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, text: str) -> ServiceConfig:
        data = json.loads(text)
        return cls(**{**data, "docker": DockerPlain(**data["docker"])})


async def serve(
    paths: Paths,
    config: ServiceConfig,
    *,
    interval: float,
    metrics_port: int,
    once: bool = False,
) -> dict[str, Any] | None:
    """Supervise, count, enforce and prune every `interval` seconds until SIGTERM/SIGINT; with
    `once`, do one round and return what it did."""
    from vpn_manager.services.accounting import Accountant
    from vpn_manager.services.servers import ServerService
    from vpn_manager.storage import Database

    db = Database.of_home(
        paths, config.database_url, config.busy_timeout_ms, config.connect_timeout_s
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    servers = ServerService(db, paths, docker=config.docker)
    accountant = Accountant(servers, zone=ZoneInfo(config.timezone), follow=not once)
    metrics = None
    if metrics_port and not once:
        from vpn_manager.services.metrics import MetricsPage, serve_metrics

        try:
            metrics = await serve_metrics("127.0.0.1", metrics_port, MetricsPage(accountant))
            log.info("metrics on http://127.0.0.1:%d/metrics", metrics_port)
        except OSError as exc:
            log.error("no metrics: cannot listen on 127.0.0.1:%d (%s)", metrics_port, exc.strerror)
    backoff: dict[str, tuple[int, datetime]] = {}
    log.info("serving (poll every %.1f s)", interval)
    retries = 0  # rounds in a row that found the database unusable
    try:
        while not stop.is_set():
            done = await one_round(accountant, backoff, config.device_ban_s)
            if once:
                return done
            pause = interval
            if accountant.database_error is not None:
                # Engines keep running and followers keep what they see; the database is asked
                # again after growing waits, not hammered (nor the log filled) every interval.
                pause = max(interval, min(DATABASE_RETRY_MAX_S, interval * 2**retries))
                retries += 1
                log.debug("the database is still unusable: next try in %.0f s", pause)
            else:
                retries = 0
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), pause)
    finally:
        if metrics is not None:
            metrics.close()
        await accountant.close()
        with contextlib.suppress(Exception):  # a database that is down cannot fail the exit
            await db.close()
        log.info("stopped")
    return None


async def one_round(
    accountant: Accountant, backoff: dict[str, tuple[int, datetime]], device_ban_s: int
) -> dict[str, Any]:
    """One round of the service: start what should run, bring engines in line with the
    database, count, enforce limits, cut extra devices, prune history. A step that fails (an
    engine not answering, a bug) is logged and reported under "errors", and the round goes on
    with the next step: the service never stops on it, and the next round tries again. A
    database that cannot be used (down, locked, refusing writes) ends the round, since every
    step needs it: reported under "errors", and logged once by database_checked."""
    from vpn_manager.services.accounting import EnforceReport, PollReport

    errors: dict[str, str] = {}
    unusable: list[str] = []  # why the database cannot be used, once a step found it so

    async def step(name: str, work: Callable[[], Awaitable[T]], default: T) -> T:
        if unusable:
            return default  # every step needs the database: the rest of the round waits for it
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
    started = await step("starting servers", lambda: accountant.supervise(backoff), no_names)
    for name in started:
        log.info("started %s", name)
    no_fixes: dict[str, list[str]] = {}
    fixed = await step("bringing engines in line", accountant.converge, no_fixes)
    polled = await step("counting traffic", accountant.poll, PollReport())
    log.debug(
        "poll: %d counters on %d servers, %d bytes counted, %.1f ms",
        polled.counters,
        polled.servers,
        polled.counted_bytes,
        polled.took_ms,
    )
    enforced = await step("enforcing limits", accountant.enforce, EnforceReport())
    no_cuts: dict[str, list[str]] = {}
    devices = await step(
        "limiting devices", lambda: accountant.limit_devices(device_ban_s), no_cuts
    )
    if accountant.pruned_at is None or time.monotonic() - accountant.pruned_at > PRUNE_EVERY_S:
        await step("pruning history", accountant.prune_history, 0)
    database_checked(accountant, unusable[0] if unusable else None)
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


def database_checked(accountant: Accountant, error: str | None) -> None:
    """Note what this round found of the database (`error`: why it could not be used), saying
    in the log only when that changes: one line when it goes, one when it is back."""
    now = time.time()
    if error is None:
        if accountant.database_error is not None:
            gone = now - (accountant.database_down_at or now)
            log.warning(
                "the database is back after %.0f s: what the engines counted meanwhile is counted",
                gone,
            )
        accountant.database_error = None
        accountant.database_down_at = None
        accountant.good_round_at = now
        return
    if accountant.database_error is None:
        log.error(
            "%s The service keeps running (engines serve, what they count is kept) and tries "
            "again after growing waits, up to %.0f s.",
            error,
            DATABASE_RETRY_MAX_S,
        )
        accountant.database_down_at = now
    accountant.database_error = error


def setup_logging(debug: bool) -> None:
    logging.basicConfig(
        stream=sys.stderr,
        level=logging.DEBUG if debug else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if not debug:  # the database's first-run migrations are not news for the service's log
        logging.getLogger("alembic").setLevel(logging.WARNING)


def read_config(fd: int | None, paths: Paths) -> ServiceConfig:
    """The config `vpn serve` wrote into the pipe `fd`; without one (the module run by hand),
    the settings are loaded here, pydantic and all."""
    import os

    if fd is None:
        from vpn_manager.settings import load_settings

        return ServiceConfig.from_settings(load_settings(paths))
    with os.fdopen(fd, encoding="utf-8") as pipe:
        return ServiceConfig.from_json(pipe.read())


def main(argv: list[str] | None = None) -> int:
    """`python -m vpn_manager.services.daemon`: what `vpn serve` execs into. Paths come from the
    environment (VPN_HOME, VPN_CONFIG, XDG_*), as for every command."""
    import os

    parser = argparse.ArgumentParser(prog="vpn serve")
    parser.add_argument("--interval", type=float, required=True)
    parser.add_argument("--metrics-port", type=int, required=True)
    parser.add_argument("--config-fd", type=int, help="a pipe holding the ServiceConfig as JSON")
    parser.add_argument("--debug", action="store_true")
    args = parser.parse_args(argv)
    setup_logging(args.debug)
    try:
        paths = Paths.from_env(os.environ)
        config = read_config(args.config_fd, paths)
        asyncio.run(serve(paths, config, interval=args.interval, metrics_port=args.metrics_port))
    except VpnError as exc:
        log.error("%s", exc.message)
        return exc.exit_code
    except Exception as exc:
        if args.debug:
            raise
        log.error("the service stopped on an unexpected error: %s (--debug shows where)", exc)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
