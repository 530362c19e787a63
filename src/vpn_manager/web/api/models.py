"""The API's request and response bodies. Users and servers are the services' own read models
(models.User, models.server.Server, ServerStatus), which hold no secret; the only secrets any
response carries are where the route's point is one: a user's links and a rotated token."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field, model_validator

from vpn_manager.models import (
    Plan,
    PlanCreate,
    PlanUpdate,
    User,
    UserCreate,
    UserStatus,
    UserUpdate,
)
from vpn_manager.models.server import ServerCreate
from vpn_manager.models.user import PlainText, UserName

# The request bodies are the CLI's input models, built at once: FastAPI's body fields over a
# model whose schema build is deferred make pydantic warn on stderr.
BUILT = ConfigDict(extra="forbid", defer_build=False)


class UserCreateIn(UserCreate):
    """A new user, with the servers to give them access to at once (applied live)."""

    model_config = BUILT
    servers: list[UserName] = Field(
        default_factory=list, description="Servers the user gets access to (applied live)."
    )


class UserUpdateIn(UserUpdate):
    """A partial change: only the fields sent change; null clears email, note, limits and the
    plan. `extend` moves the expiry on ("30d", "2w", "12h") from the later of now and the
    current expiry; `plan` gives the plan's limits where no other field sets them."""

    model_config = BUILT

    @model_validator(mode="after")
    def _not_null(self) -> UserUpdateIn:
        for field in ("new_name", "reset_period", "extend"):
            if field in self.model_fields_set and getattr(self, field) is None:
                raise ValueError(f"{field} cannot be null (leave it out to keep it)")
        return self


class ServerCreateIn(ServerCreate):
    """What `vpn server install` takes."""

    model_config = BUILT


class PlanCreateIn(PlanCreate):
    """A new plan (as `vpn plan add`): null or left out means unlimited (quota, devices) or
    never (days); the reset period is "never" unless given."""

    model_config = BUILT


class PlanUpdateIn(PlanUpdate):
    """A partial change of a plan: only the fields sent change; null makes the quota or the
    devices unlimited and the days never."""

    model_config = BUILT

    @model_validator(mode="after")
    def _not_null(self) -> PlanUpdateIn:
        if "reset_period" in self.model_fields_set and self.reset_period is None:
            raise ValueError("reset_period cannot be null (leave it out to keep it)")
        return self


class PlanShown(Plan):
    """One plan and the names of the users who hold it."""

    holders: list[str] = Field(description="The users who hold the plan, by name.")


class PlanRemoved(BaseModel):
    name: str
    done: str = Field(description="What was done, as a sentence.")
    holders: list[str] = Field(
        description="The users who held it (with force): they keep their limits."
    )


class GrantIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    server: UserName
    password: PlainText | None = Field(
        default=None, max_length=256, description="Proxies: the user's password (else generated)."
    )


class RevokeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    server: UserName


class AccessIn(BaseModel):
    """Users and servers of a bulk grant or revoke: the users named or every user, then only
    those in `status` if given; all or nothing, one apply per server."""

    model_config = ConfigDict(extra="forbid")

    users: list[UserName] = Field(
        default_factory=list, max_length=100_000, description="The users (or all_users)."
    )
    all_users: bool = Field(default=False, description="Every user instead of `users`.")
    servers: list[UserName] = Field(min_length=1, max_length=1000, description="The servers.")
    status: UserStatus | None = Field(
        default=None, description="Only the selected users in this state."
    )

    @model_validator(mode="after")
    def _one_selection(self) -> AccessIn:
        if self.all_users == bool(self.users):
            raise ValueError("give either users or all_users")
        return self

    def selected(self) -> list[str] | None:
        """The user names for the service: None for every user."""
        return None if self.all_users else self.users


class BulkGrantIn(AccessIn):
    password: PlainText | None = Field(
        default=None,
        max_length=256,
        description="Proxies: the user's own password (one user only; else generated).",
    )


class PairOut(BaseModel):
    name: str = Field(description="The user's name.")
    server: str
    changed: bool = Field(
        description="Granted: False when they had access already. Revoked: False when they "
        "had none."
    )


class BulkDone(BaseModel):
    """Every user with every server, and how the change reached each server."""

    pairs: list[PairOut]
    applied: list[str] = Field(description="One line per server: how the change reached it.")


class UserChanged(BaseModel):
    """A user after a change, and how the change reached each of their servers."""

    user: User
    applied: list[str] = Field(description="One line per server: how the change reached it.")


class Done(BaseModel):
    """A change that returns nothing else: what it touched and how it reached each server."""

    name: str
    done: str = Field(description="What was done, as a sentence.")
    applied: list[str] = Field(default_factory=list)


class Granted(BaseModel):
    name: str
    server: str
    granted: bool = Field(description="False when the user already had access.")
    applied: list[str] = Field(default_factory=list)


class LinkOut(BaseModel):
    server: str
    protocol: str
    link: str = Field(description="The share link a client app imports (holds credentials).")
    note: str = Field(description="How the client trusts the server, when that needs saying.")


class LinksOut(BaseModel):
    name: str
    subscription_url: str | None = Field(
        description="Every server of the user, kept up to date by their app (null when the "
        "API does not know the address users reach `vpn web` at: set web.public_url)."
    )
    links: list[LinkOut]


class TokenOut(BaseModel):
    name: str
    subscription_token: str
    subscription_url: str | None


class HourOut(BaseModel):
    hour: datetime
    user: str
    server: str
    upload_bytes: int
    download_bytes: int


class UserUsage(BaseModel):
    name: str
    upload_bytes: int
    download_bytes: int
    used_bytes: int
    period_upload_bytes: int
    period_download_bytes: int
    period_started_at: datetime | None
    quota_bytes: int | None
    hours: list[HourOut] = Field(description="Hourly traffic in the asked time, per server.")


class ServerUsage(BaseModel):
    name: str = Field(description="The user's name.")
    upload_bytes: int
    download_bytes: int


class Stopped(BaseModel):
    name: str
    stopped: bool = Field(description="False when it was not running.")


class Stats(BaseModel):
    users: dict[str, int] = Field(description="How many users are in each status.")
    servers: int
    running: int
    hours: list[HourOut]


class AuditOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    at: datetime
    actor: str
    action: str
    target: str
    result: str
