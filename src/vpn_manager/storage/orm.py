"""ORM rows. Their names end in Row; the queries turn them into the Pydantic models in
vpn_manager.models."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    text,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator[datetime]):
    """Stored as naive UTC everywhere (SQLite keeps no zone); always read back as aware UTC."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetimes are not stored; give a zone")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if isinstance(value, str):
            value = datetime.fromisoformat(value)
        if value.tzinfo is not None:  # text written with an offset
            return value.astimezone(UTC)  # type: ignore[no-any-return]
        return value.replace(tzinfo=UTC)  # type: ignore[no-any-return]


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class UserRow(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    email: Mapped[str | None] = mapped_column(String(320))
    note: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    quota_bytes: Mapped[int | None] = mapped_column(BigInteger)
    reset_period: Mapped[str] = mapped_column(String(16), default="never")
    device_limit: Mapped[int | None] = mapped_column(Integer)
    speed_limit_bps: Mapped[int | None] = mapped_column(BigInteger)
    upload_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    download_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    # The subscription token's SHA-256 (hex) and the token sealed with the home's key
    # (services/tokens.py); both empty until the user's URL is first asked for.
    subscription_hash: Mapped[str | None] = mapped_column(String(64), unique=True)
    subscription_sealed: Mapped[str | None] = mapped_column(String(128))
    period_upload_bytes: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    period_download_bytes: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    period_started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    first_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    expire_after_days: Mapped[int | None] = mapped_column(Integer)
    # The plan the user was last given (its limits were copied then); a plan removed with
    # --force leaves its users' limits as they are and this empty.
    plan_id: Mapped[int | None] = mapped_column(
        ForeignKey("plans.id", ondelete="SET NULL"), index=True
    )

    credentials: Mapped[list[UserCredentialRow]] = relationship(
        back_populates="user", cascade="all, delete-orphan", passive_deletes=True
    )


class PlanRow(Base):
    """A named set of limits (models.plan): `vpn user add|update --plan` copies them to users."""

    __tablename__ = "plans"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    quota_bytes: Mapped[int | None] = mapped_column(BigInteger)
    reset_period: Mapped[str] = mapped_column(String(16), default="never")
    days: Mapped[int | None] = mapped_column(Integer)
    device_limit: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class ServerRow(Base):
    """A server: public settings in `settings`, private keys in `secret` (never in read models)."""

    __tablename__ = "servers"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    protocol: Mapped[str] = mapped_column(String(32))
    engine: Mapped[str] = mapped_column(String(32))
    runtime: Mapped[str] = mapped_column(String(16))
    image: Mapped[str | None] = mapped_column(String(255))
    docker_host: Mapped[str | None] = mapped_column(String(255))
    listen: Mapped[str] = mapped_column(String(64))
    port: Mapped[int] = mapped_column(Integer)
    host: Mapped[str] = mapped_column(String(255))
    desired: Mapped[str] = mapped_column(String(16))
    settings: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    secret: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class UserCredentialRow(Base):
    """A user's credentials on one server: the protocol's secrets live in `secret`.

    `server` keeps the server's name (for listings without a join); `server_id` ties the row to
    the server so that removing the server removes its credentials."""

    __tablename__ = "user_credentials"
    __table_args__ = (
        UniqueConstraint("user_id", "server", name="uq_user_credentials_user_server"),
        Index("ix_user_credentials_server", "server"),
        Index("ix_user_credentials_server_id", "server_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    server_id: Mapped[int | None] = mapped_column(ForeignKey("servers.id", ondelete="CASCADE"))
    server: Mapped[str] = mapped_column(String(64))
    protocol: Mapped[str] = mapped_column(String(32))
    secret: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)

    user: Mapped[UserRow] = relationship(back_populates="credentials")


class UsageBaselineRow(Base):
    """The last value read from one engine counter, and the engine process (`epoch`) it was read
    from: the next read adds only what grew since, and a new epoch counts from zero."""

    __tablename__ = "usage_baselines"
    __table_args__ = (UniqueConstraint("server_id", "key", name="uq_usage_baselines_server_key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    server_id: Mapped[int] = mapped_column(ForeignKey("servers.id", ondelete="CASCADE"))
    key: Mapped[str] = mapped_column(String(128))
    epoch: Mapped[str] = mapped_column(String(64))
    up: Mapped[int] = mapped_column(BigInteger)
    down: Mapped[int] = mapped_column(BigInteger)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class UsageHourlyRow(Base):
    """Bytes a user moved through a server in one hour (UTC), for history and charts."""

    __tablename__ = "usage_hourly"
    __table_args__ = (
        UniqueConstraint("user_id", "server_id", "hour", name="uq_usage_hourly_user_server_hour"),
        Index("ix_usage_hourly_hour", "hour"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    server_id: Mapped[int] = mapped_column(ForeignKey("servers.id", ondelete="CASCADE"))
    hour: Mapped[datetime] = mapped_column(UTCDateTime)
    up: Mapped[int] = mapped_column(BigInteger)
    down: Mapped[int] = mapped_column(BigInteger)


class ApiKeyRow(Base):
    """A key for `vpn web`'s REST API: only the SHA-256 of its secret is kept (services/apikeys.py).

    A name belongs to one key until that key is revoked (the partial unique index); revoked keys
    stay listed, and their names may be given to new keys."""

    __tablename__ = "api_keys"
    __table_args__ = (
        Index(
            "uq_api_keys_active_name",
            "name",
            unique=True,
            sqlite_where=text("revoked_at IS NULL"),
            postgresql_where=text("revoked_at IS NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    scope: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class AuditRow(Base):
    """One change made through the API, or to API keys from the CLI (services/audit.py)."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    actor: Mapped[str] = mapped_column(String(96))
    action: Mapped[str] = mapped_column(String(64))
    target: Mapped[str] = mapped_column(String(255))
    result: Mapped[str] = mapped_column(String(500))
