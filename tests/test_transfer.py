"""Export and import of users (services.transfer) on both backends."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import DbUrlFactory, FixedClock, open_database
from vpn_manager.errors import InvalidInput
from vpn_manager.models import User, UserCreate, UserStatus
from vpn_manager.services.tokens import TokenSeal
from vpn_manager.services.transfer import (
    FIELDS,
    FileFormat,
    OnExisting,
    dump,
    export_records,
    import_users,
    parse_file,
)
from vpn_manager.services.users import UserService
from vpn_manager.storage import Database

FORMATS: list[FileFormat] = ["json", "csv"]


def _users() -> list[UserCreate]:
    return [
        UserCreate(
            name="alice",
            email="alice@example.com",
            note='Team "Red", floor 3\nsecond line',  # CSV quoting: comma, quote, newline
            expires_at=datetime(2027, 2, 1, 8, 30, 15, 250000, tzinfo=UTC),
            quota_bytes=50_000_000_000,
            reset_period="monthly",
            device_limit=3,
        ),
        UserCreate(name="bob", status=UserStatus.DISABLED, reset_period="30d"),
        UserCreate(name="carol.x_1-2", email="carol@corp.org", status=UserStatus.OVER_QUOTA),
        UserCreate(name="dave", status=UserStatus.EXPIRED, quota_bytes=1, device_limit=1),
    ]


_TRAFFIC = [
    {"upload_bytes": 123_456_789_012, "download_bytes": 987_654_321},
    {"upload_bytes": 0, "download_bytes": 5},
    {"upload_bytes": 1, "download_bytes": 0},
    {"upload_bytes": 0, "download_bytes": 0},
]


_KEY: list[Path] = []  # this test's home key (subscription tokens are sealed with it)


@pytest.fixture(autouse=True)
def _home_key(tmp_path: Path) -> Iterator[None]:
    _KEY.append(tmp_path / "subscription.key")
    yield
    _KEY.pop()


def _service(db: Database, clock: FixedClock | None = None) -> UserService:
    return UserService(db, clock=clock or FixedClock(), seal=TokenSeal(_KEY[-1]))


async def _seed(db: Database, clock: FixedClock) -> list[User]:
    """Four users with traffic, each with a subscription token."""
    service = _service(db, clock)
    await service.add(_users(), extras=_TRAFFIC)
    for user in _users():
        await service.subscription_token(user.name)
    return await service.list()


async def _tokens(db: Database, users: list[User]) -> dict[str, str]:
    return await _service(db).tokens_of([u.name for u in users])


def _exported_fields(
    users: list[User], tokens: dict[str, str] | None = None
) -> list[dict[str, Any]]:
    """Every field an export carries, as Python values (the token with `tokens`)."""
    fields = set(FIELDS) - {"subscription_token"}
    return [
        user.model_dump(include=fields)
        | ({"subscription_token": tokens.get(user.name)} if tokens is not None else {})
        for user in users
    ]


async def _everything(service: UserService) -> list[dict[str, Any]]:
    users = await service.list()
    tokens = await service.tokens_of([u.name for u in users])
    return [user.model_dump() | {"token": tokens.get(user.name)} for user in users]


def _write(
    path: Path, users: list[User], fmt: FileFormat, tokens: dict[str, str] | None = None
) -> Path:
    path.write_text(dump(export_records(users, tokens), fmt), encoding="utf-8")
    return path


async def _list(url: str) -> list[User]:
    async with open_database(url) as db:
        return await _service(db).list()


@pytest.mark.parametrize("fmt", FORMATS)
async def test_export_import_round_trips_every_field(
    database: Database,
    make_db_url: DbUrlFactory,
    tmp_path: Path,
    clock: FixedClock,
    fmt: FileFormat,
) -> None:
    originals = await _seed(database, clock)
    tokens = await _tokens(database, originals)
    path = _write(tmp_path / f"users.{fmt}", originals, fmt, tokens)
    records = parse_file(path)
    assert [record.name for record in records] == ["alice", "bob", "carol.x_1-2", "dave"]

    target_url = await make_db_url()
    import_clock = FixedClock(datetime(2027, 3, 1, tzinfo=UTC))
    async with open_database(target_url) as target:
        plan = await import_users(_service(target, import_clock), records)
    assert plan.create == ["alice", "bob", "carol.x_1-2", "dave"]
    assert (plan.update, plan.skip, plan.dry_run) == ([], [], False)

    imported = await _list(target_url)
    async with open_database(target_url) as target:
        kept = await _tokens(target, imported)
    assert _exported_fields(imported, kept) == _exported_fields(originals, tokens)
    assert len(kept) == 4
    assert all(user.updated_at == import_clock.now for user in imported)


@pytest.mark.parametrize("fmt", FORMATS)
async def test_export_without_secrets_leaves_tokens_out(
    database: Database,
    make_db_url: DbUrlFactory,
    tmp_path: Path,
    clock: FixedClock,
    fmt: FileFormat,
) -> None:
    originals = await _seed(database, clock)
    tokens = await _tokens(database, originals)
    path = _write(tmp_path / f"users.{fmt}", originals, fmt)
    text = path.read_text(encoding="utf-8")
    for token in tokens.values():
        assert token not in text

    target_url = await make_db_url()
    async with open_database(target_url) as target:
        await import_users(_service(target, clock), parse_file(path))
    imported = await _list(target_url)
    assert _exported_fields(imported) == _exported_fields(originals)
    async with open_database(target_url) as target:
        assert await _tokens(target, imported) == {}  # made when first asked for
        new_tokens = {await _service(target).subscription_token(u.name) for u in imported}
    assert len(new_tokens) == 4
    assert not set(tokens.values()) & new_tokens


@pytest.mark.parametrize("fmt", FORMATS)
async def test_importing_the_same_file_twice_changes_nothing(
    database: Database,
    make_db_url: DbUrlFactory,
    tmp_path: Path,
    clock: FixedClock,
    fmt: FileFormat,
) -> None:
    path = _write(tmp_path / f"users.{fmt}", await _seed(database, clock), fmt)
    target_url = await make_db_url()
    async with open_database(target_url) as target:
        service = _service(target, clock)
        await import_users(service, parse_file(path))
        after_first = await _everything(service)
        clock.advance(3600)
        plan = await import_users(service, parse_file(path))
        assert plan.skip == ["alice", "bob", "carol.x_1-2", "dave"]
        assert (plan.create, plan.update) == ([], [])
        assert await _everything(service) == after_first


@pytest.mark.parametrize("fmt", FORMATS)
async def test_dry_run_writes_nothing(
    database: Database,
    make_db_url: DbUrlFactory,
    tmp_path: Path,
    clock: FixedClock,
    fmt: FileFormat,
) -> None:
    originals = await _seed(database, clock)
    path = _write(tmp_path / f"users.{fmt}", originals, fmt, await _tokens(database, originals))
    records = parse_file(path)

    target_url = await make_db_url()
    async with open_database(target_url) as target:
        plan = await import_users(_service(target, clock), records, dry_run=True)
    assert plan.dry_run
    assert plan.create == ["alice", "bob", "carol.x_1-2", "dave"]
    assert await _list(target_url) == []

    # Against a database that already has some of them: the plan says what would happen.
    async with open_database(target_url) as target:
        service = _service(target, clock)
        await import_users(service, [record for record in records if record.name != "bob"])
        before = await _everything(service)
        clock.advance(60)
        plan = await import_users(service, records, dry_run=True, on_existing=OnExisting.UPDATE)
        assert (plan.create, plan.update, plan.skip) == (
            ["bob"],
            ["alice", "carol.x_1-2", "dave"],
            [],
        )
        assert await _everything(service) == before


async def test_on_existing_update_changes_fields(
    database: Database, tmp_path: Path, clock: FixedClock
) -> None:
    originals = await _seed(database, clock)
    records = export_records(originals)
    alice, bob = records[0], records[1]
    alice |= {"email": "a@new.example", "note": None, "quota_bytes": 7_000, "status": "disabled"}
    alice |= {"expires_at": None, "reset_period": "weekly"}
    bob |= {"device_limit": 9, "status": "active"}
    path = tmp_path / "changed.json"
    path.write_text(dump([alice, bob, records[2]], "json"), encoding="utf-8")

    later = clock.advance(60)
    service = _service(database, clock)
    plan = await import_users(service, parse_file(path), on_existing=OnExisting.UPDATE)
    assert (plan.create, plan.update, plan.skip) == ([], ["alice", "bob", "carol.x_1-2"], [])

    new_alice = await service.get("alice")
    assert new_alice.email == "a@new.example"
    assert (new_alice.note, new_alice.expires_at) == (None, None)
    assert (new_alice.quota_bytes, new_alice.reset_period) == (7_000, "weekly")
    assert (new_alice.speed_limit_bps, new_alice.device_limit) == (None, 3)
    assert new_alice.status is UserStatus.DISABLED
    assert new_alice.updated_at == later
    # What an import does not own stays: creation time, traffic, token.
    old_alice = originals[0]
    assert new_alice.created_at == old_alice.created_at
    assert (new_alice.upload_bytes, new_alice.download_bytes) == (
        old_alice.upload_bytes,
        old_alice.download_bytes,
    )
    assert (await _tokens(database, [new_alice])) == (await _tokens(database, [old_alice]))

    new_bob = await service.get("bob")
    assert (new_bob.device_limit, new_bob.status) == (9, UserStatus.ACTIVE)
    assert (await service.get("dave")) == originals[3]  # not in the file


async def test_on_existing_fail_writes_nothing(
    database: Database, make_db_url: DbUrlFactory, tmp_path: Path, clock: FixedClock
) -> None:
    seeded = await _seed(database, clock)
    records = parse_file(
        _write(tmp_path / "users.json", seeded, "json", await _tokens(database, seeded))
    )
    async with open_database(await make_db_url()) as target:
        service = _service(target, clock)
        await import_users(service, [record for record in records if record.name != "dave"])
        before = await _everything(service)
        with pytest.raises(InvalidInput, match="already exist"):
            await import_users(service, records, on_existing=OnExisting.FAIL)
        assert await _everything(service) == before  # dave was not created


_GOOD = {"name": "good", "status": "active", "quota_bytes": "1GB", "expires_at": "2027-01-31"}


@pytest.mark.parametrize(
    ("field", "bad", "reason"),
    [
        ("name", "bad name!", "name"),
        ("quota_bytes", "12XB", "12XB"),
        ("expires_at", "2027-02-30", "2027-02-30"),
        ("expires_at", "next tuesday", "next tuesday"),
        ("email", "not-an-address", "email"),
        ("reset_period", "fortnightly", "reset_period"),
        ("device_limit", "-1", "device limit"),
        ("status", "sleeping", "status"),
        # Bounds (issue 13): what the command line refuses, a file cannot bring in.
        ("name", "..", "name"),
        ("expires_at", "9999-12-31", "2099-12-31"),
        ("expires_at", "1000000000d", "2099-12-31"),
        ("created_at", "9999-12-31", "creation date"),
        ("created_at", "0001-01-01T00:00", "creation date"),
        ("quota_bytes", "9300000TB", "largest quota"),
        ("speed_limit_bps", "9300000000Gbit", "largest speed limit"),
        ("speed_limit_bps", "10Mbit", "not enforced"),  # nothing would keep it
        ("device_limit", "9" * 5000, "largest device limit"),
    ],
)
@pytest.mark.parametrize("fmt", FORMATS)
def test_one_bad_record_refuses_the_whole_file(
    tmp_path: Path,
    fmt: FileFormat,
    field: str,
    bad: str,
    reason: str,
) -> None:
    records = [
        _GOOD | {"name": "first"},
        _GOOD | {"name": "second", field: bad},
        _GOOD | {"name": "third"},
    ]
    path = tmp_path / f"users.{fmt}"
    if fmt == "json":
        path.write_text(json.dumps({"version": 1, "users": records}), encoding="utf-8")
    else:
        columns = list(dict.fromkeys(key for record in records for key in record))
        lines = [",".join(columns), *(",".join(r.get(c, "") for c in columns) for r in records)]
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    where = "line 3" if fmt == "csv" else "user 2"

    with pytest.raises(InvalidInput) as caught:
        parse_file(path)
    assert f"{path.name} {where}" in caught.value.message
    assert reason in caught.value.message


@pytest.mark.parametrize("fmt", FORMATS)
async def test_a_file_with_a_bad_record_writes_nothing(
    database: Database, tmp_path: Path, clock: FixedClock, fmt: FileFormat
) -> None:
    """The import as `vpn user import` runs it: read the file, then write; one bad record among
    new users and changes to existing ones leaves the database as it was."""
    originals = await _seed(database, clock)
    records = export_records(originals)
    records[0]["note"] = "changed"
    records.append(records[1] | {"name": "newcomer"})
    records.append(records[1] | {"name": "broken", "quota_bytes": "12XB"})
    path = tmp_path / f"users.{fmt}"
    path.write_text(dump(records, fmt), encoding="utf-8")
    service = _service(database, clock)
    before = await _everything(service)
    with pytest.raises(InvalidInput, match="12XB"):
        await import_users(service, parse_file(path), on_existing=OnExisting.UPDATE)
    assert await _everything(service) == before


def test_csv_with_an_unknown_column_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "users.csv"
    path.write_text("name,email,colour\nalice,alice@example.com,blue\n", encoding="utf-8")
    with pytest.raises(InvalidInput, match="colour"):
        parse_file(path)


def test_csv_without_a_name_column_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "users.csv"
    path.write_text("email\nalice@example.com\n", encoding="utf-8")
    with pytest.raises(InvalidInput, match="name"):
        parse_file(path)


def test_a_name_twice_in_one_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "users.json"
    path.write_text(json.dumps([{"name": "alice"}, {"name": "bob"}, {"name": "alice"}]))
    with pytest.raises(InvalidInput, match="alice"):
        parse_file(path)


@pytest.mark.parametrize("fmt", FORMATS)
async def test_blank_values_mean_defaults(
    database: Database, tmp_path: Path, clock: FixedClock, fmt: FileFormat
) -> None:
    """An export of a user with nothing set, with every optional value blanked the way a
    spreadsheet (CSV) or a hand-written file (JSON null) leaves it, imports as the defaults."""
    record: dict[str, Any] = dict.fromkeys(FIELDS) | {"name": "plain"}
    path = tmp_path / f"blank.{fmt}"
    path.write_text(dump([record], fmt), encoding="utf-8")
    service = _service(database, clock)
    await import_users(service, parse_file(path))
    plain = await service.get("plain")
    assert plain.status is UserStatus.ACTIVE
    assert plain.created_at == clock.now
    assert (plain.email, plain.note, plain.expires_at, plain.quota_bytes) == (None,) * 4
    assert (plain.device_limit, plain.speed_limit_bps, plain.reset_period) == (None, None, "never")
    assert (plain.upload_bytes, plain.download_bytes) == (0, 0)


async def test_csv_accepts_human_units(
    database: Database, tmp_path: Path, clock: FixedClock
) -> None:
    path = tmp_path / "people.csv"
    path.write_text(
        "name,email,quota_bytes,expires_at,speed_limit_bps,reset_period,device_limit\n"
        "alice,alice@example.com,50GB,2027-01-31,,monthly,2\n"
        "bob,,1.5TiB,2027-01-31T12:00:00+02:00,,,\n"
        "carol,,unlimited,never,,30d,\n",
        encoding="utf-8",
    )
    records = parse_file(path)
    service = _service(database, clock)
    await import_users(service, records)

    alice, bob, carol = await service.list()
    assert alice.quota_bytes == 50_000_000_000
    assert alice.expires_at == datetime(2027, 2, 1, tzinfo=UTC)  # through the whole day
    assert (alice.reset_period, alice.device_limit) == ("monthly", 2)

    assert bob.email is None
    assert bob.quota_bytes == 3 * 1024**4 // 2
    assert bob.expires_at == datetime(2027, 1, 31, 10, tzinfo=UTC)
    assert (bob.reset_period, bob.device_limit) == ("never", None)

    assert (carol.quota_bytes, carol.expires_at, carol.speed_limit_bps) == (None, None, None)
    assert carol.reset_period == "30d"
    assert all(user.created_at == clock.now for user in (alice, bob, carol))
    assert all(user.status is UserStatus.ACTIVE for user in (alice, bob, carol))


def test_csv_errors_name_the_physical_line(tmp_path: Path) -> None:
    """A quoted cell may span lines; the line named must be the one an editor shows."""
    path = tmp_path / "users.csv"
    path.write_text(
        'name,note,quota_bytes\nalice,"two\nlines",1GB\nbob,,12XB\n',  # bob is on line 4
        encoding="utf-8",
    )
    with pytest.raises(InvalidInput, match=r"users\.csv line 4: '12XB'"):
        parse_file(path)


async def test_created_at_date_is_that_day(
    database: Database, tmp_path: Path, clock: FixedClock
) -> None:
    """A date alone means the start of that day for created_at (only an expiry runs through it)."""
    path = tmp_path / "users.csv"
    path.write_text("name,created_at,expires_at\nalice,2026-01-15,2026-01-15\n", encoding="utf-8")
    service = _service(database, clock)
    await import_users(service, parse_file(path))
    alice = await service.get("alice")
    assert alice.expires_at == datetime(2026, 1, 16, tzinfo=UTC)
    assert alice.created_at == datetime(2026, 1, 15, tzinfo=UTC)


def test_an_import_keeps_an_expiry_in_the_past(tmp_path: Path) -> None:
    """Unlike `--expires`, a file may hold users who have expired (an export of them)."""
    path = tmp_path / "users.json"
    path.write_text(json.dumps([{"name": "old", "expires_at": "2001-01-31"}]), encoding="utf-8")
    assert parse_file(path)[0].expires_at == datetime(2001, 2, 1, tzinfo=UTC)
