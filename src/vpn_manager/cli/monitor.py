"""`vpn monitor traffic`: a live table of per-user rates and totals."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Annotated, Any

import typer

from vpn_manager.cli.context import app_context
from vpn_manager.units import format_rate, format_size

if TYPE_CHECKING:
    from vpn_manager.models import User

# Heavy imports wait for the command that uses them: rich, for the live table.

app = typer.Typer(help="Watch the servers live.", no_args_is_help=True)


@app.command("traffic")
def traffic(
    ctx: typer.Context,
    interval: Annotated[
        float, typer.Option("--interval", metavar="SECONDS", help="Seconds between refreshes.")
    ] = 2.0,
    count: Annotated[
        int, typer.Option("--count", metavar="N", help="Stop after N refreshes (0: until Ctrl-C).")
    ] = 0,
) -> None:
    """Per-user upload/download rates and totals, refreshed until Ctrl-C. Each refresh reads the
    engines (the same counting `vpn serve` does, so nothing is counted twice)."""
    from rich.console import Console
    from rich.live import Live
    from rich.table import Table

    context = app_context(ctx)
    console = Console()

    def table(rows: list[dict[str, Any]], took: float) -> Table:
        grid = Table(title=f"traffic — refreshed every {interval:g} s (poll {took:.0f} ms)")
        for header in ("USER", "STATUS", "↑ NOW", "↓ NOW", "↑ TOTAL", "↓ TOTAL", "QUOTA"):
            grid.add_column(header, justify="left" if header in ("USER", "STATUS") else "right")
        for row in rows:
            grid.add_row(*row.values())
        return grid

    async def main() -> None:
        services = context.services()
        traffic = services.traffic()
        before: dict[str, tuple[int, int, float]] = {}
        shown = 0
        try:
            with Live(console=console, auto_refresh=False) as live:
                while count == 0 or shown < count:
                    report = await traffic.poll()
                    users = await services.users.list()  # after the poll: SQLAlchemy's read
                    now = time.monotonic()
                    ordered = sorted(users, key=lambda u: -(u.upload_bytes + u.download_bytes))
                    rows = [_row(user, before, now) for user in ordered]
                    live.update(table(rows, report.took_ms), refresh=True)
                    shown += 1
                    if count == 0 or shown < count:
                        await asyncio.sleep(interval)
        finally:
            await services.close()

    asyncio.run(main())  # until Ctrl-C, which exits 130 (cli/app.py)


def _row(user: User, before: dict[str, tuple[int, int, float]], now: float) -> dict[str, str]:
    """One user's line; rates from the totals seen at the previous refresh."""
    up0, down0, then = before.get(user.name, (user.upload_bytes, user.download_bytes, now))
    before[user.name] = (user.upload_bytes, user.download_bytes, now)
    span = now - then
    used = user.period_upload_bytes + user.period_download_bytes
    return {
        "user": user.name,
        "status": user.status.value,
        "up_now": format_rate(int((user.upload_bytes - up0) * 8 / span)) if span > 0 else "-",
        "down_now": format_rate(int((user.download_bytes - down0) * 8 / span)) if span > 0 else "-",
        "up": format_size(user.upload_bytes),
        "down": format_size(user.download_bytes),
        "quota": f"{used * 100 // user.quota_bytes}%" if user.quota_bytes else "-",
    }
