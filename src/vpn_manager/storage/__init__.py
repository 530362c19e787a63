"""Storage: SQLAlchemy (async) over SQLite by default or PostgreSQL, with Alembic migrations.

Importing this package is cheap; SQLAlchemy loads when a Database is first used for a transaction.
"""

from vpn_manager.storage.db import Database
from vpn_manager.storage.revision import SCHEMA_HEAD

__all__ = ["SCHEMA_HEAD", "Database"]
