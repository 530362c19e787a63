"""The lean process that runs the long-running service's rounds (services/rounds.py).

`vpn serve` parses its options and loads the settings with the CLI, then replaces itself (exec,
same PID for systemd) with `python -m vpn_manager.daemon.main`, handing over what the service
needs of the settings as a ServiceConfig (services/root.py) through a pipe: the service then never
holds the command-line libraries (typer, click, rich) nor pydantic in memory for its whole life.
`vpn serve --once` runs one round in the CLI process instead and prints it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys
from typing import Any

from vpn_manager.daemon.metrics_http import serve_metrics
from vpn_manager.errors import VpnError
from vpn_manager.paths import Paths
from vpn_manager.services.metrics import MetricsPage
from vpn_manager.services.root import ServiceConfig, Services

log = logging.getLogger("vpn_manager.serve")


async def serve(
    paths: Paths,
    config: ServiceConfig,
    *,
    interval: float,
    metrics_port: int,
    once: bool = False,
) -> dict[str, Any] | None:
    """Restart, count, enforce and prune every `interval` seconds until SIGTERM/SIGINT; with
    `once`, do one round and return what it did."""
    services = Services.from_config(config, paths)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    rounds = services.rounds(follow=not once)
    metrics = None
    if metrics_port and not once:
        try:
            metrics = await serve_metrics("127.0.0.1", metrics_port, MetricsPage(rounds))
            log.info("metrics on http://127.0.0.1:%d/metrics", metrics_port)
        except OSError as exc:
            log.error("no metrics: cannot listen on 127.0.0.1:%d (%s)", metrics_port, exc.strerror)
    log.info("serving (poll every %.1f s)", interval)
    try:
        while not stop.is_set():
            done = await rounds.run_once()
            if once:
                return done
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), rounds.pause(interval))
    finally:
        if metrics is not None:
            metrics.close()
        await rounds.close()
        with contextlib.suppress(Exception):  # a database that is down cannot fail the exit
            await services.close()
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


def read_config(fd: int | None, paths: Paths) -> ServiceConfig:
    """The config `vpn serve` wrote into the pipe `fd`; without one (the module run by hand),
    the settings are loaded here, pydantic and all."""
    if fd is None:
        from vpn_manager.settings import load_settings

        return ServiceConfig.from_settings(load_settings(paths))
    with os.fdopen(fd, encoding="utf-8") as pipe:
        return ServiceConfig.from_json(pipe.read())


def main(argv: list[str] | None = None) -> int:
    """`python -m vpn_manager.daemon.main`: what `vpn serve` execs into. Paths come from the
    environment (VPN_HOME, VPN_CONFIG, XDG_*), as for every command."""
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
