"""`vpn server export-compose` and the Docker side of `vpn server status`: the servers that run
in containers."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from vpn_manager.cli.context import app_context
from vpn_manager.fsutil import atomic_write
from vpn_manager.units import format_size

if TYPE_CHECKING:
    from vpn_manager.models.server import ServerStatus


def container_cells(state: ServerStatus) -> dict[str, Any]:
    """A container's state, health and use, flattened for a table."""
    box = state.container
    assert box is not None

    def size(value: int | None) -> str:
        return format_size(value) if value is not None else "-"

    memory = size(box.memory_bytes)
    if box.memory_limit_bytes:
        memory += f" of {size(box.memory_limit_bytes)}"
    return {
        "container": f"{box.name} ({box.id})",
        "image": box.image,
        "container_state": box.state,
        "health": box.health,
        "restarts": box.restarts,
        "cpu": "-" if box.cpu_percent is None else f"{box.cpu_percent:.1f}%",
        "memory": memory,
        "network": f"rx {size(box.net_rx_bytes)}, tx {size(box.net_tx_bytes)}",
    }


def export_compose(
    ctx: typer.Context,
    file: Annotated[
        str,
        typer.Option("--file", metavar="PATH", help="Where to write it ('-': standard output)."),
    ] = "docker-compose.yml",
) -> None:
    """Write a docker-compose.yml that runs this home's Docker servers the same way."""
    context = app_context(ctx)
    text = context.servers(lambda s: s.export_compose())
    if file == "-":
        sys.stdout.write(text)
        return
    atomic_write(Path(file), text, mode=0o644)
    context.output().note(f"Wrote {file}. Check it with `docker-compose -f {file} config`.")
