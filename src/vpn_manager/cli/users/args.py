"""The arguments and options that several `vpn user …` commands share, and the limit flags turned
into model fields."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

import typer

from vpn_manager.cli.context import AppContext
from vpn_manager.cli.options import complete_servers, complete_users
from vpn_manager.errors import InvalidInput
from vpn_manager.units import (
    MOST_DAYS,
    parse_count,
    parse_expiry,
    parse_reset_period,
    parse_size,
    parse_span,
)

Names = Annotated[
    list[str],
    typer.Argument(help="One or more user names.", metavar="NAME", autocompletion=complete_users),
]
Name = Annotated[
    str, typer.Argument(help="The user's name.", metavar="NAME", autocompletion=complete_users)
]
Email = Annotated[str | None, typer.Option("--email", metavar="EMAIL", help="Contact e-mail.")]
Note = Annotated[str | None, typer.Option("--note", metavar="TEXT", help="Free text for yourself.")]
Quota = Annotated[
    str | None,
    typer.Option(
        "--quota",
        metavar="SIZE",
        help="Data quota per reset period: 50GB, 500MiB, 1.5TB; 0 = unlimited.",
    ),
]
Expires = Annotated[
    str | None,
    typer.Option(
        "--expires",
        metavar="WHEN",
        help="Last day (2027-01-31), a span from now (30d, 2w, 12h), or never; not in the past, "
        "and 2099-12-31 at the latest.",
    ),
]
Reset = Annotated[
    str | None,
    typer.Option(
        "--reset",
        metavar="PERIOD",
        help="When the used data resets: never, daily, weekly, monthly or Nd (N: 1 to 9999).",
    ),
]
Devices = Annotated[
    str | None,
    typer.Option("--devices", metavar="N", help="Devices (client IPs) at once; 0 = unlimited."),
]
FirstUseDays = Annotated[
    str | None,
    typer.Option(
        "--first-use-days",
        metavar="N",
        help="Expire N days after the first connection (0: off; at most 36500); --expires wins "
        "if both.",
    ),
]
Extend = Annotated[
    str | None,
    typer.Option(
        "--extend",
        metavar="SPAN",
        help="Move the expiry on by this span (30d, 2w, 12h), from the later of now and the "
        "current expiry.",
    ),
]
PlanName = Annotated[
    str | None,
    typer.Option(
        "--plan",
        metavar="PLAN",
        help="Give them this plan's quota, reset period, days and device limit (the options "
        "given here win); see `vpn plan list`.",
    ),
]
Force = Annotated[
    bool,
    typer.Option("--force", help="Accept an expiry in the past: they expire at once."),
]
Speed = Annotated[
    str | None,
    typer.Option("--speed", metavar="RATE", hidden=True, help="Refused: not enforced yet."),
]
ServerArg = Annotated[
    str,
    typer.Argument(metavar="SERVER", help="The server's name.", autocompletion=complete_servers),
]


def limits(
    context: AppContext,
    quota: str | None,
    expires: str | None,
    reset: str | None,
    devices: str | None,
    speed: str | None,
    first_use_days: str | None = None,
    *,
    extend: str | None = None,
    plan: str | None = None,
    past: bool = False,
) -> dict[str, Any]:
    """Turn the limit flags that were given into model fields (None = flag not given); an
    expiry in the past only if `past` (the service then refuses it without --force)."""
    fields: dict[str, Any] = {}
    if expires is not None and extend is not None:
        raise InvalidInput("Give either --expires or --extend, not both.")
    if quota is not None:
        fields["quota_bytes"] = parse_size(quota)
    if expires is not None:
        fields["expires_at"] = parse_expiry(
            expires, now=datetime.now(UTC), zone=context.settings.zone, past=past
        )
    if extend is not None:
        parse_span(extend)  # its own sentence if it is no span; the service counts it
        fields["extend"] = extend
    if plan is not None:
        fields["plan"] = plan or None
    if reset is not None:
        fields["reset_period"] = parse_reset_period(reset)
    if devices is not None:
        fields["device_limit"] = parse_count(devices, "device limit")
    if first_use_days is not None:
        fields["expire_after_days"] = parse_count(first_use_days, "number of days", MOST_DAYS)
    if speed is not None:
        raise InvalidInput(
            "Speed limits are not enforced yet, so --speed is refused rather than stored.",
            hint="Leave --speed out; the user's traffic is not limited in speed.",
        )
    return fields
