"""`vpn server list|status|start|stop|restart|usage|logs|remove`: a server's life once installed,
what it is doing, and its engine's logs (the proxies' `vpn proxy …` share these commands)."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Annotated, Any

import typer

from vpn_manager.cli.context import app_context
from vpn_manager.cli.options import FormatOption
from vpn_manager.cli.servers.args import AnyServer, ServerName
from vpn_manager.cli.servers.containers import container_cells
from vpn_manager.cli.servers.display import (
    STATUS_COLUMNS,
    emit_servers,
    status_cells,
    status_data,
    warn,
)
from vpn_manager.errors import Cancelled, InvalidInput
from vpn_manager.units import format_size

if TYPE_CHECKING:
    from collections.abc import Collection, Iterator

    from vpn_manager.models.server import Server, ServerStatus
    from vpn_manager.services.servers import ServerService

NO_SERVERS = "No servers yet. Install one with `vpn server install vless-reality …`."


def list_servers(ctx: typer.Context, output_format: FormatOption = None) -> None:
    """List servers."""
    context = app_context(ctx)

    async def read(s: ServerService) -> tuple[list[Server], list[str]]:
        return await s.all(), await s.reconcile()

    servers, hints = context.servers(read)
    out = context.output(output_format)
    emit_servers(out, servers, NO_SERVERS)
    for hint in hints:
        out.note(hint)


def status(ctx: typer.Context, name: AnyServer = None, output_format: FormatOption = None) -> None:
    """Show whether a server runs, answers on its port and API, and what it uses (every
    server's, one line each, without a name)."""
    if name is None:
        statuses(ctx, output_format)
        return
    context = app_context(ctx)
    state = context.servers(lambda s: s.status(name))
    out = context.output(output_format)
    data = status_data(state)
    if not out.structured:
        data["rss_bytes"] = format_size(state.rss_bytes) if state.rss_bytes else "-"
        data.pop("container")
        data.pop("warnings")
        if state.container is not None:
            data.update(container_cells(state))
    out.record(data)
    warn(out, state.warnings)


def statuses(
    ctx: typer.Context,
    output_format: FormatOption,
    only: Collection[str] | None = None,
    empty: str = NO_SERVERS,
) -> None:
    """The status of every server (of the protocols in `only`, if given): a list in json/yaml,
    a table otherwise."""
    context = app_context(ctx)

    async def read(s: ServerService) -> list[ServerStatus]:
        servers = [x for x in await s.all() if only is None or x.protocol in only]
        return [await s.status(server.name) for server in servers]

    states = context.servers(read)
    out = context.output(output_format)
    if out.structured:
        out.data([status_data(state) for state in states])
    else:
        out.records(
            [status_cells(state) for state in states],
            STATUS_COLUMNS,
            empty=empty,
        )
    warn(out, [f"{state.name}: {warning}" for state in states for warning in state.warnings])


def start(ctx: typer.Context, name: ServerName, output_format: FormatOption = None) -> None:
    """Start a server (and keep it wanted running)."""
    context = app_context(ctx)
    state = context.servers(lambda s: s.start(name))
    context.output(output_format).result(
        status_data(state), f"{name} is running (pid {state.pid})."
    )
    warn(context.output(output_format), state.warnings)


def stop(ctx: typer.Context, name: ServerName, output_format: FormatOption = None) -> None:
    """Stop a server (it stays stopped until started)."""
    context = app_context(ctx)
    was = context.servers(lambda s: s.stop(name))
    context.output(output_format).result(
        {"name": name, "stopped": was}, f"Stopped {name}." if was else f"{name} was not running."
    )


def restart(ctx: typer.Context, name: ServerName, output_format: FormatOption = None) -> None:
    """Restart a server: validate its config, restart, probe; roll back if it fails."""
    context = app_context(ctx)
    state = context.servers(lambda s: s.restart(name))
    context.output(output_format).result(status_data(state), f"Restarted {name} (pid {state.pid}).")
    warn(context.output(output_format), state.warnings)


def usage(ctx: typer.Context, name: ServerName, output_format: FormatOption = None) -> None:
    """Per-user traffic as the running engine counts it now (since it started)."""
    context = app_context(ctx)
    counters = context.servers(lambda s: s.usage(name))
    out = context.output(output_format)
    rows: list[dict[str, Any]] = [
        {"name": user, "upload_bytes": up, "download_bytes": down}
        for user, (up, down) in sorted(counters.items())
    ]
    if out.structured:
        out.data(rows)
        return
    out.records(
        [
            {
                "name": user,
                "up": format_size(up),
                "down": format_size(down),
            }
            for user, (up, down) in sorted(counters.items())
        ],
        [("name", "USER"), ("up", "UPLOAD"), ("down", "DOWNLOAD")],
        empty="No traffic counted yet.",
    )


def logs(
    ctx: typer.Context,
    name: ServerName,
    lines: Annotated[int, typer.Option("--lines", "-n", metavar="N", help="How many lines.")] = 100,
    follow: Annotated[
        bool, typer.Option("--follow", "-F", help="Keep printing new lines (Ctrl-C stops).")
    ] = False,
) -> None:
    """Print the end of a server's engine logs (its container's output under Docker)."""
    if lines < 0:
        raise InvalidInput("--lines cannot be negative.")
    context = app_context(ctx)
    if not follow:
        for line in context.servers(lambda s: s.read_logs(name, lines)):
            sys.stdout.write(line + "\n")
        return
    stream: Iterator[str] = context.servers(lambda s: s.follow(name, lines))
    for line in stream:  # Ctrl-C ends it with exit code 130 (cli/app.py)
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


def remove(
    ctx: typer.Context,
    name: ServerName,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    keep_logs: Annotated[
        bool,
        typer.Option(
            "--keep-logs", help="Keep its log files (they hold client IPs: removed by default)."
        ),
    ] = False,
    output_format: FormatOption = None,
) -> None:
    """Stop a server and remove it with its rendered config, its logs and its users' credentials
    on it."""
    context = app_context(ctx)
    if not yes:
        if not sys.stdin.isatty():
            raise Cancelled(  # nobody to ask: as if the question were declined (exit 10)
                "Refusing to remove a server without confirmation.", hint="Add --yes."
            )
        if not typer.confirm(f"Remove server {name}? Its users lose access through it."):
            raise Cancelled("Nothing was removed.")
    context.servers(lambda s: s.remove(name, keep_logs=keep_logs))
    context.output(output_format).result({"removed": name}, f"Removed {name}.")
