"""Sending domains and their DKIM keys; an email's List-Unsubscribe choice; paused provider groups.

Revision ID: 0003_dkim
Revises: 0002
"""
import sqlalchemy as sa
from alembic import op

revision = "0003_dkim"
down_revision = "0003_security"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "sending_domains",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("domain", sa.String(length=253), nullable=False),
        sa.Column("return_path", sa.String(length=253), nullable=True),
        sa.Column("checks_json", sa.Text(), nullable=True),
        sa.Column("checked_at", sa.Float(), nullable=True),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(["account_id"], ["accounts.id"], name=op.f("fk_sending_domains_account_id_accounts")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sending_domains")),
        sa.UniqueConstraint("domain", name=op.f("uq_sending_domains_domain")),
    )
    op.create_index(op.f("ix_sending_domains_account_id"), "sending_domains", ["account_id"])
    op.create_table(
        "dkim_keys",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("domain_id", sa.Integer(), nullable=False),
        sa.Column("selector", sa.String(length=63), nullable=False),
        sa.Column("private_key", sa.Text(), nullable=False),
        sa.Column("public_key", sa.Text(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("activated_at", sa.Float(), nullable=True),
        sa.Column("retire_at", sa.Float(), nullable=True),
        sa.ForeignKeyConstraint(["domain_id"], ["sending_domains.id"],
                                name=op.f("fk_dkim_keys_domain_id_sending_domains")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dkim_keys")),
        sa.UniqueConstraint("domain_id", "selector", name="uq_dkim_keys_domain_selector"),
    )
    op.create_index(op.f("ix_dkim_keys_domain_id"), "dkim_keys", ["domain_id"])
    op.create_table(
        "provider_pauses",
        sa.Column("grp", sa.String(length=255), nullable=False),
        sa.Column("paused_until", sa.Float(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("grp", name=op.f("pk_provider_pauses")),
    )
    with op.batch_alter_table("emails") as batch:
        batch.add_column(sa.Column("unsubscribe", sa.Boolean(), nullable=True))


def downgrade() -> None:
    op.drop_table("provider_pauses")
    with op.batch_alter_table("emails") as batch:
        batch.drop_column("unsubscribe")
    op.drop_index(op.f("ix_dkim_keys_domain_id"), table_name="dkim_keys")
    op.drop_table("dkim_keys")
    op.drop_index(op.f("ix_sending_domains_account_id"), table_name="sending_domains")
    op.drop_table("sending_domains")
