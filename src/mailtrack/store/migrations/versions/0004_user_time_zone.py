"""A time zone per web user (empty: the browser's).

Revision ID: 0004_user_time_zone
Revises: 0003_ops
"""
import sqlalchemy as sa
from alembic import op

revision = "0004_user_time_zone"
down_revision = "0003_ops"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.add_column(sa.Column("time_zone", sa.String(64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.drop_column("time_zone")
