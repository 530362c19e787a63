"""`vpn user export|import`: every user to a JSON or CSV file, and back."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from vpn_manager.cli.context import app_context
from vpn_manager.cli.options import FormatOption
from vpn_manager.errors import FileError, InvalidInput
from vpn_manager.fsutil import atomic_write

if TYPE_CHECKING:
    from vpn_manager.services.transfer import ImportPlan

# The transfer service (its file formats are pydantic models, some 7 ms that `vpn user list|add`
# should not pay for) is imported by the two commands that use it, as their first line: this
# module's only lazy imports.


def export(
    ctx: typer.Context,
    file: Annotated[
        Path | None,
        typer.Option(
            "--file", "-o", metavar="FILE", help="Write here (mode 0600) instead of stdout."
        ),
    ] = None,
    file_format: Annotated[
        str | None,
        typer.Option(
            "--format",
            "-f",
            metavar="json|csv",
            help="json or csv (default: from --file's suffix, else json).",
        ),
    ] = None,
    secrets: Annotated[
        bool, typer.Option("--secrets", help="Include subscription tokens, so links keep working.")
    ] = False,
) -> None:
    """Export every user to JSON or CSV."""
    from vpn_manager.services.transfer import dump, export_records

    context = app_context(ctx)
    fmt = file_format or ("csv" if file is not None and file.suffix.lower() == ".csv" else "json")
    if fmt not in ("json", "csv"):
        raise InvalidInput(f"Cannot export as {fmt!r}.", hint="Use --format json or --format csv.")
    if file is not None and not file.parent.is_dir():  # a typo must not make directories
        raise FileError(
            f"Cannot write {file}: the directory {file.parent} does not exist.",
            hint="Create it first, or give a path in an existing directory.",
        )
    users = context.users(lambda s: s.list())
    tokens = context.users(lambda s: s.tokens_of([u.name for u in users])) if secrets else None
    text = dump(export_records(users, tokens), "csv" if fmt == "csv" else "json")
    if file is None:
        sys.stdout.write(text)
        return
    atomic_write(file, text)
    context.output().note(f"Exported {len(users)} users to {file}.")


def import_users(
    ctx: typer.Context,
    file: Annotated[
        Path,
        typer.Argument(metavar="FILE", help="A JSON or CSV file as written by `vpn user export`."),
    ],
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show what would change; write nothing.")
    ] = False,
    on_existing: Annotated[
        str,
        typer.Option(
            "--on-existing",
            metavar="skip|update|fail",
            help="For names that exist: skip, update or fail.",
        ),
    ] = "skip",
    output_format: FormatOption = None,
) -> None:
    """Import users from a file: all are checked first, then written in one transaction."""
    from vpn_manager.services.transfer import OnExisting, import_users, parse_file

    context = app_context(ctx)
    out = context.output(output_format)
    try:
        policy = OnExisting(on_existing)
    except ValueError:
        raise InvalidInput(
            f"--on-existing {on_existing!r} is not one of skip, update, fail."
        ) from None
    records = parse_file(
        file, zone=context.settings.zone, max_bytes=context.settings.import_max_mb * 1000**2
    )
    plan: ImportPlan = context.users(
        lambda s: import_users(s, records, dry_run=dry_run, on_existing=policy)
    )
    lead = "Would create" if dry_run else "Created"
    message = (
        f"{lead} {len(plan.create)}, "
        f"{'would update' if dry_run else 'updated'} {len(plan.update)}, "
        f"skipped {len(plan.skip)} (already exist)."
    )
    out.result(plan.model_dump(), message)
