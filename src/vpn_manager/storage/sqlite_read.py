"""Read-only user listing from a SQLite file with the standard library's sqlite3.

`vpn user list` over 10,000 users must finish in 300 ms, and importing SQLAlchemy alone takes most
of that on a small VPS. This reader serves those reads when the file's schema is exactly the one
this code knows (SCHEMA_HEAD); in every other case it returns None and the caller goes through
SQLAlchemy, which migrates and reports errors. tests/test_storage.py checks that both paths return
the same users for the same filters.
"""

from __future__ import annotations

import sqlite3
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

from pydantic import TypeAdapter

from vpn_manager.models import User, UserFilter
from vpn_manager.models.user import like_pattern
from vpn_manager.storage.revision import SCHEMA_HEAD
from vpn_manager.storage.sqlite_file import read_only_query

# Every field of the read model is a column of `users`, except the servers gathered separately
# and the plan's name (joined from `plans`, read last).
_COLUMNS = tuple(name for name in User.model_fields if name not in ("servers", "plan"))
_USERS = TypeAdapter(list[User])
_TIMES = ("created_at", "updated_at", "expires_at", "period_started_at", "first_used_at")


def utc(value: str | None) -> datetime | None:
    """A stored time as UTCDateTime reads it: naive UTC text, read as aware UTC (text written
    with an offset by older versions is converted, not given a second one)."""
    if value is None:
        return None
    moment = datetime.fromisoformat(value)
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def read_users(file: Path, where: UserFilter | None, busy_timeout_ms: int) -> list[User] | None:
    if not file.is_file():
        return None
    try:
        conn = sqlite3.connect(
            f"file:{quote(str(file))}?{read_only_query(file) or 'mode=ro'}",
            uri=True,
            timeout=busy_timeout_ms / 1000,
        )
    except sqlite3.Error:
        return None
    try:
        return _read(conn, where)
    except (sqlite3.Error, ValueError):
        return None  # SQLAlchemy will retry and explain
    finally:
        conn.close()


def _read(conn: sqlite3.Connection, where: UserFilter | None) -> list[User] | None:
    conn.execute("BEGIN")  # one consistent snapshot for both queries
    if conn.execute("SELECT version_num FROM alembic_version").fetchone() != (SCHEMA_HEAD,):
        return None
    clauses: list[str] = []
    params: list[Any] = []
    if where is not None and where.status is not None:
        clauses.append("u.status = ?")
        params.append(where.status.value)
    if where is not None and where.search:
        clauses.append(
            "(lower(u.name) LIKE ? ESCAPE '\\' OR lower(coalesce(u.email, '')) LIKE ? ESCAPE '\\'"
            " OR lower(coalesce(u.note, '')) LIKE ? ESCAPE '\\')"
        )
        params.extend([like_pattern(where.search)] * 3)
    condition = f" WHERE {' AND '.join(clauses)}" if clauses else ""
    columns = ", ".join(f"u.{name}" for name in _COLUMNS)
    rows = conn.execute(
        f"SELECT u.id, {columns}, p.name FROM users u LEFT JOIN plans p ON p.id = u.plan_id"
        f"{condition} ORDER BY u.name",
        params,
    ).fetchall()
    servers: dict[int, list[str]] = defaultdict(list)
    for user_id, server in conn.execute(
        "SELECT user_id, server FROM user_credentials ORDER BY server"
    ).fetchall():
        servers[user_id].append(server)
    times = [_COLUMNS.index(name) + 1 for name in _TIMES]
    records = []
    for row in rows:
        values = list(row)
        for index in times:
            values[index] = utc(values[index])
        record = dict(zip(_COLUMNS, values[1:-1], strict=True))
        record["plan"] = values[-1]
        record["servers"] = servers.get(row[0], [])
        records.append(record)
    return _USERS.validate_python(records)
