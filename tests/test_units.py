"""Parsing and formatting of what people type: sizes, speeds, reset periods, expiries, counts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from vpn_manager.errors import InvalidInput
from vpn_manager.units import (
    EXPIRY_CAP,
    LARGEST,
    MOST_DAYS,
    format_rate,
    format_size,
    parse_count,
    parse_expiry,
    parse_rate,
    parse_reset_period,
    parse_size,
)

NOW = datetime(2026, 3, 10, 15, 30, 45, tzinfo=UTC)
BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")


# -- sizes ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("50GB", 50_000_000_000),
        ("500MiB", 500 * 1024**2),
        ("1.5TB", 1_500_000_000_000),
        ("1KB", 1000),
        ("1KiB", 1024),
        ("2GiB", 2 * 1024**3),
        ("1TiB", 1024**4),
        ("10", 10),
        ("10B", 10),
        ("1.5K", 1500),
        ("3M", 3_000_000),
        ("50gb", 50_000_000_000),
        (" 50 GB ", 50_000_000_000),
        ("0.5MiB", 512 * 1024),
    ],
)
def test_parse_size(text: str, expected: int) -> None:
    assert parse_size(text) == expected


@pytest.mark.parametrize("text", ["0", "0GB", "0.0TB", "none", "NONE", "unlimited", "Unlimited"])
def test_parse_size_unlimited(text: str) -> None:
    assert parse_size(text) is None


@pytest.mark.parametrize(
    "text", ["12XB", "-1GB", "abc", "GB", "1,5GB", "1e3", "1.5", "1.5B", "5 G B", "∞"]
)
def test_parse_size_rejects(text: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_size(text)
    assert caught.value.exit_code == 3
    assert repr(text) in caught.value.message


def test_parse_size_error_says_how_to_write_it() -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_size("12XB")
    assert caught.value.message == "'12XB' is not a data size."
    assert caught.value.hint == "Write it like 50GB, 500MiB or 1.5TB."


@pytest.mark.parametrize("text", ["0.0001KB", "0.4B", "0.0000000001GB"])
def test_parse_size_tiny_nonzero_is_not_unlimited(text: str) -> None:
    """A size that is not zero must never come back as None (= unlimited)."""
    with pytest.raises(InvalidInput):
        parse_size(text)


def test_parse_size_does_not_silently_drop_fractions_of_a_byte() -> None:
    with pytest.raises(InvalidInput):
        parse_size("1.0005KB")  # 1000.5 bytes


# -- speeds ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("10Mbit", 10_000_000),
        ("1Gbit", 1_000_000_000),
        ("1.5Gbps", 1_500_000_000),
        ("100kbit", 100_000),
        ("512Kbps", 512_000),
        ("2M", 2_000_000),
        ("64", 64),
        ("64bit", 64),
        (" 10 mbit ", 10_000_000),
    ],
)
def test_parse_rate(text: str, expected: int) -> None:
    assert parse_rate(text) == expected


@pytest.mark.parametrize("text", ["0", "0Mbit", "none", "unlimited", "off"])
def test_parse_rate_unlimited(text: str) -> None:
    assert parse_rate(text) is None


@pytest.mark.parametrize("text", ["fast", "-5Mbit", "10MB", "10MiB", "10 Mbit/s", "1.5bit"])
def test_parse_rate_rejects(text: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_rate(text)
    assert caught.value.exit_code == 3


def test_parse_rate_tiny_nonzero_is_not_unlimited() -> None:
    with pytest.raises(InvalidInput):
        parse_rate("0.0001Kbit")


# -- formatting -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("size", "expected"),
    [
        (None, "unlimited"),
        (0, "0B"),
        (999, "999B"),
        (1000, "1KB"),
        (1500, "1.5KB"),
        (1_234_567_890, "1.23GB"),
        (50_000_000_000, "50GB"),
        (1_500_000_000_000, "1.5TB"),
        (10**16, "10000TB"),
    ],
)
def test_format_size(size: int | None, expected: str) -> None:
    assert format_size(size) == expected


@pytest.mark.parametrize(
    ("rate", "expected"),
    [
        (None, "unlimited"),
        (0, "0bit"),
        (999, "999bit"),
        (1000, "1Kbit"),
        (10_000_000, "10Mbit"),
        (1_500_000_000, "1.5Gbit"),
        (2_000_000_000_000, "2000Gbit"),
    ],
)
def test_format_rate(rate: int | None, expected: str) -> None:
    assert format_rate(rate) == expected


@pytest.mark.parametrize("text", ["50GB", "1.5TB", "500MB", "12KB", "999B", "2.25GB"])
def test_size_round_trip(text: str) -> None:
    assert format_size(parse_size(text)) == text


@pytest.mark.parametrize("text", ["10Mbit", "1.5Gbit", "64Kbit"])
def test_rate_round_trip(text: str) -> None:
    assert format_rate(parse_rate(text)) == text


@pytest.mark.parametrize(
    ("size", "expected"), [(999_999, "1MB"), (999_999_999, "1GB"), (999_999_999_999, "1TB")]
)
def test_format_size_rounds_up_into_the_next_unit(size: int, expected: str) -> None:
    """999,999 bytes rounds to 1000.00KB; that must read 1MB, not 1000KB."""
    assert format_size(size) == expected


def test_format_rate_rounds_up_into_the_next_unit() -> None:
    assert format_rate(999_999) == "1Mbit"


# -- reset periods --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("never", "never"),
        ("daily", "daily"),
        ("weekly", "weekly"),
        ("monthly", "monthly"),
        ("Monthly", "monthly"),
        (" weekly ", "weekly"),
        ("30d", "30d"),
        ("1d", "1d"),
        ("9999d", "9999d"),
        ("7D", "7d"),
    ],
)
def test_parse_reset_period(text: str, expected: str) -> None:
    assert parse_reset_period(text) == expected


@pytest.mark.parametrize(
    "text", ["fortnightly", "0d", "10000d", "30", "-1d", "", "1w", "d", "030d", "1.5d"]
)
def test_parse_reset_period_rejects(text: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_reset_period(text)
    assert caught.value.exit_code == 3
    assert caught.value.hint is not None


# -- expiry ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "zone", "expected"),
    [
        # A date: the account works through that whole day in the zone.
        ("2027-01-31", UTC, datetime(2027, 2, 1, 0, 0, tzinfo=UTC)),
        ("2027-01-31", BERLIN, datetime(2027, 1, 31, 23, 0, tzinfo=UTC)),  # CET, UTC+1
        ("2026-07-04", BERLIN, datetime(2026, 7, 4, 22, 0, tzinfo=UTC)),  # CEST, UTC+2
        ("2026-07-04", NEW_YORK, datetime(2026, 7, 5, 4, 0, tzinfo=UTC)),  # EDT, UTC-4
        ("2026-12-31", NEW_YORK, datetime(2027, 1, 1, 5, 0, tzinfo=UTC)),  # EST, UTC-5
        ("2028-02-29", UTC, datetime(2028, 3, 1, 0, 0, tzinfo=UTC)),
        # The day before the clocks change in Berlin: the day ends at midnight CEST.
        ("2026-03-28", BERLIN, datetime(2026, 3, 28, 23, 0, tzinfo=UTC)),
        ("2026-03-29", BERLIN, datetime(2026, 3, 29, 22, 0, tzinfo=UTC)),
        # A moment: with a zone as given, without one in the configured zone.
        ("2027-01-31T12:00:00+02:00", UTC, datetime(2027, 1, 31, 10, 0, tzinfo=UTC)),
        ("2027-01-31T12:00:00Z", BERLIN, datetime(2027, 1, 31, 12, 0, tzinfo=UTC)),
        ("2027-01-31T12:00", UTC, datetime(2027, 1, 31, 12, 0, tzinfo=UTC)),
        ("2027-01-31T12:00", BERLIN, datetime(2027, 1, 31, 11, 0, tzinfo=UTC)),
        ("2027-01-31 12:30:15", NEW_YORK, datetime(2027, 1, 31, 17, 30, 15, tzinfo=UTC)),
    ],
)
def test_parse_expiry_absolute(text: str, zone: ZoneInfo, expected: datetime) -> None:
    result = parse_expiry(text, now=NOW, zone=zone)
    assert result == expected
    assert result is not None
    assert result.utcoffset() == timedelta(0)


@pytest.mark.parametrize(
    ("text", "span"),
    [
        ("30d", timedelta(days=30)),
        ("1d", timedelta(days=1)),
        ("2w", timedelta(weeks=2)),
        ("12h", timedelta(hours=12)),
        ("30D", timedelta(days=30)),
        (" 2 w ", timedelta(weeks=2)),
        ("400d", timedelta(days=400)),
    ],
)
def test_parse_expiry_relative_to_now(text: str, span: timedelta) -> None:
    assert parse_expiry(text, now=NOW) == NOW + span
    # The zone does not matter for spans, and `now` may be in any zone.
    local_now = NOW.astimezone(NEW_YORK)
    result = parse_expiry(text, now=local_now, zone=BERLIN)
    assert result == NOW + span
    assert result is not None
    assert result.utcoffset() == timedelta(0)


@pytest.mark.parametrize("text", ["never", "NEVER", "none", "", "  "])
def test_parse_expiry_never(text: str) -> None:
    assert parse_expiry(text, now=NOW, zone=BERLIN) is None


@pytest.mark.parametrize(
    "text",
    [
        "2027-13-45",
        "2027-02-30",
        "tomorrow",
        "0d",
        "0h",
        "30x",
        "-3d",
        "1.5d",
        "31/01/2027",
        "2027-01-31T25:00",
        "d30",
    ],
)
def test_parse_expiry_rejects(text: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_expiry(text, now=NOW)
    assert caught.value.exit_code == 3
    assert repr(text) in caught.value.message
    assert caught.value.hint is not None


# -- counts ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "expected"),
    [("3", 3), ("1", 1), (" 5 ", 5), ("100", 100), ("0", None), ("none", None), ("", None)],
)
def test_parse_count(text: str, expected: int | None) -> None:
    assert parse_count(text, "device limit") == expected


@pytest.mark.parametrize("text", ["-1", "1.5", "abc", "3 devices", "+2", "0x10"])
def test_parse_count_rejects(text: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_count(text, "device limit")
    assert caught.value.message == f"{text!r} is not a valid device limit."
    assert caught.value.exit_code == 3


@pytest.mark.parametrize("text", ["²", "①", "3²"])
def test_parse_count_rejects_digit_like_characters(text: str) -> None:
    """str.isdigit() accepts superscripts, which int() then refuses with a ValueError."""
    with pytest.raises(InvalidInput):
        parse_count(text, "device limit")


# -- bounds (issue 13) ----------------------------------------------------------------------------
@pytest.mark.parametrize("zone", [UTC, BERLIN, NEW_YORK, ZoneInfo("Pacific/Kiritimati")])
def test_the_last_day_is_accepted_in_every_zone(zone: ZoneInfo) -> None:
    expiry = parse_expiry("2099-12-31", now=NOW, zone=zone)
    assert expiry == datetime(2100, 1, 1, tzinfo=zone).astimezone(UTC)
    assert expiry is not None
    assert expiry < EXPIRY_CAP
    assert parse_expiry("2099-12-31T23:59", now=NOW, zone=zone) is not None


@pytest.mark.parametrize(
    "text",
    ["2100-01-01", "9999-12-31", "2100-01-01T00:01", "1000000000d", "100000000000h", "5000w"],
)
def test_parse_expiry_refuses_after_the_last_day(text: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_expiry(text, now=NOW, zone=NEW_YORK)
    assert caught.value.message == (
        f"An expiry must be on 2099-12-31 or before; {text!r} is later."
    )


def test_a_span_may_have_leading_zeros() -> None:
    assert parse_expiry("0" * 40 + "5d", now=NOW) == NOW + timedelta(days=5)
    with pytest.raises(InvalidInput, match="would expire at once"):
        parse_expiry("0" * 40 + "d", now=NOW)


def test_a_span_reaches_the_last_day_and_no_further() -> None:
    hours = (datetime(2100, 1, 1, tzinfo=UTC) - NOW) // timedelta(hours=1)
    assert parse_expiry(f"{hours}h", now=NOW) == NOW + timedelta(hours=hours)
    with pytest.raises(InvalidInput):
        parse_expiry(f"{hours + 1}h", now=NOW)


@pytest.mark.parametrize("text", ["1970-01-01", "2026-03-09", "2026-03-10T15:30:45Z"])
def test_parse_expiry_refuses_the_past_unless_asked(text: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_expiry(text, now=NOW)
    assert caught.value.message == f"{text!r} is in the past: the user would expire at once."
    assert parse_expiry(text, now=NOW, past=True) is not None  # an import of expired users


def test_counts_sizes_and_speeds_have_a_largest_value() -> None:
    assert parse_count("36500", "number of days", MOST_DAYS) == 36500
    for text in ("36501", "9" * 5000, "0" * 30 + "36501"):
        with pytest.raises(InvalidInput, match="more than the largest number of days, 36500"):
            parse_count(text, "number of days", MOST_DAYS)
    assert parse_count("0" * 30 + "7", "device limit") == 7
    assert parse_size("9223372036854775807") == LARGEST
    with pytest.raises(InvalidInput, match=r"^'9300000TB' is more than the largest quota"):
        parse_size("9300000TB")
    with pytest.raises(InvalidInput, match=r"^'9300000000Gbit' is more than the largest speed"):
        parse_rate("9300000000Gbit")
