"""Storage: SQLAlchemy (async) over SQLite by default or PostgreSQL, with Alembic migrations.

Importing this package is cheap. SQLAlchemy loads with the first transaction (Database.open), or
with the first use of a query module: `users`, `servers`, `accounting`, `apikeys` and `plans` build
SQLAlchemy statements, so this package hands them out on first use (`__getattr__` below). Code
above storage imports the package at its top (`from vpn_manager import storage`) and writes
`storage.users.list_users(...)`: a user listing the sqlite3 fast path serves (sqlite_read.py),
and `vpn --help`, never load SQLAlchemy.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import TYPE_CHECKING

from vpn_manager.storage.db import Database
from vpn_manager.storage.revision import SCHEMA_HEAD

if TYPE_CHECKING:
    from vpn_manager.storage import accounting, apikeys, plans, servers, users

__all__ = ["SCHEMA_HEAD", "Database", "accounting", "apikeys", "plans", "servers", "users"]

# They import SQLAlchemy at their top.
QUERY_MODULES = ("accounting", "apikeys", "plans", "servers", "users")


def __getattr__(name: str) -> ModuleType:
    """`storage.users` and the other query modules, imported on first use."""
    if name in QUERY_MODULES:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
