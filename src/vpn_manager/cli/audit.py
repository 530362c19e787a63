"""`vpn audit`: who changed what through vpn web's REST API, and which API keys the CLI made or
revoked; newest first (the newest 100,000 entries are kept)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated

import typer

from vpn_manager.cli.apikeys import local_text
from vpn_manager.cli.context import app_context
from vpn_manager.cli.options import FormatOption
from vpn_manager.units import parse_moment

if TYPE_CHECKING:
    from vpn_manager.services.audit import AuditEntry
    from vpn_manager.services.root import Services

COLUMNS = [
    ("at", "TIME"),
    ("actor", "ACTOR"),
    ("action", "ACTION"),
    ("target", "TARGET"),
    ("result", "RESULT"),
]


def audit(
    ctx: typer.Context,
    limit: Annotated[
        int, typer.Option("--limit", metavar="N", help="Show at most N entries (default 100).")
    ] = 100,
    actor: Annotated[
        str | None,
        typer.Option("--actor", metavar="NAME", help="Only this API key's entries, or cli:USER's."),
    ] = None,
    since: Annotated[
        str | None,
        typer.Option("--since", metavar="WHEN", help="From (inclusive): a date, 7d, 24h."),
    ] = None,
    output_format: FormatOption = None,
) -> None:
    """Show who changed what through the REST API, newest first."""
    context = app_context(ctx)
    start = parse_moment(since, context.settings.zone, datetime.now(UTC))

    async def read(services: Services) -> list[AuditEntry]:
        return await services.audit.entries(limit, actor, start)

    entries = context.run(read)
    context.output(output_format).records(
        [
            {
                "at": entry.at.isoformat().replace("+00:00", "Z"),
                "actor": entry.actor,
                "action": entry.action,
                "target": entry.target,
                "result": entry.result,
            }
            for entry in entries
        ],
        COLUMNS,
        local_text(context.settings.zone),
        empty="No audit entries" + (" match." if actor or since else " yet."),
    )
