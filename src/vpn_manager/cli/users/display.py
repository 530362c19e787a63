"""How `vpn user …` shows users: the list's columns, one user's fields for people, the rows
scripts get, and a progress bar for long batches."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta, tzinfo
from typing import TYPE_CHECKING, Any

from vpn_manager.models import User
from vpn_manager.units import format_rate, format_size

if TYPE_CHECKING:
    from vpn_manager.cli.output import Output

# Heavy imports wait for the functions that use them: pydantic's TypeAdapter (`rows`, for scripts)
# and rich (`progress_bar`, only when a person watches a long batch).

LIST_COLUMNS = [
    ("name", "NAME"),
    ("status", "STATUS"),
    ("usage", "USED/QUOTA"),
    ("expires_at", "EXPIRES"),
    ("servers", "SERVERS"),
    ("email", "EMAIL"),
]


def row(user: User) -> dict[str, Any]:
    """A user as scripts see it (json/yaml); the subscription token is not part of a user."""
    return user.model_dump(mode="json")


def rows(users: list[User]) -> list[dict[str, Any]]:
    from pydantic import TypeAdapter

    adapter = TypeAdapter(list[User])
    return adapter.dump_python(users, mode="json")  # type: ignore[no-any-return]


def _last_day(moment: datetime, zone: tzinfo) -> str:
    """The last day on which a user still works: an expiry at midnight ends the day before."""
    return (moment.astimezone(zone) - timedelta(microseconds=1)).strftime("%Y-%m-%d")


def _list_cells(users: list[User], zone: tzinfo) -> list[dict[str, Any]]:
    """The table columns for many users, computed straight from the models (10,000 rows fast).
    USED/QUOTA is the current period's usage against the quota of a period (the lifetime
    totals are in `vpn user show`)."""
    return [
        {
            "name": u.name,
            "status": u.status.value,
            "usage": f"{format_size(u.period_used_bytes)}/"
            + (format_size(u.quota_bytes) if u.quota_bytes else "∞"),
            "expires_at": _last_day(u.expires_at, zone) if u.expires_at else "never",
            "servers": ",".join(u.servers) or "-",
            "email": u.email or "-",
        }
        for u in users
    ]


def show_text(zone: tzinfo) -> Callable[[str, Any], str]:
    """How `show` prints each field for people: sizes with units, times in the configured zone."""

    def text(key: str, value: Any) -> str:
        if key == "expires_at" and value:
            moment = datetime.fromisoformat(value)
            return f"{_local(moment, zone)} (last day {_last_day(moment, zone)})"
        if key in ("created_at", "updated_at", "period_started_at", "first_used_at") and value:
            return _local(datetime.fromisoformat(value), zone)
        return _text(key, value)

    return text


def _local(moment: datetime, zone: tzinfo) -> str:
    return moment.astimezone(zone).strftime("%Y-%m-%d %H:%M %Z")


def _text(key: str, value: Any) -> str:
    if value is None:
        return "-" if key not in ("quota_bytes", "speed_limit_bps", "device_limit") else "unlimited"
    if key in (
        "quota_bytes",
        "upload_bytes",
        "download_bytes",
        "used_bytes",
        "period_used_bytes",
        "period_upload_bytes",
        "period_download_bytes",
    ):
        return format_size(value)
    if key == "speed_limit_bps":
        return format_rate(value)
    if isinstance(value, list):
        return ", ".join(value) or "-"
    return str(value)


def emit_users(
    out: Output, users: list[User], zone: tzinfo, empty: str = "Nothing to show."
) -> None:
    if out.structured:
        out.data(rows(users))
    else:
        out.records(_list_cells(users, zone), LIST_COLUMNS, _plain, empty=empty)


def _plain(_key: str, value: Any) -> str:
    return str(value)


@contextmanager
def progress_bar(total: int, label: str) -> Iterator[Callable[[int], None] | None]:
    """A progress bar on stderr for batches, when a person is watching."""
    if total < 20 or not sys.stderr.isatty():
        yield None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    with Progress(
        TextColumn(label),
        BarColumn(),
        MofNCompleteColumn(),
        console=Console(stderr=True),
        transient=True,
    ) as bar:
        task = bar.add_task(label, total=total)
        yield lambda done: bar.advance(task, done)
