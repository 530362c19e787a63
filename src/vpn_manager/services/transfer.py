"""Export users to JSON or CSV and import them back: validate everything first, then write it all
in one transaction, so a bad file changes nothing. Importing the same file twice changes nothing.

API keys (services/apikeys.py) and the audit log are never exported: a key belongs to the
installation it was made on (only its hash is kept, so it could not be carried anyway)."""

from __future__ import annotations

import csv
import io
import json
import os
import stat
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, date, datetime, time, tzinfo
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, ValidationInfo

from vpn_manager import storage
from vpn_manager.errors import InvalidInput, quoted
from vpn_manager.fsutil import kind_of
from vpn_manager.models import User, UserCreate, UserStatus, UserUpdate, validated
from vpn_manager.models.user import (
    BIGINT_MAX,
    Bytes,
    Count,
    Email,
    Note,
    ResetPeriod,
    SpeedLimit,
    UserName,
    check_new_name,
)
from vpn_manager.services import tokens
from vpn_manager.services.batches import reject_repeats
from vpn_manager.services.users import UserService
from vpn_manager.units import (
    LAST_DAY,
    parse_count,
    parse_expiry,
    parse_rate,
    parse_size,
)

FileFormat = Literal["json", "csv"]
EXPORT_VERSION = 1
FIRST_DAY = date(1970, 1, 1)  # the earliest creation date an import may give
FIELDS = [
    "name",
    "email",
    "note",
    "status",
    "created_at",
    "expires_at",
    "quota_bytes",
    "reset_period",
    "device_limit",
    "speed_limit_bps",
    "upload_bytes",
    "download_bytes",
    "subscription_token",
]


class OnExisting(StrEnum):
    SKIP = "skip"
    UPDATE = "update"
    FAIL = "fail"


def _blank_is_none(value: Any) -> Any:
    return None if isinstance(value, str) and not value.strip() else value


def _size(value: Any) -> Any:
    value = _blank_is_none(value)
    return parse_size(value) if isinstance(value, str) else value


def _rate(value: Any) -> Any:
    value = _blank_is_none(value)
    return parse_rate(value) if isinstance(value, str) else value


def _zero(value: Any) -> Any:
    return _blank_is_none(value) or 0


def _count(value: Any) -> Any:
    value = _blank_is_none(value)
    return parse_count(value, "device limit") if isinstance(value, str) else value or None


def _created(value: Any, info: ValidationInfo) -> Any:
    """A creation time: a date means the start of that day (in the configured zone)."""
    value = _blank_is_none(value)
    if isinstance(value, str):
        zone = (info.context or {}).get("zone", UTC)
        try:
            moment = datetime.combine(date.fromisoformat(value.strip()), time(), zone)
        except ValueError:
            try:
                moment = datetime.fromisoformat(value.strip())
            except ValueError:
                raise ValueError("not a date or an ISO date-time") from None
        return moment if moment.tzinfo else moment.replace(tzinfo=zone)
    return value


def _created_in_range(value: datetime | None) -> datetime | None:
    if value is not None and not FIRST_DAY <= value.date() <= LAST_DAY:
        raise ValueError(f"a creation date must be from {FIRST_DAY} to {LAST_DAY}")
    return value


def _moment(value: Any, info: ValidationInfo) -> Any:
    """Dates in a file mean what they mean on the command line: in the configured time zone."""
    value = _blank_is_none(value)
    if isinstance(value, str):
        zone = (info.context or {}).get("zone", UTC)
        return parse_expiry(value, now=datetime.now(UTC), zone=zone, past=True)
    return value


def _check_new_name(name: str) -> None:
    """A user the file makes follows the rules of new names; one it updates (a name an older
    version allowed) does not have to."""
    try:
        check_new_name(name)
    except ValueError as exc:
        raise InvalidInput(f"{quoted(name)} cannot name a new user: {exc}.") from None


class UserRecord(BaseModel):
    """One user as it stands in an export file."""

    model_config = ConfigDict(extra="forbid")

    name: UserName
    email: Annotated[Email, BeforeValidator(_blank_is_none)] = None
    note: Annotated[Note, BeforeValidator(_blank_is_none)] = None
    status: Annotated[
        UserStatus, BeforeValidator(lambda v: _blank_is_none(v) or UserStatus.ACTIVE)
    ] = UserStatus.ACTIVE
    created_at: Annotated[
        datetime | None, BeforeValidator(_created), AfterValidator(_created_in_range)
    ] = None
    expires_at: Annotated[datetime | None, BeforeValidator(_moment)] = None
    quota_bytes: Annotated[Bytes, BeforeValidator(_size)] = None
    reset_period: Annotated[ResetPeriod, BeforeValidator(lambda v: v or "never")] = "never"
    device_limit: Annotated[Count, BeforeValidator(_count)] = None
    speed_limit_bps: Annotated[SpeedLimit, BeforeValidator(_rate)] = None
    upload_bytes: Annotated[int, Field(ge=0, le=BIGINT_MAX), BeforeValidator(_zero)] = 0
    download_bytes: Annotated[int, Field(ge=0, le=BIGINT_MAX), BeforeValidator(_zero)] = 0
    subscription_token: Annotated[
        str | None, Field(pattern=r"^[A-Za-z0-9_-]{16,64}$"), BeforeValidator(_blank_is_none)
    ] = None

    def create(self) -> UserCreate:
        return UserCreate.model_validate(self.model_dump(include=set(UserCreate.model_fields)))

    def update(self) -> UserUpdate:
        fields = set(UserUpdate.model_fields) - {"new_name"}
        return UserUpdate.model_validate(self.model_dump(include=fields))

    def extras(self) -> dict[str, Any]:
        return self.model_dump(
            include={"created_at", "upload_bytes", "download_bytes", "subscription_token"}
        )


class ImportPlan(BaseModel):
    dry_run: bool
    create: list[str] = Field(default_factory=list)
    update: list[str] = Field(default_factory=list)
    skip: list[str] = Field(default_factory=list)


def export_records(
    users: Sequence[User], tokens: dict[str, str] | None = None
) -> list[dict[str, Any]]:
    """The users as export records; `tokens` (name → subscription token) only when secrets are
    asked for (UserService.tokens_of)."""
    records = []
    for user in users:
        record = user.model_dump(mode="json", include=set(FIELDS))
        record["subscription_token"] = (tokens or {}).get(user.name)
        records.append({field: record.get(field) for field in FIELDS})
    return records


def dump(records: list[dict[str, Any]], fmt: FileFormat) -> str:
    if fmt == "json":
        return json.dumps({"version": EXPORT_VERSION, "users": records}, indent=2) + "\n"
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=FIELDS, lineterminator="\n")
    writer.writeheader()
    for record in records:
        writer.writerow({k: "" if v is None else v for k, v in record.items()})
    return out.getvalue()


def parse_file(
    path: Path,
    fmt: FileFormat | None = None,
    zone: tzinfo = UTC,
    max_bytes: int = 256 * 1000**2,
) -> list[UserRecord]:
    """Read and validate every record of an export file; the first problem is an InvalidInput."""
    text = read_text(path, max_bytes)
    fmt = fmt or ("csv" if path.suffix.lower() == ".csv" else "json")
    if fmt == "csv":
        raw = [(f"{path.name} line {line}", row) for line, row in _parse_csv(text)]
    else:
        raw = [(f"{path.name} user {n}", item) for n, item in enumerate(_parse_json(text, path), 1)]
    records = []
    for where, item in raw:
        if not isinstance(item, dict):
            raise InvalidInput(f"{where}: expected an object with a name.")
        try:
            records.append(validated(UserRecord, item, where=where, context={"zone": zone}))
        except InvalidInput as exc:
            if exc.message.startswith(where):
                raise
            raise InvalidInput(f"{where}: {exc.message}", hint=exc.hint) from None
    if records:
        reject_repeats([r.name for r in records])
        tokens = [r.subscription_token for r in records if r.subscription_token]
        repeated = next((t for t, n in Counter(tokens).items() if n > 1), None)
        if repeated is not None:
            twins = [r.name for r in records if r.subscription_token == repeated]
            raise InvalidInput(
                f"{twins[0]!r} and {twins[1]!r} have the same subscription_token.",
                hint="Each user needs a token of their own; leave one empty for a new one.",
            )
    return records


def read_text(path: Path, max_bytes: int) -> str:
    """The text of a regular file of at most `max_bytes`: a device (/dev/zero), a FIFO or a
    directory is refused before it is opened, and a file is never read past the limit."""
    try:
        _regular(path, os.stat(path), max_bytes)
        # Checked again on what was opened (it may have been swapped); O_NONBLOCK: a FIFO put
        # there meanwhile opens at once instead of waiting for a writer, and is then refused.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY)
    except FileNotFoundError:
        raise InvalidInput(f"There is no file {path}.") from None
    except OSError as exc:
        raise InvalidInput(f"Cannot read {path}: {exc.strerror}.") from None
    with os.fdopen(fd, "rb") as file:
        _regular(path, os.fstat(fd), max_bytes)
        try:
            data = file.read(max_bytes + 1)
        except OSError as exc:
            raise InvalidInput(f"Cannot read {path}: {exc.strerror}.") from None
    if len(data) > max_bytes:  # it grew while we read it
        raise _too_big(path, max_bytes)
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InvalidInput(f"Cannot read {path}: it is not UTF-8 text ({exc.reason}).") from None


def _regular(path: Path, info: os.stat_result, max_bytes: int) -> None:
    if not stat.S_ISREG(info.st_mode):
        raise InvalidInput(
            f"{path} is {kind_of(info.st_mode)}, not a file.",
            hint="Give a JSON or CSV file as written by `vpn user export`.",
        )
    if info.st_size > max_bytes:
        raise _too_big(path, max_bytes)


def _too_big(path: Path, max_bytes: int) -> InvalidInput:
    return InvalidInput(
        f"{path} is larger than {max_bytes / 1000**2:g} MB, the most an import reads.",
        hint="Split the file, or raise the import_max_mb setting.",
    )


def _parse_json(text: str, path: Path) -> list[Any]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidInput(f"{path} is not valid JSON: {exc.msg} at line {exc.lineno}.") from None
    except RecursionError:
        raise InvalidInput(f"{path} is not an export: its JSON is nested too deeply.") from None
    except ValueError:  # an integer of more digits than int() converts (4,300)
        raise InvalidInput(
            f"{path} is not an export: it holds a number too long to read."
        ) from None
    version = data.get("version", EXPORT_VERSION) if isinstance(data, dict) else EXPORT_VERSION
    if isinstance(version, bool) or version != EXPORT_VERSION:
        raise InvalidInput(
            f"{path} is an export of version {str(version)[:20]}; this vpn-manager "
            f"reads version {EXPORT_VERSION} only.",
            hint="Export again with the vpn-manager that will import it.",
        )
    if isinstance(data, dict) and isinstance(data.get("users"), list):
        data = data["users"]
    if not isinstance(data, list):
        raise InvalidInput(f"{path} holds no list of users.", hint='Give [{"name": …}, …].')
    return data


def _parse_csv(text: str) -> list[tuple[int, dict[str, Any]]]:
    """The rows with the physical line each starts on (a quoted cell may span lines)."""
    try:
        return _csv_rows(text)
    except csv.Error as exc:  # a cell over the csv module's field size limit, a NUL byte
        raise InvalidInput(f"The CSV file cannot be read: {exc}.") from None


def _csv_rows(text: str) -> list[tuple[int, dict[str, Any]]]:
    reader = csv.DictReader(io.StringIO(text))
    unknown = set(reader.fieldnames or []) - set(FIELDS)
    if not reader.fieldnames or "name" not in reader.fieldnames or unknown:
        raise InvalidInput(
            "The CSV header must name the column 'name' and only known columns"
            + (f" (unknown: {', '.join(sorted(unknown))})." if unknown else "."),
            hint="Columns: " + ", ".join(FIELDS),
        )
    rows = []
    start = reader.line_num + 1
    for row in reader:
        rows.append((start, dict(row)))
        start = reader.line_num + 1
    return rows


async def import_users(
    service: UserService,
    records: Sequence[UserRecord],
    *,
    dry_run: bool = False,
    on_existing: OnExisting = OnExisting.SKIP,
) -> ImportPlan:
    plan = ImportPlan(dry_run=dry_run)
    async with service.db.session() as session:
        existing = await storage.users.existing_names(session, [r.name for r in records])
        if existing and on_existing is OnExisting.FAIL:
            raise InvalidInput(
                f"{len(existing)} of these users already exist (first: {sorted(existing)[0]!r}).",
                hint="Use --on-existing skip or update.",
            )
        new = [r for r in records if r.name not in existing]
        digests = {r.name: tokens.digest(r.subscription_token) for r in new if r.subscription_token}
        owners = await storage.users.token_owners(session, list(digests.values()))
        for record in new:
            _check_new_name(record.name)
            if digests.get(record.name) in owners:
                raise InvalidInput(
                    f"{record.name!r} has the subscription_token of the existing user "
                    f"{owners[digests[record.name]]!r}.",
                    hint="Each user needs a token of their own; leave it empty for a new one.",
                )
        plan.create = [r.name for r in new]
        for record in records:
            if record.name in existing:
                (plan.update if on_existing is OnExisting.UPDATE else plan.skip).append(record.name)
        if dry_run:
            return plan
        now = service.clock()
        if new:
            extras = [r.extras() for r in new]
            for extra in extras:
                token = extra.pop("subscription_token", None)
                if token:
                    extra["subscription_hash"] = tokens.digest(token)
                    extra["subscription_sealed"] = service.sealed(token)
            await storage.users.insert_users(session, [r.create() for r in new], now, extras=extras)
        by_name = {r.name: r for r in records}
        for name in plan.update:
            record = by_name[name]
            changes = record.update().changes() | {"status": record.status}
            await storage.users.update_user(session, name, changes, now)
    return plan
