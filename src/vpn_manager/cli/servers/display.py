"""How `vpn server …` and `vpn proxy …` show servers: the list's columns, one server's fields,
a status's data, and warnings."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import typer

from vpn_manager.cli.context import app_context
from vpn_manager.cli.options import FormatOption
from vpn_manager.units import format_size

if TYPE_CHECKING:
    from vpn_manager.cli.output import Output
    from vpn_manager.models.server import Server, ServerStatus

COLUMNS = [
    ("name", "NAME"),
    ("protocol", "PROTOCOL"),
    ("engine", "ENGINE"),
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
        "engine": server.engine,
        "address": f"{server.host}:{server.port}",
        "state": _state(server.running, server.desired.value),
        "users": str(server.users),
        "sni": server.sni or server.settings.get("method") or "-",
    }


def _state(running: bool, desired: str) -> str:
    """running or stopped, and what is wanted when that differs (a crash, a start pending)."""
    state = "running" if running else "stopped"
    return state if running == (desired == "running") else f"{state} (wanted {desired})"


def _flat(settings: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested settings as one level of dotted keys (tls.server_name, …): values, never a dict."""
    flat: dict[str, Any] = {}
    for key, value in settings.items():
        if isinstance(value, dict):
            flat.update(_flat(value, f"{prefix}{key}."))
        else:
            flat[prefix + key] = value
    return flat


def show(ctx: typer.Context, server: Server, fmt: FormatOption) -> None:
    out = app_context(ctx).output(fmt)
    if out.structured:
        out.data(_row(server))
        return
    flat = {key: value for key, value in _row(server).items() if key != "settings"}
    flat.update(_flat({k: v for k, v in server.settings.items() if k != "api_port"}))
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


STATUS_COLUMNS = [
    ("name", "NAME"),
    ("engine", "ENGINE"),
    ("state", "STATE"),
    ("health", "HEALTH"),
    ("pid", "PID"),
    ("memory", "MEMORY"),
    ("runtime", "RUNTIME"),
]


def status_cells(status: ServerStatus) -> dict[str, Any]:
    """One line of `vpn server status` without a name."""
    return {
        "name": status.name,
        "engine": status.engine,
        "state": _state(status.running, status.desired.value),
        "health": status.detail if status.running else "-",
        "pid": status.pid,
        "memory": format_size(status.rss_bytes) if status.rss_bytes else "-",
        "runtime": status.runtime.value,
    }
