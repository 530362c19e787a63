"""`vpn serve`: the long-running service, in the foreground (for systemd or a container)."""

from __future__ import annotations

import logging
import sys
from datetime import datetime
from typing import Annotated

import typer

from vpn_manager.cli.context import app_context
from vpn_manager.cli.options import FormatOption


def serve(
    ctx: typer.Context,
    interval: Annotated[
        float | None,
        typer.Option(
            "--interval", metavar="SECONDS", help="Seconds between polls (service.poll_interval_s)."
        ),
    ] = None,
    once: Annotated[
        bool,
        typer.Option(
            "--once", help="Do one round (supervise, count, enforce), print what it did, exit."
        ),
    ] = False,
    metrics_port: Annotated[
        int | None,
        typer.Option(
            "--metrics-port",
            metavar="PORT",
            help="Serve Prometheus metrics on 127.0.0.1:PORT (service.metrics_port; 0: off).",
        ),
    ] = None,
    output_format: FormatOption = None,
) -> None:
    """Run the service: restart crashed engines, count traffic, enforce quotas and expiry.

    Every round it starts servers that should run but do not (with backoff), reads every running
    engine's counters into the database, and disables users over their quota or past their
    expiry (cutting their open connections) and the devices of users over their device limit,
    re-enabling them when a period resets or a limit is
    raised. Commands keep working while it runs; it picks up their changes."""
    import asyncio
    import contextlib
    import signal

    from vpn_manager.services.accounting import Accountant
    from vpn_manager.services.servers import ServerService

    context = app_context(ctx)
    settings = context.settings
    pause = interval or settings.service.poll_interval_s
    logging.basicConfig(
        stream=sys.stderr,
        level=logging.DEBUG if context.debug else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    log = logging.getLogger("vpn_manager.serve")

    async def main() -> None:
        db = context.database()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        accountant = Accountant(ServerService(db, context.paths), zone=settings.zone)
        port = settings.service.metrics_port if metrics_port is None else metrics_port
        metrics = None
        if port and not once:
            from vpn_manager.services.metrics import render, serve_metrics

            try:
                metrics = await serve_metrics("127.0.0.1", port, lambda: render(accountant))
                log.info("metrics on http://127.0.0.1:%d/metrics", port)
            except OSError as exc:
                log.error("no metrics: cannot listen on 127.0.0.1:%d (%s)", port, exc.strerror)
        backoff: dict[str, tuple[int, datetime]] = {}
        log.info("serving (poll every %.1f s)", pause)
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
                    context.output(output_format).record(
                        {
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
                    )
                    return
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), pause)
        finally:
            if metrics is not None:
                metrics.close()
            await db.close()
            log.info("stopped")

    asyncio.run(main())
