"""Servers, and credentials tied to them.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from vpn_manager.storage.orm import UTCDateTime

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "servers",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("protocol", sa.String(length=32), nullable=False),
        sa.Column("engine", sa.String(length=32), nullable=False),
        sa.Column("runtime", sa.String(length=16), nullable=False),
        sa.Column("listen", sa.String(length=64), nullable=False),
        sa.Column("port", sa.Integer(), nullable=False),
        sa.Column("host", sa.String(length=255), nullable=False),
        sa.Column("desired", sa.String(length=16), nullable=False),
        sa.Column("settings", sa.JSON(), nullable=False),
        sa.Column("secret", sa.JSON(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_servers")),
        sa.UniqueConstraint("name", name=op.f("uq_servers_name")),
    )
    with op.batch_alter_table("user_credentials") as batch:
        batch.add_column(sa.Column("server_id", sa.Integer(), nullable=True))
    # Credentials written before servers existed name a server that cannot exist: keep them
    # (nothing is deleted) but unlinked; they are never rendered into a config.
    with op.batch_alter_table("user_credentials") as batch:
        batch.create_foreign_key(
            op.f("fk_user_credentials_server_id_servers"),
            "servers",
            ["server_id"],
            ["id"],
            ondelete="CASCADE",
        )
        batch.create_index("ix_user_credentials_server_id", ["server_id"])


def downgrade() -> None:
    with op.batch_alter_table("user_credentials") as batch:
        batch.drop_index("ix_user_credentials_server_id")
        batch.drop_constraint(op.f("fk_user_credentials_server_id_servers"), type_="foreignkey")
        batch.drop_column("server_id")
    op.drop_table("servers")
