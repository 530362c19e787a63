"""Parsing and formatting of the units users type: sizes, speeds, dates and reset periods.

Sizes follow SI for KB/MB/GB/TB (powers of 1000) and IEC for KiB/MiB/GiB/TiB (powers of 1024), so
"50GB" is exactly 50,000,000,000 bytes. Speeds are bits per second ("10Mbit", "1.5Gbps").
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from decimal import Decimal, InvalidOperation

from vpn_manager.errors import InvalidInput, quoted

_SIZE_UNITS = {
    "": 1,
    "B": 1,
    "K": 1000,
    "KB": 1000,
    "M": 1000**2,
    "MB": 1000**2,
    "G": 1000**3,
    "GB": 1000**3,
    "T": 1000**4,
    "TB": 1000**4,
    "KIB": 1024,
    "MIB": 1024**2,
    "GIB": 1024**3,
    "TIB": 1024**4,
}
_RATE_UNITS = {
    "": 1,
    "BIT": 1,
    "BPS": 1,
    "K": 1000,
    "KBIT": 1000,
    "KBPS": 1000,
    "M": 1000**2,
    "MBIT": 1000**2,
    "MBPS": 1000**2,
    "G": 1000**3,
    "GBIT": 1000**3,
    "GBPS": 1000**3,
}
_NUMBER_UNIT = re.compile(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([A-Za-z]*)\s*", re.ASCII)
_UNLIMITED = {"", "0", "none", "unlimited", "off"}
_RELATIVE = re.compile(r"\s*([0-9]+)\s*([dwh])\s*", re.IGNORECASE | re.ASCII)
_EVERY_N_DAYS = re.compile(r"[1-9][0-9]{0,3}d", re.ASCII)
_DIGITS = re.compile(r"[0-9]+", re.ASCII)
_HOURS = {"d": 24, "w": 24 * 7, "h": 1}  # hours in each unit of a span ("30d", "2w", "12h")
RESET_PERIODS = ("never", "daily", "weekly", "monthly")

# The bounds of what users type (README: "Users"), far inside what datetime and the database's
# 64-bit columns hold, so that no arithmetic on a stored value can overflow.
LARGEST = 2**63 - 1  # bytes, bits per second: the BigInteger columns
LAST_DAY = date(2099, 12, 31)  # the last day an expiry may be
EXPIRY_CAP = datetime(2100, 1, 2, tzinfo=UTC)  # past the end of LAST_DAY in every time zone
MOST_DAYS = 36_500  # --first-use-days: about a hundred years
MOST_PERIOD_DAYS = 9999  # "every N days" reset periods (Nd)
_MOST_DIGITS = 19  # no count we accept has more (int() refuses over 4,300 of them)


def _scaled(text: str, units: dict[str, int], what: str, example: str) -> int:
    match = _NUMBER_UNIT.fullmatch(text)
    unit = match.group(2).upper() if match else None
    if match is None or unit not in units:
        raise InvalidInput(f"{quoted(text)} is not a {what}.", hint=f"Write it like {example}.")
    try:
        value = Decimal(match.group(1)) * units[unit]
    except InvalidOperation as exc:  # pragma: no cover - the regex admits only digits
        raise InvalidInput(
            f"{quoted(text)} is not a {what}.", hint=f"Write it like {example}."
        ) from exc
    if value != value.to_integral_value():
        raise InvalidInput(
            f"{quoted(text)} is not a whole number of "
            f"{'bits' if units is _RATE_UNITS else 'bytes'}.",
            hint=f"Write it like {example}.",
        )
    return int(value)


def parse_size(text: str, what: str = "quota") -> int | None:
    """Parse a data size; None means unlimited ("0", "none", "unlimited")."""
    if text.strip().lower() in _UNLIMITED:
        return None
    size = _scaled(text, _SIZE_UNITS, "data size", "50GB, 500MiB or 1.5TB")
    if size > LARGEST:
        raise InvalidInput(
            f"{quoted(text)} is more than the largest {what}, {format_size(LARGEST)}.",
            hint="Give a smaller size, or 0 for unlimited.",
        )
    return size or None


def parse_rate(text: str, what: str = "speed limit") -> int | None:
    """Parse a speed in bits per second; None means unlimited."""
    if text.strip().lower() in _UNLIMITED:
        return None
    rate = _scaled(text, _RATE_UNITS, "speed", "10Mbit or 1Gbit")
    if rate > LARGEST:
        raise InvalidInput(
            f"{quoted(text)} is more than the largest {what}, {format_rate(LARGEST)}.",
            hint="Give a smaller speed, or 0 for unlimited.",
        )
    return rate or None


def _scaled_text(value: int, units: tuple[tuple[str, int], ...], base: str) -> str:
    """Exact below the smallest unit; otherwise the largest unit in which the value, rounded to
    two decimals, is at least 1 (so 999,999 bytes is 1MB, not 1000KB)."""
    if value < units[-1][1]:
        return f"{value}{base}"
    for unit, factor in units:
        shown = f"{value / factor:.2f}"
        if float(shown) >= 1:
            return shown.rstrip("0").rstrip(".") + unit
    return f"{value}{base}"


def format_size(size: int | None) -> str:
    if size is None:
        return "unlimited"
    return _scaled_text(
        size, (("TB", 1000**4), ("GB", 1000**3), ("MB", 1000**2), ("KB", 1000)), "B"
    )


def format_rate(rate: int | None) -> str:
    if rate is None:
        return "unlimited"
    return _scaled_text(rate, (("Gbit", 1000**3), ("Mbit", 1000**2), ("Kbit", 1000)), "bit")


def parse_reset_period(text: str) -> str:
    """Validate a quota reset period: never, daily, weekly, monthly, or every N days ("30d")."""
    value = text.strip().lower()
    if value in RESET_PERIODS or _EVERY_N_DAYS.fullmatch(value):
        return value
    raise InvalidInput(
        f"{quoted(text)} is not a reset period.",
        hint="Use never, daily, weekly, monthly, or a number of days from 1d to 9999d such as 30d.",
    )


def parse_expiry(
    text: str, *, now: datetime, zone: tzinfo = UTC, past: bool = False, what: str = "the user"
) -> datetime | None:
    """Parse an expiry: a date (the account works through that whole day in `zone`), an ISO
    date-time, a span from now ("30d", "2w", "12h"), or "never". Returns an aware UTC datetime,
    at the latest the end of LAST_DAY in `zone`; one before `now` only if `past` (an import of
    users who have expired). `what` names what expires, in the refusal of a past moment."""
    value = text.strip()
    if value.lower() in {"never", "none", ""}:
        return None
    latest = datetime.combine(LAST_DAY + timedelta(days=1), time(), zone)
    too_late = InvalidInput(
        f"An expiry must be on {LAST_DAY.isoformat()} or before; {quoted(text)} is later.",
        hint="Give an earlier date or a shorter span, or never.",
    )
    relative = _RELATIVE.fullmatch(value)
    if relative:
        digits, unit = relative.group(1).lstrip("0") or "0", relative.group(2).lower()
        amount = int(digits) if len(digits) <= _MOST_DIGITS else None
        if amount == 0:
            raise InvalidInput(
                f"{quoted(text)} would expire at once.", hint="Give at least 1d, or never."
            )
        hours = _HOURS[unit]
        if amount is None or amount * hours > (latest - now) // timedelta(hours=1):
            raise too_late
        return (now + timedelta(hours=amount * hours)).astimezone(UTC)
    try:
        day = date.fromisoformat(value)
    except ValueError:
        pass
    else:
        if day > LAST_DAY:
            raise too_late
        moment = datetime.combine(day + timedelta(days=1), time(), zone)
        return _not_past(moment, text, now, past, what).astimezone(UTC)
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidInput(
            f"{quoted(text)} is not a date.",
            hint="Write a date as 2027-01-31, a span as 30d, 2w or 12h, or never.",
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=zone)
    if moment.date() > LAST_DAY or moment > latest:
        raise too_late
    return _not_past(moment, text, now, past, what).astimezone(UTC)


def parse_span(text: str) -> timedelta:
    """A length of time written like a span of `parse_expiry` ("30d", "2w", "12h"), such as
    `vpn user update --extend`: at least an hour, at most MOST_DAYS days."""
    relative = _RELATIVE.fullmatch(text)
    if relative is None:
        raise InvalidInput(
            f"{quoted(text)} is not a length of time.", hint="Write it like 30d, 2w or 12h."
        )
    digits, unit = relative.group(1).lstrip("0") or "0", relative.group(2).lower()
    amount = int(digits) if len(digits) <= _MOST_DIGITS else None
    if amount == 0:
        raise InvalidInput(
            f"{quoted(text)} is no time at all.", hint="Give at least 1h, such as 30d."
        )
    if amount is None or amount * _HOURS[unit] > MOST_DAYS * 24:
        raise InvalidInput(
            f"{quoted(text)} is longer than {MOST_DAYS} days.",
            hint="Give a shorter span, such as 30d.",
        )
    return timedelta(hours=amount * _HOURS[unit])


def _not_past(moment: datetime, text: str, now: datetime, past: bool, what: str) -> datetime:
    if not past and moment <= now:
        raise InvalidInput(
            f"{quoted(text)} is in the past: {what} would expire at once.",
            hint="Give a later date, a span such as 30d, or never.",
        )
    return moment


def parse_count(text: str, what: str, most: int = 2**31 - 1) -> int | None:
    """Parse a non-negative limit such as a device count, at most `most` (by default what the
    Integer columns hold); 0 or none means unlimited."""
    if text.strip().lower() in _UNLIMITED:
        return None
    if not _DIGITS.fullmatch(text.strip()):
        raise InvalidInput(
            f"{quoted(text)} is not a valid {what}.", hint="Give a whole number, or 0 for none."
        )
    digits = text.strip().lstrip("0") or "0"
    if len(digits) > _MOST_DIGITS or int(digits) > most:
        raise InvalidInput(
            f"{quoted(text)} is more than the largest {what}, {most}.",
            hint="Give a smaller number, or 0 for none.",
        )
    return int(digits) or None


def parse_moment(text: str | None, zone: tzinfo, now: datetime) -> datetime | None:
    """A moment to look from (`vpn stats --since`, `vpn audit --since`): a date (midnight in
    `zone`), an ISO date-time (in `zone` unless it has an offset), or a span back from now
    ("24h", "7d", at most MOST_DAYS days). Returns an aware UTC datetime."""
    if text is None:
        return None
    value = text.strip()
    if value[:-1].isascii() and value[:-1].isdigit() and value[-1:] in ("h", "d"):
        digits = value[:-1].lstrip("0") or "0"
        hours = (
            int(digits) * (24 if value[-1] == "d" else 1) if len(digits) <= _MOST_DIGITS else None
        )
        if hours is None or hours > MOST_DAYS * 24:
            raise InvalidInput(
                f"{quoted(text)} reaches back more than {MOST_DAYS} days.",
                hint="Give a shorter span, or a date.",
            )
        return now - timedelta(hours=hours)
    try:
        if len(value) == 10:
            return datetime.combine(date.fromisoformat(value), time(), zone).astimezone(UTC)
        moment = datetime.fromisoformat(value)
        return (moment if moment.tzinfo else moment.replace(tzinfo=zone)).astimezone(UTC)
    except (ValueError, OverflowError):  # OverflowError: year 1 moved across midnight UTC
        raise InvalidInput(
            f"{quoted(text)} is not a date.", hint="Write 2027-01-31, 2027-01-31T12:00, 24h or 7d."
        ) from None
