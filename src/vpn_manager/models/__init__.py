"""Pydantic models shared by every layer: the inputs front ends build and the read models
services return."""

from vpn_manager.models.base import validated
from vpn_manager.models.plan import Plan, PlanCreate, PlanUpdate
from vpn_manager.models.user import (
    User,
    UserCreate,
    UserCredential,
    UserFilter,
    UserStatus,
    UserUpdate,
)

__all__ = [
    "Plan",
    "PlanCreate",
    "PlanUpdate",
    "User",
    "UserCreate",
    "UserCredential",
    "UserFilter",
    "UserStatus",
    "UserUpdate",
    "validated",
]
