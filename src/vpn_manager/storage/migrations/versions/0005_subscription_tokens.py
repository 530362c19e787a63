"""Subscription tokens kept hashed: the token's SHA-256 (what lookups match) and the token sealed
with the home's subscription key, in place of the token in the clear.

The tokens made before were never served (there was no subscription server), so they are not
carried over: each user gets a new token the first time their URL is asked for.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-07
"""

import secrets
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.drop_constraint("uq_users_subscription_token", type_="unique")
        batch.drop_column("subscription_token")
        batch.add_column(sa.Column("subscription_hash", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("subscription_sealed", sa.String(length=128), nullable=True))
        batch.create_unique_constraint("uq_users_subscription_hash", ["subscription_hash"])


def downgrade() -> None:
    # The old column held tokens in the clear; the hashes cannot give them back: new ones.
    with op.batch_alter_table("users") as batch:
        batch.drop_constraint("uq_users_subscription_hash", type_="unique")
        batch.drop_column("subscription_sealed")
        batch.drop_column("subscription_hash")
        batch.add_column(sa.Column("subscription_token", sa.String(length=64), nullable=True))
    users = sa.table("users", sa.column("id", sa.Integer), sa.column("subscription_token"))
    connection = op.get_bind()
    for (user_id,) in connection.execute(sa.select(users.c.id)).all():
        connection.execute(
            users.update()
            .where(users.c.id == user_id)
            .values(subscription_token=secrets.token_urlsafe(24))
        )
    with op.batch_alter_table("users") as batch:
        batch.alter_column("subscription_token", existing_type=sa.String(length=64), nullable=False)
        batch.create_unique_constraint("uq_users_subscription_token", ["subscription_token"])
