"""Asking before a change a person cannot take back (every user's link changes, users deleted):
on a terminal the question (y/N); elsewhere the command refuses unless `--yes` was given, so
a script never changes more than it meant to."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from vpn_manager.errors import Cancelled

YesOption = Annotated[
    bool, typer.Option("--yes", "-y", help="Do not ask for confirmation (for scripts).")
]


def confirm(question: str, *, yes: bool, refusal: str, declined: str) -> None:
    """Return if the change may go ahead: `yes` given, or "y" answered to `question` on a
    terminal. Otherwise Cancelled (exit 10): `refusal` off a terminal, `declined` when the
    answer was no. Nothing has been changed either way."""
    if yes:
        return
    if not sys.stdin.isatty():
        raise Cancelled(refusal, hint="Add --yes to confirm.")
    if not typer.confirm(question, default=False):
        raise Cancelled(declined)
