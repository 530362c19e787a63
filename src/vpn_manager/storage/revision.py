"""The schema revision this code expects, importable without SQLAlchemy.

It names the newest migration in storage/migrations/versions; a test checks it against Alembic's
head, so the fast paths that compare against it (and import Alembic only when they differ)
cannot drift.
"""

SCHEMA_HEAD = "0007"
