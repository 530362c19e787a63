"""Plans: a named set of limits that `vpn user add|update --plan` gives users (quota, reset
period, days until expiry, device limit). A user keeps a reference to the plan they were given;
changing a plan changes nobody's limits until it is given again."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict

from vpn_manager.models.user import Bytes, Count, Days, NewName, ResetPeriod

__all__ = ["Plan", "PlanCreate", "PlanUpdate"]


class PlanCreate(BaseModel):
    """A new plan; None means unlimited (quota, devices) or never (days)."""

    model_config = ConfigDict(extra="forbid", defer_build=True)

    name: NewName  # the same rules as user names: printed in lists, typed on command lines
    quota_bytes: Bytes = None
    reset_period: ResetPeriod = "never"
    days: Days = None  # a user given the plan expires this many days later
    device_limit: Count = None


class PlanUpdate(BaseModel):
    """A partial change of a plan: only the fields that were set are applied."""

    model_config = ConfigDict(extra="forbid", defer_build=True)

    quota_bytes: Bytes = None
    reset_period: ResetPeriod | None = None
    days: Days = None
    device_limit: Count = None

    def changes(self) -> dict[str, Any]:
        return {field: getattr(self, field) for field in self.model_fields_set}


class Plan(BaseModel):
    """What services return about a plan, with how many users hold it."""

    model_config = ConfigDict(extra="forbid")

    name: str
    quota_bytes: int | None = None
    reset_period: str = "never"
    days: int | None = None
    device_limit: int | None = None
    created_at: datetime
    updated_at: datetime
    users: int = 0
