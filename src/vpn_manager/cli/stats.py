"""`vpn stats`: the hourly usage history, for charts and spreadsheets."""

from __future__ import annotations

import csv
import json
import sys
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated

import typer

from vpn_manager.cli.context import app_context
from vpn_manager.errors import InvalidInput
from vpn_manager.units import format_size, parse_moment

if TYPE_CHECKING:
    from vpn_manager.services.root import Services


def stats(
    ctx: typer.Context,
    since: Annotated[
        str | None,
        typer.Option("--since", metavar="WHEN", help="From (inclusive): a date, 7d, 24h."),
    ] = None,
    until: Annotated[
        str | None, typer.Option("--until", metavar="WHEN", help="To (exclusive): a date or time.")
    ] = None,
    output_format: Annotated[
        str | None,
        typer.Option("--format", "-f", metavar="table|json|csv", help="Output format."),
    ] = None,
) -> None:
    """Export hourly traffic per user and server (kept for 90 days)."""
    context = app_context(ctx)
    fmt = output_format or context.overrides.get("output.format") or "table"
    if fmt not in ("table", "json", "csv", "plain", "yaml"):
        raise InvalidInput(f"Cannot show stats as {fmt!r}.", hint="Use table, json or csv.")
    zone = context.settings.zone
    now = datetime.now(UTC)
    start, end = parse_moment(since, zone, now), parse_moment(until, zone, now)

    async def read(services: Services) -> list[tuple[datetime, str, str, int, int]]:
        return await services.history.hours(start, end)

    rows = context.run(read)
    records = [
        {
            "hour": hour.isoformat().replace("+00:00", "Z"),
            "user": user,
            "server": server,
            "upload_bytes": up,
            "download_bytes": down,
        }
        for hour, user, server, up, down in rows
    ]
    if fmt == "csv":
        writer = csv.DictWriter(
            sys.stdout,
            fieldnames=["hour", "user", "server", "upload_bytes", "download_bytes"],
            lineterminator="\n",
        )
        writer.writeheader()
        writer.writerows(records)
        return
    if fmt == "json":
        sys.stdout.write(json.dumps(records, indent=2) + "\n")
        return
    context.output(fmt).records(
        records,
        [
            ("hour", "HOUR"),
            ("user", "USER"),
            ("server", "SERVER"),
            ("upload_bytes", "UP"),
            ("download_bytes", "DOWN"),
        ],
        text=_sizes if fmt == "table" else None,
        empty="No traffic recorded in that time.",
    )


def _sizes(key: str, value: object) -> str:
    """Byte counts in units for people (3.2MB); plain keeps the bytes for scripts."""
    if key.endswith("_bytes") and isinstance(value, int):
        return format_size(value)
    return str(value)
