"""`vpn tui`: the full-screen terminal UI. Textual is imported only here, when it is asked for."""

from __future__ import annotations

import typer

from vpn_manager.cli.context import app_context


def tui(ctx: typer.Context) -> None:
    """Open the full-screen terminal UI: dashboard, users, servers, logs and settings."""
    from vpn_manager.tui.app import VpnApp

    context = app_context(ctx)
    app = VpnApp(context.paths, context.settings)
    app.run()
    if app.return_code:  # Textual has shown the traceback of what crashed
        raise typer.Exit(app.return_code)
