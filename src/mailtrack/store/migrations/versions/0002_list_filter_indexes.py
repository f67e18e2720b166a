"""Indexes for the filtered email lists (by client, by source type, by recipient status).

Revision ID: 0002
Revises: 0001
"""
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_emails_account_client", "emails", ["account_id", "client_id", "created_at"])
    op.create_index("ix_emails_account_type", "emails", ["account_id", "source_type", "created_at"])
    op.create_index("ix_recipients_email_status", "recipients", ["email_id", "status"])


def downgrade() -> None:
    op.drop_index("ix_recipients_email_status", "recipients")
    op.drop_index("ix_emails_account_type", "emails")
    op.drop_index("ix_emails_account_client", "emails")
