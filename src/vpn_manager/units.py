"""Parsing and formatting of the units users type: sizes, speeds, dates and reset periods.

Sizes follow SI for KB/MB/GB/TB (powers of 1000) and IEC for KiB/MiB/GiB/TiB (powers of 1024), so
"50GB" is exactly 50,000,000,000 bytes. Speeds are bits per second ("10Mbit", "1.5Gbps").
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from decimal import Decimal, InvalidOperation

from vpn_manager.errors import InvalidInput

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
RESET_PERIODS = ("never", "daily", "weekly", "monthly")


def _scaled(text: str, units: dict[str, int], what: str, example: str) -> int:
    match = _NUMBER_UNIT.fullmatch(text)
    unit = match.group(2).upper() if match else None
    if match is None or unit not in units:
        raise InvalidInput(f"{text!r} is not a {what}.", hint=f"Write it like {example}.")
    try:
        value = Decimal(match.group(1)) * units[unit]
    except InvalidOperation as exc:  # pragma: no cover - the regex admits only digits
        raise InvalidInput(f"{text!r} is not a {what}.", hint=f"Write it like {example}.") from exc
    if value != value.to_integral_value():
        raise InvalidInput(
            f"{text!r} is not a whole number of {'bits' if units is _RATE_UNITS else 'bytes'}.",
            hint=f"Write it like {example}.",
        )
    return int(value)


def parse_size(text: str) -> int | None:
    """Parse a data size; None means unlimited ("0", "none", "unlimited")."""
    if text.strip().lower() in _UNLIMITED:
        return None
    size = _scaled(text, _SIZE_UNITS, "data size", "50GB, 500MiB or 1.5TB")
    return size or None


def parse_rate(text: str) -> int | None:
    """Parse a speed in bits per second; None means unlimited."""
    if text.strip().lower() in _UNLIMITED:
        return None
    rate = _scaled(text, _RATE_UNITS, "speed", "10Mbit or 1Gbit")
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
        f"{text!r} is not a reset period.",
        hint="Use never, daily, weekly, monthly, or a number of days such as 30d.",
    )


def parse_expiry(text: str, *, now: datetime, zone: tzinfo = UTC) -> datetime | None:
    """Parse an expiry: a date (the account works through that whole day in `zone`), an ISO
    date-time, a span from now ("30d", "2w", "12h"), or "never". Returns an aware UTC datetime."""
    value = text.strip()
    if value.lower() in {"never", "none", ""}:
        return None
    relative = _RELATIVE.fullmatch(value)
    if relative:
        amount, unit = int(relative.group(1)), relative.group(2).lower()
        if amount == 0:
            raise InvalidInput(
                f"{text!r} would expire at once.", hint="Give at least 1d, or never."
            )
        span = {
            "d": timedelta(days=amount),
            "w": timedelta(weeks=amount),
            "h": timedelta(hours=amount),
        }
        return (now + span[unit]).astimezone(UTC)
    try:
        day = date.fromisoformat(value)
    except ValueError:
        pass
    else:
        return datetime.combine(day + timedelta(days=1), time(), zone).astimezone(UTC)
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidInput(
            f"{text!r} is not a date.",
            hint="Write a date as 2027-01-31, a span as 30d, 2w or 12h, or never.",
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=zone)
    return moment.astimezone(UTC)


def parse_count(text: str, what: str) -> int | None:
    """Parse a non-negative limit such as a device count; 0 or none means unlimited."""
    if text.strip().lower() in _UNLIMITED:
        return None
    if not _DIGITS.fullmatch(text.strip()):
        raise InvalidInput(
            f"{text!r} is not a valid {what}.", hint="Give a whole number, or 0 for none."
        )
    return int(text) or None
