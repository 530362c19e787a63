"""Traffic accounting: per-counter baselines, hourly history, per-period usage.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from vpn_manager.storage.orm import UTCDateTime

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.add_column(
            sa.Column("period_upload_bytes", sa.BigInteger(), nullable=False, server_default="0")
        )
        batch.add_column(
            sa.Column("period_download_bytes", sa.BigInteger(), nullable=False, server_default="0")
        )
        batch.add_column(sa.Column("period_started_at", UTCDateTime(), nullable=True))
        batch.add_column(sa.Column("first_used_at", UTCDateTime(), nullable=True))
        batch.add_column(sa.Column("expire_after_days", sa.Integer(), nullable=True))
    op.create_table(
        "usage_baselines",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("server_id", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(length=128), nullable=False),
        sa.Column("epoch", sa.String(length=64), nullable=False),
        sa.Column("up", sa.BigInteger(), nullable=False),
        sa.Column("down", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["server_id"],
            ["servers.id"],
            name=op.f("fk_usage_baselines_server_id_servers"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_usage_baselines")),
        sa.UniqueConstraint("server_id", "key", name="uq_usage_baselines_server_key"),
    )
    op.create_table(
        "usage_hourly",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("server_id", sa.Integer(), nullable=False),
        sa.Column("hour", UTCDateTime(), nullable=False),
        sa.Column("up", sa.BigInteger(), nullable=False),
        sa.Column("down", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_usage_hourly_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["server_id"],
            ["servers.id"],
            name=op.f("fk_usage_hourly_server_id_servers"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_usage_hourly")),
        sa.UniqueConstraint(
            "user_id", "server_id", "hour", name="uq_usage_hourly_user_server_hour"
        ),
    )
    op.create_index("ix_usage_hourly_hour", "usage_hourly", ["hour"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_usage_hourly_hour", table_name="usage_hourly")
    op.drop_table("usage_hourly")
    op.drop_table("usage_baselines")
    with op.batch_alter_table("users") as batch:
        batch.drop_column("expire_after_days")
        batch.drop_column("first_used_at")
        batch.drop_column("period_started_at")
        batch.drop_column("period_download_bytes")
        batch.drop_column("period_upload_bytes")
