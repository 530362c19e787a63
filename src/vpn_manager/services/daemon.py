"""The long-running service's loop, and the lean process that runs it.

`vpn serve` parses its options with the CLI, then replaces itself (exec, same PID for systemd)
with `python -m vpn_manager.services.daemon`: the service then never holds the command-line
libraries (typer, click, rich) in memory for its whole life. `vpn serve --once` runs one round
in the CLI process instead and prints it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from datetime import datetime
from typing import Any

from vpn_manager.settings import Paths, Settings

log = logging.getLogger("vpn_manager.serve")


async def serve(
    paths: Paths,
    settings: Settings,
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

    db = Database.from_settings(settings, paths)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    accountant = Accountant(ServerService(db, paths, docker=settings.docker), zone=settings.zone)
    metrics = None
    if metrics_port and not once:
        from vpn_manager.services.metrics import render, serve_metrics

        try:
            metrics = await serve_metrics("127.0.0.1", metrics_port, lambda: render(accountant))
            log.info("metrics on http://127.0.0.1:%d/metrics", metrics_port)
        except OSError as exc:
            log.error("no metrics: cannot listen on 127.0.0.1:%d (%s)", metrics_port, exc.strerror)
    backoff: dict[str, tuple[int, datetime]] = {}
    log.info("serving (poll every %.1f s)", interval)
    try:
        while not stop.is_set():
            started = await accountant.supervise(backoff)
            for name in started:
                log.info("started %s", name)
            polled = await accountant.poll()
            log.debug(
                "poll: %d counters on %d servers, %d bytes counted, %.1f ms",
                polled.counters,
                polled.servers,
                polled.counted_bytes,
                polled.took_ms,
            )
            enforced = await accountant.enforce()
            devices = await accountant.limit_devices(settings.service.device_ban_s)
            await accountant.prune_history()
            for name, status in enforced.limited.items():
                log.info("%s is now %s: removed from its servers", name, status)
            for name in enforced.restored:
                log.info("%s is active again", name)
            if once:
                return {
                    "started": started,
                    "servers_polled": polled.servers,
                    "counters": polled.counters,
                    "counted_bytes": polled.counted_bytes,
                    "poll_ms": round(polled.took_ms, 1),
                    "failed": polled.failed,
                    "limited": enforced.limited,
                    "restored": enforced.restored,
                    "devices_cut": devices,
                }
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), interval)
    finally:
        if metrics is not None:
            metrics.close()
        await db.close()
        log.info("stopped")
    return None


def setup_logging(debug: bool) -> None:
    logging.basicConfig(
        stream=sys.stderr,
        level=logging.DEBUG if debug else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if not debug:  # the database's first-run migrations are not news for the service's log
        logging.getLogger("alembic").setLevel(logging.WARNING)


def main(argv: list[str] | None = None) -> int:
    """`python -m vpn_manager.services.daemon`: what `vpn serve` execs into. Paths come from the
    environment (VPN_HOME, VPN_CONFIG, XDG_*), as for every command."""
    import os

    from vpn_manager.errors import VpnError
    from vpn_manager.settings import load_settings

    parser = argparse.ArgumentParser(prog="vpn serve")
    parser.add_argument("--interval", type=float, required=True)
    parser.add_argument("--metrics-port", type=int, required=True)
    parser.add_argument("--debug", action="store_true")
    args = parser.parse_args(argv)
    setup_logging(args.debug)
    try:
        paths = Paths.from_env(os.environ)
        settings = load_settings(paths)
        asyncio.run(serve(paths, settings, interval=args.interval, metrics_port=args.metrics_port))
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
