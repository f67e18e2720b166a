"""The single place where a recipient's status changes.

``record()`` appends the event, applies the transition table and updates the recipient row
in the caller's transaction. Recording the same report twice changes nothing: a repeated
``dedupe_key`` is a no-op, and a status that the table does not allow from the current one
(an out-of-order or stale report) is kept out of the row and reported as ``ignored``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from sqlalchemy import Connection, bindparam, insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from ..domain.status import STATUS_EVENTS, Status, can_transition
from .ids import now
from .schema import events, recipients


class Outcome(StrEnum):
    APPLIED = "applied"
    DUPLICATE = "duplicate"
    IGNORED = "ignored"
    MISSING = "missing"


@dataclass
class Change:
    """One status change or engagement event for one recipient."""

    recipient_id: str
    type: str  # a Status value or another EventType value
    reason: str | None = None
    data: dict[str, Any] | None = None
    dedupe_key: str | None = None
    at: float | None = None
    # extra recipient columns to set when a status change applies (e.g. next_attempt_at)
    fields: dict[str, Any] = field(default_factory=dict)


def _insert(conn: Connection) -> Any:
    return pg_insert if conn.dialect.name == "postgresql" else sqlite_insert


def _insert_event(conn: Connection, row: Any, ch: Change, at: float) -> bool:
    """Insert the event; False when its dedupe_key was already recorded."""
    values = {
        "recipient_id": ch.recipient_id,
        "email_id": row["email_id"],
        "account_id": row["account_id"],
        "type": ch.type,
        "at": at,
        "reason": ch.reason,
        "data_json": json.dumps(ch.data, separators=(",", ":")) if ch.data else None,
        "dedupe_key": ch.dedupe_key,
    }
    stmt = _insert(conn)(events).values(**values)
    if ch.dedupe_key is not None:
        stmt = stmt.on_conflict_do_nothing(index_elements=["dedupe_key"])
    # rowcount is -1 on PostgreSQL when the primary key is returned implicitly; ask for it instead
    return conn.execute(stmt.returning(events.c.id)).first() is not None


def record(conn: Connection, ch: Change, *, lock: bool = True) -> Outcome:
    """Record one change inside the caller's transaction."""
    q = select(recipients.c.status, recipients.c.email_id, recipients.c.account_id).where(
        recipients.c.id == ch.recipient_id
    )
    if lock and conn.dialect.name == "postgresql":
        q = q.with_for_update()
    row = conn.execute(q).mappings().first()
    if row is None:
        return Outcome.MISSING
    at = ch.at if ch.at is not None else now()
    if ch.type in STATUS_EVENTS:
        current = Status(row["status"])
        new = Status(ch.type)
        if not can_transition(current, new):
            return Outcome.IGNORED
        if not _insert_event(conn, row, ch, at):
            return Outcome.DUPLICATE
        values: dict[str, Any] = {"status": new.value, "updated_at": at, **ch.fields}
        if ch.reason is not None:
            values["reason"] = ch.reason
        conn.execute(update(recipients).where(recipients.c.id == ch.recipient_id).values(**values))
        return Outcome.APPLIED
    if not _insert_event(conn, row, ch, at):
        return Outcome.DUPLICATE
    if ch.fields:
        conn.execute(update(recipients).where(recipients.c.id == ch.recipient_id).values(**ch.fields))
    return Outcome.APPLIED


def record_many(conn: Connection, changes: list[Change]) -> list[Outcome]:
    return [record(conn, ch) for ch in changes]


def record_batch(conn: Connection, changes: list[Change]) -> list[Outcome]:
    """``record()`` for many status changes at once: the same rules, a few statements per batch.

    Status changes without a ``dedupe_key`` for distinct recipients are checked against one read of
    their rows and written with one multi-row INSERT of events and one executemany UPDATE per shape
    of values; anything else (engagement events, dedupe keys, a recipient twice) goes one by one.
    """
    out: list[Outcome | None] = [None] * len(changes)
    bulk: dict[str, int] = {}
    for i, ch in enumerate(changes):
        if ch.type in STATUS_EVENTS and ch.dedupe_key is None and ch.recipient_id not in bulk:
            bulk[ch.recipient_id] = i
    rows: dict[str, Any] = {}
    ids = sorted(bulk)
    for start in range(0, len(ids), 500):
        q = select(recipients.c.id, recipients.c.status, recipients.c.email_id, recipients.c.account_id).where(
            recipients.c.id.in_(ids[start:start + 500]))
        if conn.dialect.name == "postgresql":
            q = q.with_for_update()
        rows.update({r["id"]: r for r in conn.execute(q).mappings()})
    event_rows: list[dict[str, Any]] = []
    updates: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for rid, i in bulk.items():
        ch, row = changes[i], rows.get(rid)
        if row is None:
            out[i] = Outcome.MISSING
            continue
        if not can_transition(Status(row["status"]), Status(ch.type)):
            out[i] = Outcome.IGNORED
            continue
        at = ch.at if ch.at is not None else now()
        event_rows.append({
            "recipient_id": rid, "email_id": row["email_id"], "account_id": row["account_id"], "type": ch.type,
            "at": at, "reason": ch.reason, "dedupe_key": None,
            "data_json": json.dumps(ch.data, separators=(",", ":")) if ch.data else None,
        })
        values: dict[str, Any] = {"status": ch.type, "updated_at": at, **ch.fields}
        if ch.reason is not None:
            values["reason"] = ch.reason
        updates.setdefault(tuple(sorted(values)), []).append({"b_id": rid, **{f"b_{k}": v for k, v in values.items()}})
        out[i] = Outcome.APPLIED
    if event_rows:
        conn.execute(insert(events), event_rows)
    for keys, params in updates.items():
        stmt = update(recipients).where(recipients.c.id == bindparam("b_id")).values(
            {k: bindparam(f"b_{k}") for k in keys})
        conn.execute(stmt, params)
    for i, ch in enumerate(changes):
        if out[i] is None:
            out[i] = record(conn, ch)
    return [o for o in out if o is not None]
