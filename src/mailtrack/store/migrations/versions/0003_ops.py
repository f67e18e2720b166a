"""Operations: workers with a heartbeat, an index on what each holds, destinations on hold, daily rollups.

Revision ID: 0003_ops
Revises: 0002
"""
import sqlalchemy as sa
from alembic import op

revision = "0003_ops"
down_revision = "0003_dkim"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "workers",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("process_ns", sa.String(128), nullable=True),
        sa.Column("started_at", sa.Float(), nullable=False),
        sa.Column("heartbeat_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_workers")),
    )
    op.create_table(
        "queue_holds",
        sa.Column("destination", sa.String(255), nullable=False),
        sa.Column("held_at", sa.Float(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("destination", name=op.f("pk_queue_holds")),
    )
    op.create_table(
        "daily_rollups",
        sa.Column("day", sa.String(10), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("name", sa.String(16), nullable=False),
        sa.Column("count", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("day", "account_id", "kind", "name", name=op.f("pk_daily_rollups")),
    )
    op.create_index("ix_emails_created", "emails", ["created_at"])
    op.create_index("ix_recipients_lease_owner", "recipients", ["lease_owner"],
                    sqlite_where=sa.text("lease_owner IS NOT NULL"),
                    postgresql_where=sa.text("lease_owner IS NOT NULL"))


def downgrade() -> None:
    op.drop_index("ix_recipients_lease_owner", "recipients")
    op.drop_index("ix_emails_created", "emails")
    op.drop_table("daily_rollups")
    op.drop_table("queue_holds")
    op.drop_table("workers")
