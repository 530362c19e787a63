"""API keys: what a client of `vpn web`'s REST API sends to be let in.

A key's secret is "vpnm_" and 256 random bits in URL-safe base64 (43 characters), shown once when
the key is made. The database keeps its SHA-256 only (as for subscription tokens, tokens.py): a
request's key is looked up by that hash, and neither the database nor a backup gives a working
key away. A key has a name (the rules of user names), a scope ("read", or "write", which also
reads), an optional expiry, and is revoked rather than deleted, so that it stays listed. A name
belongs to one key until that key is revoked; then a new key may take it.

When a key was last used is noted at most once a minute per key, not on every request.
Keys are never exported (services/transfer.py): they belong to one installation.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import re
import secrets
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from vpn_manager import storage
from vpn_manager.errors import InvalidInput, NotFound
from vpn_manager.services.audit import record_in
from vpn_manager.storage import Database
from vpn_manager.units import EXPIRY_CAP, LAST_DAY

if TYPE_CHECKING:
    from vpn_manager.storage.orm import ApiKeyRow

Clock = Callable[[], datetime]

SCOPES = ("read", "write")  # write implies read
PREFIX = "vpnm_"
SECRET_BYTES = 32
SECRET_PATTERN = re.compile(r"vpnm_[A-Za-z0-9_-]{43}", re.ASCII)
TOUCH_EVERY = timedelta(minutes=1)  # last_used_at is written at most this often per key


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_secret() -> str:
    return PREFIX + secrets.token_urlsafe(SECRET_BYTES)


def digest(secret: str) -> str:
    """What the database keeps of a key's secret: SHA-256, hex."""
    return hashlib.sha256(secret.encode()).hexdigest()


@dataclasses.dataclass(frozen=True)
class ApiKey:
    name: str
    scope: str  # "read" | "write"
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None
    revoked_at: datetime | None
    # The time `state` is judged at: the service's clock when it read the key (None: now).
    as_of: datetime | None = dataclasses.field(default=None, compare=False, repr=False)

    @property
    def state(self) -> str:
        """ "active", "expired" or "revoked", as of when the service read the key."""
        return self.state_at(self.as_of or utcnow())

    def state_at(self, now: datetime) -> str:
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and self.expires_at <= now:
            return "expired"
        return "active"

    def allows(self, scope: str) -> bool:
        """Whether the key's scope covers `scope`: a write key reads too."""
        if self.scope == "write":
            return scope in SCOPES
        return scope == self.scope


def _to_key(row: ApiKeyRow, now: datetime) -> ApiKey:
    return ApiKey(
        name=row.name,
        scope=row.scope,
        created_at=row.created_at,
        expires_at=row.expires_at,
        last_used_at=row.last_used_at,
        revoked_at=row.revoked_at,
        as_of=now,
    )


def check_key_name(name: str) -> str:
    """The rules of a new user name (models.user.check_new_name), as one InvalidInput sentence."""
    from vpn_manager.models.user import check_new_name

    try:
        return check_new_name(name)
    except ValueError as exc:
        raise InvalidInput(f"{name[:80]!r} cannot name an API key: {exc}.") from None


def check_scope(scope: str) -> str:
    if scope not in SCOPES:
        raise InvalidInput(
            f"{scope[:40]!r} is not an API key scope.",
            hint="Use read (look only) or write (also change users and servers).",
        )
    return scope


class ApiKeyService:
    """API keys in the database."""

    def __init__(self, db: Database, clock: Clock = utcnow) -> None:
        self.db = db
        self.clock = clock
        self._touched: dict[int, datetime] = {}  # key id -> last_used_at written by this process

    async def create(
        self, name: str, scope: str, expires_at: datetime | None, *, audit_as: str | None = None
    ) -> tuple[ApiKey, str]:
        """Make a key; returns it and its secret, which is shown once and never kept. With
        `audit_as`, an "api-key.create" audit entry by that actor is written in the same
        transaction (the key and its entry exist together or not at all)."""
        check_key_name(name)
        check_scope(scope)
        now = self.clock()
        if expires_at is not None:
            if expires_at.tzinfo is None:
                raise InvalidInput("An API key's expiry needs a time zone.")  # pragma: no cover
            if expires_at <= now:
                raise InvalidInput(
                    "The expiry is in the past: the key would never work.",
                    hint="Give a later date or a span such as 90d.",
                )
            if expires_at >= EXPIRY_CAP:
                raise InvalidInput(f"An API key must expire on {LAST_DAY.isoformat()} or before.")
        secret = new_secret()
        async with self.db.session() as session:
            row = await storage.apikeys.insert_key(
                session, name, digest(secret), scope, now, expires_at
            )
            if audit_as is not None:
                await record_in(session, now, audit_as, "api-key.create", name, "ok")
        return _to_key(row, now), secret

    async def list(self) -> list[ApiKey]:
        """Every key, revoked and expired ones included, oldest first."""
        now = self.clock()
        async with self.db.reading() as session:
            rows = await storage.apikeys.list_keys(session)
        return [_to_key(row, now) for row in rows]

    async def get(self, name: str) -> ApiKey:
        """The key that holds `name` (else the one of that name revoked last); NotFound."""
        now = self.clock()
        async with self.db.reading() as session:
            row = await storage.apikeys.key_named(session, name)
        if row is None:
            raise NotFound(
                f"There is no API key named {name[:80]!r}.", hint="See `vpn api-key list`."
            )
        return _to_key(row, now)

    async def revoke(self, name: str) -> ApiKey:
        """Revoke the key that holds `name`: it stops working at once. NotFound if there is no
        key of that name; a key revoked already is returned as it is, with nothing written
        (its `revoked_at` says when)."""
        key, _ = await self.revoke_once(name)
        return key

    async def revoke_once(self, name: str, *, audit_as: str | None = None) -> tuple[ApiKey, bool]:
        """As `revoke`, and whether this call revoked the key (False: it was revoked already).
        With `audit_as`, an "api-key.revoke" audit entry by that actor is written in the same
        transaction as the revocation (none when nothing changed)."""
        now = self.clock()
        async with self.db.session() as session:
            row = await storage.apikeys.key_named(session, name)
            if row is None:
                raise NotFound(
                    f"There is no API key named {name[:80]!r}.", hint="See `vpn api-key list`."
                )
            revoked = row.revoked_at is None and await storage.apikeys.revoke_key(
                session, row.id, now
            )
            if revoked:
                row.revoked_at = now
                if audit_as is not None:
                    await record_in(session, now, audit_as, "api-key.revoke", name, "ok")
        return _to_key(row, now), revoked

    async def authenticate(self, secret: str) -> ApiKey | None:
        """The key whose secret this is, if it is active; None for anything else (malformed,
        unknown, revoked, expired). One read by the secret's hash; last_used_at written at most
        once a minute per key."""
        if not SECRET_PATTERN.fullmatch(secret):
            return None
        wanted = digest(secret)
        async with self.db.reading() as session:
            row = await storage.apikeys.key_by_hash(session, wanted)
        if row is None or not hmac.compare_digest(row.key_hash, wanted):
            return None
        now = self.clock()
        key = _to_key(row, now)
        if key.state_at(now) != "active":
            return None
        before = now - TOUCH_EVERY
        last = max(
            (t for t in (row.last_used_at, self._touched.get(row.id)) if t is not None),
            default=None,
        )
        if last is None or last < before:
            self._touched[row.id] = now
            async with self.db.session() as session:
                await storage.apikeys.touch_key(session, row.id, now, before)
            key = dataclasses.replace(key, last_used_at=now)
        return key
