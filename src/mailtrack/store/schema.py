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
    Column("expires_at", Float, nullable=True),  # None = never
    Column("revoked_at", Float, nullable=True),
    Column("last_used_at", Float, nullable=True),  # written at most once a minute per key
)

users = Table(
    "users",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("account_id", ForeignKey("accounts.id"), nullable=False),
    Column("email", String(320), nullable=False, unique=True),
    Column("password_hash", String(200), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("time_zone", String(64), nullable=True),  # IANA name chosen in Settings; None: the browser's
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
    Column("unsubscribe", Boolean, nullable=True),  # List-Unsubscribe; None = default for the source type
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
    # the number of the recipient's last webhook event (the payload's ``sequence``)
    Column("event_seq", Integer, nullable=False, default=0, server_default="0"),
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

# -- webhooks --------------------------------------------------------------------------------------
# The status-change core writes one outbox row per event in the event's own transaction; the
# dispatcher fans each row out to the account's endpoints (one delivery per endpoint) and sends.

webhook_outbox = Table(
    "webhook_outbox",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("account_id", Integer, nullable=False),
    Column("recipient_id", String(32), nullable=False),
    Column("email_id", String(32), nullable=False),
    Column("type", String(16), nullable=False),
    Column("at", Float, nullable=False),
    Column("seq", Integer, nullable=False),
    Column("status", String(16), nullable=False),  # the recipient's status once this event happened
    Column("reason", Text, nullable=True),
    Column("data_json", Text, nullable=True),
    Column("fanned", Boolean, nullable=False, default=False),
    # only the rows not fanned out yet: a small index, whatever the outbox's size
    Index("ix_webhook_outbox_pending", "id", sqlite_where=text("fanned = 0"), postgresql_where=text("NOT fanned")),
)

webhook_endpoints = Table(
    "webhook_endpoints",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("account_id", ForeignKey("accounts.id"), nullable=False, index=True),
    Column("url", Text, nullable=False),
    Column("description", Text, nullable=False),
    Column("events_json", Text, nullable=False),
    Column("batch", Boolean, nullable=False, default=False),
    Column("secret", String(100), nullable=False),
    Column("old_secret", String(100), nullable=True),
    Column("old_secret_until", Float, nullable=True),
    Column("enabled", Boolean, nullable=False, default=True),
    Column("disabled_reason", Text, nullable=True),
    Column("failing_since", Float, nullable=True),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    # deliveries that went through: their queue rows are deleted then (migration 0006)
    Column("delivered", BigInteger, nullable=False, default=0, server_default="0"),
)

webhook_deliveries = Table(
    "webhook_deliveries",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    # no foreign key: its per-row check cost a third of the fan-out on PostgreSQL (migration 0005)
    Column("endpoint_id", String(32), nullable=False),
    Column("outbox_id", BigInteger, nullable=False),
    # the queue: pending, and failed (given up); a delivery that went through is deleted and
    # counted on its endpoint, its POST kept in webhook_attempts
    Column("state", String(16), nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt_at", Float, nullable=True),
    Column("lease_owner", String(64), nullable=True),
    Column("created_at", Float, nullable=False),
    Column("done_at", Float, nullable=True),
    Index("ix_webhook_deliveries_due", "next_attempt_at"),
    Index("ix_webhook_deliveries_endpoint", "endpoint_id", "id"),
)

webhook_attempts = Table(
    "webhook_attempts",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("endpoint_id", String(32), nullable=False),  # no foreign key, as for deliveries
    Column("delivery_ids", Text, nullable=False),  # JSON list: a batch POST carries several deliveries
    Column("at", Float, nullable=False),
    Column("status_code", Integer, nullable=True),
    Column("latency_ms", Integer, nullable=False),
    Column("response", Text, nullable=True),  # the first KB of the body
    Column("error", Text, nullable=True),
    Index("ix_webhook_attempts_endpoint", "endpoint_id", "id"),
)

# Web sign-in sessions: the cookie holds a random token, the table its SHA-256 (revocable server-side).
web_sessions = Table(
    "web_sessions",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("user_id", ForeignKey("users.id"), nullable=False, index=True),
    Column("created_at", Float, nullable=False),
    Column("expires_at", Float, nullable=False, index=True),
)

# Idempotency-Key header (IETF draft): one row per (account, endpoint, key), with the request's fingerprint.
idempotency_keys = Table(
    "idempotency_keys",
    metadata,
    Column("account_id", ForeignKey("accounts.id"), primary_key=True),
    Column("endpoint", String(64), primary_key=True),
    Column("key", String(255), primary_key=True),
    Column("fingerprint", String(64), nullable=False),
    Column("email_ids", Text, nullable=False),  # JSON list, in request order
    Column("created_at", Float, nullable=False, index=True),
)

sending_domains = Table(
    "sending_domains",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("account_id", ForeignKey("accounts.id"), nullable=False, index=True),
    Column("domain", String(253), nullable=False, unique=True),  # lower-case, IDNA (A-labels)
    Column("return_path", String(253), nullable=True),  # aligned VERP host, e.g. bounces.acme.example
    Column("checks_json", Text, nullable=True),  # the last DNS check: record → status, detail
    Column("checked_at", Float, nullable=True),
    Column("created_at", Float, nullable=False),
)

dkim_keys = Table(
    "dkim_keys",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("domain_id", ForeignKey("sending_domains.id"), nullable=False, index=True),
    Column("selector", String(63), nullable=False),
    Column("private_key", Text, nullable=False),  # encrypted with a key derived from SECRET_KEY
    Column("public_key", Text, nullable=False),  # base64 SubjectPublicKeyInfo, the p= of the record
    Column("state", String(16), nullable=False),  # pending, active, retiring
    Column("created_at", Float, nullable=False),
    Column("activated_at", Float, nullable=True),
    Column("retire_at", Float, nullable=True),
    UniqueConstraint("domain_id", "selector", name="uq_dkim_keys_domain_selector"),
)

provider_pauses = Table(
    "provider_pauses",
    metadata,
    Column("grp", String(255), primary_key=True),  # google, microsoft, … or a destination's MX host
    Column("paused_until", Float, nullable=False),
    Column("reason", Text, nullable=False),
    Column("updated_at", Float, nullable=False),
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
