"""What an SQLite URL names, and how to open a file this process may not write. Shared by the
database handle (db.py), the SQLAlchemy backend (sql.py) and the sqlite3 fast path
(sqlite_read.py); standard library only."""

from __future__ import annotations

import os
from pathlib import Path

from vpn_manager.errors import StorageError


def read_only_query(file: Path) -> str | None:
    """For an existing SQLite file that this process cannot write (a read-only home, directory
    or mount): the URI query that opens it read-only, so that read commands still work. None
    for a file we can write, or may create."""
    try:
        if file.stat().st_size == 0:
            return None
    except OSError:
        return None
    if os.access(file, os.W_OK) and os.access(file.parent, os.W_OK):
        return None
    # Without a -wal file there is nothing to replay: immutable, so that SQLite does not try to
    # create the -shm file next to the database. With one, it is read (through -shm) as it is.
    if file.with_name(file.name + "-wal").exists():
        return "mode=ro"
    return "mode=ro&immutable=1"


def sqlite_path(url: str) -> Path | None:
    if not url.startswith("sqlite"):
        return None
    path = url.split(":///", 1)[1] if ":///" in url else ""
    if not path or path.startswith(":memory:"):
        raise StorageError(
            "An in-memory SQLite database would lose everything when the command ends.",
            hint="Give a file: sqlite:////absolute/path/vpn.db",
        )
    return Path(path).absolute()
