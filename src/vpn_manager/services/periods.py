"""Quota reset periods: when does the current period start? Pure functions of a moment, a period
and a time zone (calendar periods follow the zone's midnight, DST included)."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta, tzinfo

from vpn_manager.units import MOST_PERIOD_DAYS

# Arithmetic on stored values stops here rather than overflowing datetime (a database written
# before the input bounds, or by hand, may hold any count); still far past every bound we accept.
FAR_FUTURE = datetime(9000, 1, 1, tzinfo=UTC)


def days_after(start: datetime, days: int) -> datetime:
    """`start` plus `days` days, at the latest FAR_FUTURE (or `start`, if that is later)."""
    if start >= FAR_FUTURE or days <= 0:
        return start
    if days >= (FAR_FUTURE - start).days:
        return FAR_FUTURE
    return start + timedelta(days=days)


def period_start(period: str, now: datetime, zone: tzinfo, anchor: datetime) -> datetime | None:
    """The start of the period that contains `now` (UTC), or None for "never".

    daily: midnight in `zone`; weekly: Monday midnight; monthly: the 1st at midnight; "Nd": every
    N days counted from `anchor` (when the user was created, or its limit last reset)."""
    if period == "never":
        return None
    local = now.astimezone(zone)
    if period == "daily":
        start = datetime.combine(local.date(), time(), zone)
    elif period == "weekly":
        start = datetime.combine(local.date() - timedelta(days=local.weekday()), time(), zone)
    elif period == "monthly":
        start = datetime.combine(local.date().replace(day=1), time(), zone)
    elif period.endswith("d") and period[:-1].isdigit():
        digits = period[:-1].lstrip("0")
        days = int(digits or 0) if len(digits) <= 4 else MOST_PERIOD_DAYS  # any stored text
        days = min(max(days, 1), MOST_PERIOD_DAYS)
        cycles = max(0, (now - anchor) // timedelta(days=days))
        return anchor + cycles * timedelta(days=days)
    else:
        raise ValueError(f"unknown reset period {period!r}")
    return start.astimezone(UTC)
