"""Raw inbound reports (bounces, complaints, auto-replies): stored first, then marked with what became of them.

States::

    stored ──▶ applied    correlated to a recipient and recorded (or nothing to record)
           ├─▶ orphan     understood, but no recipient of ours could be found
           └─▶ unparsed   not recognised (or it broke the parser); kept for a person to look at
"""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import Connection, delete, func, insert, select, update

from .ids import now
from .schema import inbound_messages, recipients

STATES = ("stored", "applied", "orphan", "unparsed")


def save(conn: Connection, mail_from: str, rcpt_tos: list[str], raw: bytes, received_at: float | None = None) -> int:
    """Keep one received message in state "stored"; returns its id."""
    row = conn.execute(
        insert(inbound_messages)
        .values(received_at=received_at if received_at is not None else now(), mail_from=mail_from[:998],
                rcpt_to=json.dumps(rcpt_tos), raw=raw, state="stored")
        .returning(inbound_messages.c.id)
    ).first()
    assert row is not None
    return int(row[0])


def get(conn: Connection, message_id: int) -> dict[str, Any] | None:
    """One message with its raw bytes and envelope (``rcpt_to`` decoded to a list)."""
    row = conn.execute(select(inbound_messages).where(inbound_messages.c.id == message_id)).mappings().first()
    if row is None:
        return None
    out = dict(row)
    out["rcpt_to"] = json.loads(out["rcpt_to"])
    out["raw"] = bytes(out["raw"])
    return out


def mark(
    conn: Connection, message_id: int, state: str, *, kind: str | None = None,
    recipient_id: str | None = None, summary: dict[str, Any] | None = None,
) -> None:
    """Record what processing made of a stored message."""
    if state not in STATES:
        raise ValueError(f"unknown inbound state {state!r}")
    conn.execute(
        update(inbound_messages).where(inbound_messages.c.id == message_id).values(
            state=state, kind=kind, recipient_id=recipient_id,
            summary_json=json.dumps(summary, separators=(",", ":"), default=str) if summary is not None else None,
        )
    )


def pending(conn: Connection, received_before: float | None = None, limit: int = 1000) -> list[int]:
    """Ids of messages still in state "stored" (not yet processed, e.g. after a crash), oldest first."""
    q = select(inbound_messages.c.id).where(inbound_messages.c.state == "stored")
    if received_before is not None:
        q = q.where(inbound_messages.c.received_at < received_before)
    return [int(i) for i in conn.execute(q.order_by(inbound_messages.c.id).limit(limit)).scalars()]


def purge(conn: Connection, older_than: float) -> int:
    """Delete messages received before ``older_than``; returns how many."""
    res = conn.execute(delete(inbound_messages).where(inbound_messages.c.received_at < older_than))
    return int(res.rowcount or 0)


def _view(row: Any) -> dict[str, Any]:
    return {
        "id": int(row["id"]), "received_at": row["received_at"], "mail_from": row["mail_from"],
        "rcpt_to": json.loads(row["rcpt_to"]), "state": row["state"], "kind": row["kind"],
        "recipient_id": row["recipient_id"],
        "summary": json.loads(row["summary_json"]) if row["summary_json"] else None,
    }


_LISTED = [c for c in inbound_messages.c if c.name != "raw"]


def search(
    conn: Connection, *, state: str | None = None, account_id: int | None = None, limit: int = 100, offset: int = 0,
) -> tuple[list[dict[str, Any]], int]:
    """Messages newest first, without the raw bytes, and the total matching.

    With ``account_id`` only messages correlated to that account's recipients are listed: orphans
    belong to nobody, so only an unscoped (operator) query shows them.
    """
    cond: list[Any] = []
    if state is not None:
        cond.append(inbound_messages.c.state == state)
    if account_id is not None:
        cond.append(inbound_messages.c.recipient_id.in_(
            select(recipients.c.id).where(recipients.c.account_id == account_id)
        ))
    total = conn.execute(select(func.count()).select_from(inbound_messages).where(*cond)).scalar_one()
    rows = conn.execute(
        select(*_LISTED).where(*cond).order_by(inbound_messages.c.id.desc()).limit(limit).offset(offset)
    ).mappings()
    return [_view(r) for r in rows], int(total)


def lock_state(conn: Connection, message_id: int) -> str | None:
    """The message's state, locked for this write transaction (PostgreSQL; SQLite writes are serial)."""
    q = select(inbound_messages.c.state).where(inbound_messages.c.id == message_id)
    if conn.dialect.name == "postgresql":
        q = q.with_for_update()
    found = conn.execute(q).scalar()
    return None if found is None else str(found)


_RCPT_COLS = (recipients.c.id, recipients.c.email_id, recipients.c.account_id, recipients.c.address,
              recipients.c.status)


def recipient(conn: Connection, recipient_id: str) -> dict[str, Any] | None:
    """The few recipient columns correlation needs, or None."""
    row = conn.execute(select(*_RCPT_COLS).where(recipients.c.id == recipient_id)).mappings().first()
    return None if row is None else dict(row)


def recipients_of(conn: Connection, email_id: str) -> list[dict[str, Any]]:
    rows = conn.execute(select(*_RCPT_COLS).where(recipients.c.email_id == email_id).order_by(recipients.c.id))
    return [dict(r) for r in rows.mappings()]


def raw_of(conn: Connection, message_id: int) -> bytes | None:
    found = conn.execute(select(inbound_messages.c.raw).where(inbound_messages.c.id == message_id)).scalar()
    return None if found is None else bytes(found)
