"""How `vpn server …` and `vpn proxy …` show servers: the list's columns, one server's fields,
a status's data, and warnings."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import typer

from vpn_manager.cli.context import app_context
from vpn_manager.cli.options import FormatOption

if TYPE_CHECKING:
    from vpn_manager.cli.output import Output
    from vpn_manager.models.server import Server, ServerStatus

COLUMNS = [
    ("name", "NAME"),
    ("protocol", "PROTOCOL"),
    ("address", "ADDRESS"),
    ("state", "STATE"),
    ("users", "USERS"),
    ("sni", "SNI/METHOD"),
]


def _row(server: Server) -> dict[str, Any]:
    return server.model_dump(mode="json")


def _cells(server: Server) -> dict[str, Any]:
    return {
        "name": server.name,
        "protocol": server.protocol.value,
        "address": f"{server.host}:{server.port}",
        "state": ("running" if server.running else "stopped")
        + (
            ""
            if server.running == (server.desired.value == "running")
            else f" (wanted {server.desired.value})"
        ),
        "users": str(server.users),
        "sni": server.settings.get("sni") or server.settings.get("method") or "-",
    }


def show(ctx: typer.Context, server: Server, fmt: FormatOption) -> None:
    out = app_context(ctx).output(fmt)
    if out.structured:
        out.data(_row(server))
        return
    flat = {key: value for key, value in _row(server).items() if key != "settings"}
    flat.update({key: value for key, value in server.settings.items() if key != "api_port"})
    out.record(flat)


def warn(out: Output, warnings: list[str]) -> None:
    """Warnings go to stderr, whatever the format (json output carries them in its data too)."""
    for warning in warnings:
        out.note(f"Warning: {warning}")


def emit_servers(out: Output, servers: list[Server], empty: str) -> None:
    if out.structured:
        out.data([_row(s) for s in servers])
    else:
        out.records([_cells(s) for s in servers], COLUMNS, empty=empty)


def status_data(status: ServerStatus) -> dict[str, Any]:
    return status.model_dump(mode="json")
