"""Tables. Timestamps are UTC epoch seconds (float) so both engines compare them the same way."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

# SQLite only autoincrements INTEGER PRIMARY KEY; PostgreSQL wants BIGINT for event ids.
BigId = BigInteger().with_variant(Integer(), "sqlite")

accounts = Table(
    "accounts",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(200), nullable=False, unique=True),
    Column("track_default", Boolean, nullable=False, default=True),
    Column("created_at", Float, nullable=False),
)

api_keys = Table(
    "api_keys",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("account_id", ForeignKey("accounts.id"), nullable=False),
    Column("key_hash", String(64), nullable=False, unique=True),
    Column("prefix", String(16), nullable=False),
    Column("created_at", Float, nullable=False),
)

users = Table(
    "users",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("account_id", ForeignKey("accounts.id"), nullable=False),
    Column("email", String(320), nullable=False, unique=True),
    Column("password_hash", String(200), nullable=False),
    Column("created_at", Float, nullable=False),
)

clients = Table(
    "clients",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("account_id", ForeignKey("accounts.id"), nullable=False),
    Column("external_ref", String(200), nullable=False),
    Column("name", String(200), nullable=False),
    Column("tracking", Boolean, nullable=True),  # None = inherit the site default
    Column("created_at", Float, nullable=False),
    UniqueConstraint("account_id", "external_ref", name="uq_clients_account_ref"),
)

emails = Table(
    "emails",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("account_id", ForeignKey("accounts.id"), nullable=False),
    Column("client_id", ForeignKey("clients.id"), nullable=True),
    Column("idempotency_key", String(200), nullable=True),
    Column("from_addr", String(998), nullable=False),
    Column("reply_to", String(998), nullable=True),
    Column("to_header", Text, nullable=False),
    Column("cc_header", Text, nullable=False),
    Column("subject", Text, nullable=False),
    Column("text_body", Text, nullable=True),
    Column("html_body", Text, nullable=True),
    Column("headers_json", Text, nullable=False),
    Column("metadata_json", Text, nullable=False),
    Column("source_type", String(32), nullable=True),
    Column("source_reference", String(200), nullable=True),
    Column("source_event", String(64), nullable=True),
    Column("tracking", Boolean, nullable=False),
    Column("tracking_override", Boolean, nullable=True),
    Column("size", Integer, nullable=False),
    Column("created_at", Float, nullable=False),
    UniqueConstraint("account_id", "idempotency_key", name="uq_emails_idempotency"),
    Index("ix_emails_account_created", "account_id", "created_at"),
    Index("ix_emails_source", "account_id", "source_reference", "created_at"),
    Index("ix_emails_account_client", "account_id", "client_id", "created_at"),
    Index("ix_emails_account_type", "account_id", "source_type", "created_at"),
)

attachments = Table(
    "attachments",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("email_id", ForeignKey("emails.id"), nullable=False, index=True),
    Column("filename", String(255), nullable=False),
    Column("content_type", String(255), nullable=False),
    Column("content", LargeBinary, nullable=False),
)

links = Table(
    "links",
    metadata,
    Column("email_id", ForeignKey("emails.id"), primary_key=True),
    Column("idx", Integer, primary_key=True),
    Column("url", Text, nullable=False),
)

recipients = Table(
    "recipients",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("email_id", ForeignKey("emails.id"), nullable=False, index=True),
    Column("account_id", ForeignKey("accounts.id"), nullable=False),
    Column("address", String(320), nullable=False),
    Column("domain", String(255), nullable=False),
    Column("kind", String(3), nullable=False),
    Column("status", String(16), nullable=False),
    Column("reason", Text, nullable=True),
    Column("last_reply", Text, nullable=True),
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt_at", Float, nullable=True),
    Column("first_attempt_at", Float, nullable=True),
    Column("lease_until", Float, nullable=True),
    Column("lease_owner", String(64), nullable=True),
    Column("opens_total", Integer, nullable=False, default=0),
    Column("opens_human", Integer, nullable=False, default=0),
    Column("clicks_total", Integer, nullable=False, default=0),
    Column("clicks_human", Integer, nullable=False, default=0),
    Column("first_opened_at", Float, nullable=True),
    Column("first_clicked_at", Float, nullable=True),
    Column("complained", Boolean, nullable=False, default=False),
    Column("updated_at", Float, nullable=False),
    # the delivery queue: due recipients in pending statuses
    Index("ix_recipients_due", "next_attempt_at"),
    Index("ix_recipients_account_status", "account_id", "status"),
    Index("ix_recipients_email_status", "email_id", "status"),
    # what each worker holds, so a dead worker's recipients are found without a scan
    Index("ix_recipients_lease_owner", "lease_owner", sqlite_where=text("lease_owner IS NOT NULL"),
          postgresql_where=text("lease_owner IS NOT NULL")),
)

events = Table(
    "events",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("recipient_id", ForeignKey("recipients.id"), nullable=False, index=True),
    Column("email_id", String(32), nullable=False, index=True),
    Column("account_id", Integer, nullable=False),
    Column("type", String(16), nullable=False),
    Column("at", Float, nullable=False),
    Column("reason", Text, nullable=True),
    Column("data_json", Text, nullable=True),
    Column("dedupe_key", String(200), nullable=True, unique=True),
    Index("ix_events_account_type_at", "account_id", "type", "at"),
)

suppressions = Table(
    "suppressions",
    metadata,
    Column("account_id", ForeignKey("accounts.id"), primary_key=True),
    Column("address", String(320), primary_key=True),
    Column("reason", Text, nullable=False),
    Column("source", String(16), nullable=False),
    Column("created_at", Float, nullable=False),
)

inbound_messages = Table(
    "inbound_messages",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("received_at", Float, nullable=False, index=True),
    Column("mail_from", String(998), nullable=False),
    Column("rcpt_to", Text, nullable=False),
    Column("raw", LargeBinary, nullable=False),
    Column("state", String(16), nullable=False),  # stored, applied, orphan, unparsed
    Column("kind", String(16), nullable=True),
    Column("recipient_id", String(32), nullable=True),
    Column("summary_json", Text, nullable=True),
)

# Delivery workers that are running (or died without saying so): the heartbeat keeps a row fresh and
# renews the leases of what that worker holds; a stale row's recipients are released at once.
workers = Table(
    "workers",
    metadata,
    Column("id", String(64), primary_key=True),  # the lease_owner its claims carry
    Column("host", String(255), nullable=False),
    Column("pid", Integer, nullable=False),
    Column("process_ns", String(128), nullable=True),  # boot id + pid namespace: where ``pid`` can be checked
    Column("started_at", Float, nullable=False),
    Column("heartbeat_at", Float, nullable=False),
)

# Destinations (recipient domains) an operator put on hold: nothing is claimed for them until released.
queue_holds = Table(
    "queue_holds",
    metadata,
    Column("destination", String(255), primary_key=True),
    Column("held_at", Float, nullable=False),
    Column("reason", Text, nullable=True),
)

# What purged rows counted, per UTC day: statistics over long periods survive the retention purge.
daily_rollups = Table(
    "daily_rollups",
    metadata,
    Column("day", String(10), primary_key=True),  # YYYY-MM-DD (UTC)
    Column("account_id", Integer, primary_key=True),
    Column("kind", String(8), primary_key=True),  # "event" (events by type) or "status" (recipients by status)
    Column("name", String(16), primary_key=True),
    Column("count", BigInteger, nullable=False),
)

# the retention purge walks emails oldest first
Index("ix_emails_created", emails.c.created_at)
