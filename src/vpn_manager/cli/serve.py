"""`vpn serve`: the long-running service, in the foreground (for systemd or a container)."""

from __future__ import annotations

import asyncio
import os
import sys
from typing import Annotated

import typer

from vpn_manager.cli.context import app_context
from vpn_manager.cli.options import FormatOption
from vpn_manager.daemon import main as daemon
from vpn_manager.services.root import ServiceConfig


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
    engine's counters into the database, disables users over their quota or past their expiry
    (cutting their open connections) and cuts the devices of users over their device limit,
    re-enabling users when a period resets or a limit is raised. Commands keep working while
    it runs; it picks up their changes."""
    context = app_context(ctx)
    settings = context.settings
    pause = interval or settings.service.poll_interval_s
    port = settings.service.metrics_port if metrics_port is None else metrics_port
    config = ServiceConfig.from_settings(settings)
    if once:
        daemon.setup_logging(context.debug)
        done = asyncio.run(
            daemon.serve(context.paths, config, interval=pause, metrics_port=0, once=True)
        )
        context.output(output_format).record(done or {})
        return
    # Replace this process with the lean service process (same PID): see daemon/main.py.
    # It finds the same files through the environment, and gets the settings through a pipe
    # (a few hundred bytes, far under the pipe's buffer: written whole before the exec).
    read_end, write_end = os.pipe()
    with os.fdopen(write_end, "w", encoding="utf-8") as pipe:
        pipe.write(config.to_json())
    os.set_inheritable(read_end, True)
    env = dict(os.environ)
    if context.home is not None:
        env["VPN_HOME"] = str(context.home.expanduser().absolute())
    if context.config_file is not None:
        env["VPN_CONFIG"] = str(context.paths.config_file)
    argv = [sys.executable, "-m", "vpn_manager.daemon.main"]
    argv += ["--interval", str(pause), "--metrics-port", str(port), "--config-fd", str(read_end)]
    if context.debug:
        argv.append("--debug")
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, argv, env)
