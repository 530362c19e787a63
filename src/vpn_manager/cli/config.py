"""`vpn locate` and `vpn config …`: where things live and what the effective settings are."""

from __future__ import annotations

from typing import Annotated

import typer

from vpn_manager.cli.context import app_context
from vpn_manager.cli.options import FormatOption
from vpn_manager.settings import effective_settings

app = typer.Typer(help="Show the effective settings.", no_args_is_help=True)


def locate(ctx: typer.Context, output_format: FormatOption = None) -> None:
    """Print where config, database, rendered engine configs, logs and keys live."""
    context = app_context(ctx)
    places = context.paths.as_dict()
    places["database"] = context.services().db.display_url  # PostgreSQL too, password masked
    context.output(output_format).record(places)


@app.command("show")
def show(
    ctx: typer.Context,
    output_format: FormatOption = None,
    defaults: Annotated[
        bool, typer.Option("--defaults", help="Show the built-in defaults instead.")
    ] = False,
) -> None:
    """Print the effective settings (flags > environment > file > defaults), secrets masked."""
    context = app_context(ctx)
    data = effective_settings(context.settings, defaults=defaults)
    out = context.output(output_format)
    if out.structured:
        out.data(data)
        return
    out.record(_flatten(data))


def _flatten(data: dict[str, object], prefix: str = "") -> dict[str, object]:
    """Nested settings as dotted keys (docker.images.xray), as they are set in the environment."""
    flat: dict[str, object] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat
