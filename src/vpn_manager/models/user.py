from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, computed_field, model_validator

from vpn_manager.errors import InvalidInput
from vpn_manager.kinds import UserStatus
from vpn_manager.units import EXPIRY_CAP, LARGEST, LAST_DAY, MOST_DAYS, parse_span

__all__ = [
    "BIGINT_MAX",
    "INT_MAX",
    "NAME_PATTERN",
    "Bytes",
    "Count",
    "Days",
    "Email",
    "Expiry",
    "NewName",
    "Note",
    "PlainText",
    "ResetPeriod",
    "Span",
    "User",
    "UserCreate",
    "UserCredential",
    "UserFilter",
    "UserLimits",
    "UserName",
    "UserStatus",
    "UserUpdate",
    "like_pattern",
]

NAME_PATTERN = re.compile(r"[A-Za-z0-9._-]{1,64}")
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
_RESET = re.compile(r"never|daily|weekly|monthly|[1-9][0-9]{0,3}d")


def like_pattern(search: str) -> str:
    """A case-folded LIKE pattern matching `search` literally (`%`, `_` and `\\` escaped)."""
    escaped = search.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def check_name(value: str) -> str:
    """A name that is also a safe file name: server names become directories (paths.entry)."""
    if not NAME_PATTERN.fullmatch(value):
        raise ValueError("use 1 to 64 letters, digits, '-', '_' or '.'")
    if value in (".", ".."):
        raise ValueError("'.' and '..' name directories, so they cannot name anything here")
    return value


def check_new_name(value: str) -> str:
    """The rules of check_name, plus one for a name being made (a user, server, proxy, plan or
    API key, created or renamed): no leading '-', which a command line reads as an option, so
    that the thing could only be named after `--`. Names made by older versions still work
    wherever a name is looked up (check_name)."""
    check_name(value)
    if value.startswith("-"):
        raise ValueError("a name cannot start with '-' (a command line would read it as an option)")
    return value


# Terminal control: C0 and C1 controls, DEL, and the bidirectional overrides that reorder
# what a terminal shows. A note may keep its line breaks and tabs.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
_CONTROL_IN_NOTE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def check_plain(value: str | None) -> str | None:
    """Text stored and shown again (names, addresses, passwords): no control characters, so
    that it cannot move the cursor, recolour or rewrite a terminal when it is listed."""
    if value is not None and _CONTROL.search(value):
        raise ValueError("control characters (such as escape sequences) are not allowed")
    return value


def _check_note(value: str | None) -> str | None:
    if value is not None and _CONTROL_IN_NOTE.search(value):
        raise ValueError(
            "control characters (such as escape sequences) are not allowed; "
            "line breaks and tabs are"
        )
    return value


def _check_email(value: str | None) -> str | None:
    if value in (None, ""):
        return None
    check_plain(value)
    if not _EMAIL.fullmatch(value):
        raise ValueError("not an e-mail address")
    return value


def _check_reset(value: str) -> str:
    if not _RESET.fullmatch(value):
        raise ValueError(
            "use never, daily, weekly, monthly or a number of days from 1d to 9999d such as 30d"
        )
    return value


UserName = Annotated[str, AfterValidator(check_name)]
NewName = Annotated[str, AfterValidator(check_new_name)]  # a name being made (check_new_name)
Email = Annotated[str | None, AfterValidator(_check_email)]
ResetPeriod = Annotated[str, AfterValidator(_check_reset)]
Note = Annotated[str | None, Field(max_length=1000), AfterValidator(_check_note)]
PlainText = Annotated[str, AfterValidator(check_plain)]
BIGINT_MAX = LARGEST  # the BigInteger columns (bytes, bits per second)
INT_MAX = 2**31 - 1  # the Integer columns (device counts)
Bytes = Annotated[int | None, Field(ge=1, le=BIGINT_MAX)]
Count = Annotated[int | None, Field(ge=1, le=INT_MAX)]
Days = Annotated[int | None, Field(ge=1, le=MOST_DAYS)]


def _unenforced(value: int | None) -> int | None:
    if value is not None:
        raise ValueError("speed limits are not enforced yet, so none can be set")
    return value


# Read back from databases of earlier versions (User), never set: nothing would enforce it.
SpeedLimit = Annotated[int | None, Field(ge=1, le=BIGINT_MAX), AfterValidator(_unenforced)]


def _check_expiry(value: datetime | None) -> datetime | None:
    if value is not None and (value.tzinfo is None or value >= EXPIRY_CAP):
        raise ValueError(f"an expiry must be an aware time on {LAST_DAY} or before")
    return value


Expiry = Annotated[datetime | None, AfterValidator(_check_expiry)]


def _check_span(value: str | None) -> str | None:
    if value is not None:
        try:
            parse_span(value)
        except InvalidInput as exc:
            raise ValueError(exc.message.rstrip(".")) from None
    return value


# A length of time as users write it ("30d", "2w", "12h"), kept as written: units.parse_span.
Span = Annotated[str | None, Field(max_length=40), AfterValidator(_check_span)]


class UserLimits(BaseModel):
    """The limits every user carries; None means unlimited / never."""

    model_config = ConfigDict(extra="forbid", defer_build=True)

    expires_at: Expiry = None
    quota_bytes: Bytes = None
    reset_period: ResetPeriod = "never"
    device_limit: Count = None
    speed_limit_bps: SpeedLimit = None
    expire_after_days: Days = None  # "starts on first use": expires this long after first use


class UserCreate(UserLimits):
    name: NewName
    email: Email = None
    note: Note = None
    status: UserStatus = UserStatus.ACTIVE
    plan: UserName | None = None  # its limits, where no other field sets them (services/plans.py)


class UserUpdate(BaseModel):
    """A partial change: only the fields that were set are applied (`model_fields_set`)."""

    model_config = ConfigDict(extra="forbid", defer_build=True)

    new_name: NewName | None = None
    email: Email = None
    note: Note = None
    expires_at: Expiry = None
    quota_bytes: Bytes = None
    reset_period: ResetPeriod | None = None
    device_limit: Count = None
    speed_limit_bps: SpeedLimit = None
    expire_after_days: Days = None
    extend: Span = None  # expiry moved on from the later of now and the current expiry
    plan: UserName | None = None  # given again: its limits where no other field sets them

    @model_validator(mode="after")
    def _one_expiry(self) -> UserUpdate:
        if {"expires_at", "extend"} <= self.model_fields_set and self.extend is not None:
            raise ValueError("give either an expiry or an extension, not both")
        return self

    def changes(self) -> dict[str, Any]:
        data = {field: getattr(self, field) for field in self.model_fields_set}
        if "new_name" in data:
            data["name"] = data.pop("new_name")
        return data


class UserFilter(BaseModel):
    model_config = ConfigDict(defer_build=True)

    status: UserStatus | None = None
    search: str | None = None


class UserCredential(BaseModel):
    """A user's credentials on one server (filled by the protocol issues)."""

    model_config = ConfigDict(defer_build=True)

    server: str
    protocol: str
    created_at: datetime


class User(BaseModel):
    """What services return about a user."""

    model_config = ConfigDict(extra="forbid", from_attributes=True)

    name: str
    status: UserStatus
    email: str | None = None
    note: str | None = None
    created_at: datetime
    updated_at: datetime
    expires_at: datetime | None = None
    quota_bytes: int | None = None
    reset_period: str = "never"
    device_limit: int | None = None
    speed_limit_bps: int | None = None
    upload_bytes: int = 0
    download_bytes: int = 0
    period_upload_bytes: int = 0
    period_download_bytes: int = 0
    period_started_at: datetime | None = None
    first_used_at: datetime | None = None
    expire_after_days: int | None = None
    plan: str | None = None
    servers: list[str] = Field(default_factory=list)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def used_bytes(self) -> int:
        """Lifetime usage."""
        return self.upload_bytes + self.download_bytes

    @computed_field  # type: ignore[prop-decorator]
    @property
    def period_used_bytes(self) -> int:
        """Usage in the current quota period: what the quota is held against."""
        return self.period_upload_bytes + self.period_download_bytes
