"""`vpn locate` and `vpn config …`: where things live and what the effective settings are."""

from __future__ import annotations

from typing import Annotated

import typer

from vpn_manager.cli.context import app_context
from vpn_manager.cli.options import FormatOption

app = typer.Typer(help="Show the effective settings.", no_args_is_help=True)


def locate(ctx: typer.Context, output_format: FormatOption = None) -> None:
    """Print where config, database, rendered engine configs, logs and keys live."""
    context = app_context(ctx)
    context.output(output_format).record(context.paths.as_dict())


@app.command("show")
def show(
    ctx: typer.Context,
    output_format: FormatOption = None,
    defaults: Annotated[
        bool, typer.Option("--defaults", help="Show the built-in defaults instead.")
    ] = False,
) -> None:
    """Print the effective settings (flags > environment > file > defaults), secrets masked."""
    from vpn_manager.settings import effective_settings

    context = app_context(ctx)
    data = effective_settings(context.settings, defaults=defaults)
    out = context.output(output_format)
    if out.structured:
        out.data(data)
        return
    flat: dict[str, object] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            flat.update({f"{key}.{sub}": v for sub, v in value.items()})
        else:
            flat[key] = value
    out.record(flat)
