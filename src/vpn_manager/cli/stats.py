"""`vpn stats`: the hourly usage history, for charts and spreadsheets."""

from __future__ import annotations

import csv
import json
import sys
from datetime import UTC, datetime, time, timedelta, tzinfo
from typing import TYPE_CHECKING, Annotated

import typer

from vpn_manager.cli.context import app_context
from vpn_manager.errors import InvalidInput

if TYPE_CHECKING:
    from vpn_manager.services.root import Services


def _moment(text: str | None, zone: tzinfo, now: datetime) -> datetime | None:
    """A date (midnight in the configured zone), an ISO date-time, or a span back from now
    ("24h", "7d")."""
    if text is None:
        return None
    value = text.strip()
    if value[:-1].isdigit() and value[-1:] in ("h", "d"):
        span = (
            timedelta(hours=int(value[:-1]))
            if value[-1] == "h"
            else timedelta(days=int(value[:-1]))
        )
        return now - span
    try:
        if len(value) == 10:
            return datetime.combine(datetime.fromisoformat(value).date(), time(), zone).astimezone(
                UTC
            )
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidInput(
            f"{text!r} is not a date.", hint="Write 2027-01-31, 2027-01-31T12:00, 24h or 7d."
        ) from None
    return (moment if moment.tzinfo else moment.replace(tzinfo=zone)).astimezone(UTC)


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
    start, end = _moment(since, zone, now), _moment(until, zone, now)

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
        empty="No traffic recorded in that time.",
    )
