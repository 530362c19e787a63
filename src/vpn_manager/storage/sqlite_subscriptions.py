"""What a subscription reads (the token's user, and their servers with their credentials) as a
`SubscriptionRecord`, and the reader that takes it from a SQLite file with the standard library's
sqlite3.

`vpn web` on SQLite reads through `SubscriptionFile` and so never loads SQLAlchemy (some 20 MB of
its memory, and a thread and a connection per lookup). The same record comes from SQLAlchemy
(storage.users.subscription_record) on PostgreSQL, and whenever this reader cannot answer: a file
whose schema is not exactly the one this code knows (SCHEMA_HEAD; SQLAlchemy migrates it), or an
sqlite3 error (SQLAlchemy retries and explains). tests/test_subscription_cache.py checks that
both give the same records for the same data after every kind of write.
"""

from __future__ import annotations

import json
import os
import sqlite3
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

from vpn_manager.specs import ServerSpec
from vpn_manager.storage.revision import SCHEMA_HEAD
from vpn_manager.storage.sqlite_read import utc


@dataclass(frozen=True)
class SubscriptionRecord:
    """A subscription token's user, and the servers they hold credentials on (by name)."""

    user_id: int
    name: str
    status: str
    upload: int  # bytes this period
    download: int
    quota: int | None
    expires: datetime | None
    servers: list[tuple[ServerSpec, dict[str, Any]]]  # each server, and the user's credential


class Unanswered(Exception):
    """The file cannot answer here: ask SQLAlchemy."""


_USER = (
    "SELECT id, name, status, period_upload_bytes, period_download_bytes, quota_bytes, expires_at"
    " FROM users WHERE subscription_hash = ?"
)
_SERVERS = (
    "SELECT s.name, s.protocol, s.listen, s.port, s.host, s.settings, s.secret, s.runtime,"
    " s.image, s.docker_host, c.secret, s.engine FROM servers AS s"
    " JOIN user_credentials AS c ON c.server_id = s.id WHERE c.user_id = ? ORDER BY s.name"
)


# The reader runs in the event loop, so it never waits long for a lock (readers of a WAL file
# seldom have to); past this it is Unanswered, and SQLAlchemy waits in its own thread.
_WAIT_S = 0.05


class SubscriptionFile:
    """Reads subscription records from one SQLite file over a connection kept open (reopened if
    another file takes the name). Close it when done."""

    def __init__(self, file: Path) -> None:
        self.file = file
        self._conn: sqlite3.Connection | None = None
        self._identity: tuple[int, int] | None = None

    def read(self, digest: str) -> SubscriptionRecord | None:
        """The record of the token with this SHA-256, None if no user has it; Unanswered when
        this reader cannot say."""
        try:
            conn = self._connection()
            conn.execute("BEGIN")  # one snapshot for every query
            try:
                return _read(conn, digest)
            finally:
                conn.execute("COMMIT")
        except (sqlite3.Error, OSError, ValueError) as exc:
            self.close()
            raise Unanswered(str(exc)) from None

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _connection(self) -> sqlite3.Connection:
        stat = os.stat(self.file)
        identity = (stat.st_dev, stat.st_ino)
        if self._conn is None or identity != self._identity:
            self.close()
            self._conn = sqlite3.connect(
                f"file:{quote(str(self.file))}?mode=ro",  # never `immutable`: others write it
                uri=True,
                timeout=_WAIT_S,
                isolation_level=None,
                check_same_thread=False,
            )
            self._identity = identity
        return self._conn


def _read(conn: sqlite3.Connection, digest: str) -> SubscriptionRecord | None:
    if conn.execute("SELECT version_num FROM alembic_version").fetchone() != (SCHEMA_HEAD,):
        raise Unanswered("the schema is not this code's")
    user = conn.execute(_USER, (digest,)).fetchone()
    if user is None:
        return None
    user_id, name, status, upload, download, quota, expires = user
    servers = [
        (
            ServerSpec(
                name=row[0],
                protocol=row[1],
                listen=row[2],
                port=row[3],
                host=row[4],
                settings=json.loads(row[5]),
                secret=json.loads(row[6]),
                runtime=row[7],
                image=row[8],
                docker_host=row[9],
                engine=row[11],
            ),
            json.loads(row[10]),
        )
        for row in conn.execute(_SERVERS, (user_id,)).fetchall()
    ]
    return SubscriptionRecord(user_id, name, status, upload, download, quota, utc(expires), servers)
