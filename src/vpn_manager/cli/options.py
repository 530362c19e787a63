"""Options shared by several commands, and the shell completion of the names they take."""

from __future__ import annotations

import contextlib
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Literal

import typer

from vpn_manager.cli.context import AppContext


class Format(StrEnum):
    table = "table"
    json = "json"
    yaml = "yaml"
    plain = "plain"


FormatOption = Annotated[
    Format | None,
    typer.Option(
        "--format",
        "-f",
        help="Output format: table, json, yaml or plain (default: the output.format setting).",
        case_sensitive=False,
    ),
]


def complete_servers(ctx: typer.Context, incomplete: str) -> list[str]:
    """Server (and proxy) names for shell completion."""
    return _names(ctx, "servers", incomplete)


def complete_users(ctx: typer.Context, incomplete: str) -> list[str]:
    """User names for shell completion."""
    return _names(ctx, "users", incomplete)


def complete_users_then_server(ctx: typer.Context, incomplete: str) -> list[str]:
    """`vpn user grant|revoke NAME… [SERVER]`: each word may be a user, or the last the server."""
    return sorted({*complete_users(ctx, incomplete), *complete_servers(ctx, incomplete)})


def _names(ctx: typer.Context, table: Literal["servers", "users"], incomplete: str) -> list[str]:
    """The names in a table of this home's SQLite database that start with `incomplete`, read
    with the stdlib in read-only mode: a keypress must not create the home or the database,
    migrate anything or wait for PostgreSQL, and an error must never reach the user's prompt
    (then nothing completes)."""
    import sqlite3  # only when completing

    root = ctx.find_root()
    context = root.obj
    if not isinstance(context, AppContext):  # completion parses without running the callback
        context = AppContext(
            home=root.params.get("home"), config_file=root.params.get("config_file")
        )
    try:
        url = context.settings.database.url
        if url is None:
            database = context.paths.database_file
        elif url.startswith("sqlite"):
            database = Path(url.split(":///", 1)[1]).absolute()
        else:
            return []
        if not database.is_file():
            return []
        with contextlib.closing(
            sqlite3.connect(f"{database.as_uri()}?mode=ro", uri=True, timeout=0.5)
        ) as conn:
            rows = conn.execute(f"SELECT name FROM {table} ORDER BY name").fetchall()
    except Exception:
        return []
    return [name for (name,) in rows if name.startswith(incomplete)]
