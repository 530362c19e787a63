"""Storage: SQLAlchemy (async) over SQLite by default or PostgreSQL, with Alembic migrations."""

from vpn_manager.storage.db import SCHEMA_HEAD, Database

__all__ = ["SCHEMA_HEAD", "Database"]
