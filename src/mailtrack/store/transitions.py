"""The status-change core: the one place where a recipient's status changes and events are recorded.

``record_batch()`` takes changes for any recipients (a batch of one is still a batch) and, in the
caller's transaction: checks each status change against the transition table, appends its event,
updates the recipient row, and hands what was recorded to ``effects.apply`` (suppression, webhook
outbox). Submission goes through it too, with the new recipient rows it is about to insert.

Recording the same report twice changes nothing: a repeated ``dedupe_key`` is a no-op, and a status
that the table does not allow from the current one (an out-of-order or stale report) is kept out of
the row and reported as ``ignored``::

    change ─▶ recipient known? ──no──▶ missing
                 │ yes
                 ▼
            status allowed? ──no──▶ ignored        (engagement events skip this check)
                 │ yes
                 ▼
            dedupe key new? ──no──▶ duplicate
                 │ yes
                 ▼
            event row + recipient row + effects ──▶ applied
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from sqlalchemy import Connection, bindparam, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from ..domain.status import STATUS_EVENTS, Status, can_transition
from . import effects
from .chunked import insert_rows
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
    # False keeps the address off the suppression list although the effects table would add it
    # (SUPPRESS_HARD_BOUNCES=false)
    suppress: bool = True


@dataclass(slots=True)
class _State:
    """A recipient as this batch sees it: read once, changed in memory, written once."""

    status: str | None
    email_id: str
    account_id: int
    address: str
    seq: int
    new: bool
    values: dict[str, Any]


def _insert(conn: Connection) -> Any:
    return pg_insert if conn.dialect.name == "postgresql" else sqlite_insert


def _load(conn: Connection, ids: list[str], lock: bool) -> dict[str, _State]:
    out: dict[str, _State] = {}
    cols = (recipients.c.id, recipients.c.status, recipients.c.email_id, recipients.c.account_id,
            recipients.c.address, recipients.c.event_seq)
    for start in range(0, len(ids), 500):
        # sorted ids: concurrent writers on PostgreSQL lock rows in one order
        q = select(*cols).where(recipients.c.id.in_(ids[start:start + 500])).order_by(recipients.c.id)
        if lock and conn.dialect.name == "postgresql":
            q = q.with_for_update()
        for r in conn.execute(q):
            out[r.id] = _State(r.status, r.email_id, int(r.account_id), r.address, int(r.event_seq or 0), False, {})
    return out


def _insert_deduped(conn: Connection, row: dict[str, Any]) -> bool:
    """Insert one event with a dedupe key; False when that key was already recorded."""
    stmt = _insert(conn)(events).values(**row).on_conflict_do_nothing(index_elements=["dedupe_key"])
    # rowcount is -1 on PostgreSQL when the primary key is returned implicitly; ask for it instead
    return conn.execute(stmt.returning(events.c.id)).first() is not None


def record(conn: Connection, ch: Change, *, lock: bool = True) -> Outcome:
    """Record one change inside the caller's transaction."""
    return record_batch(conn, [ch], lock=lock)[0]


def record_many(conn: Connection, changes: list[Change]) -> list[Outcome]:
    return record_batch(conn, changes)


def record_batch(
    conn: Connection, changes: Sequence[Change], *, new_rows: Sequence[dict[str, Any]] = (), lock: bool = True,
) -> list[Outcome]:
    """Record changes in order, in the caller's transaction; one outcome per change.

    ``new_rows`` are recipient rows not inserted yet (submission): they start with no status, and
    are inserted with the status their changes leave them in.
    """
    fresh = {r["id"] for r in new_rows}
    states = _load(conn, sorted({ch.recipient_id for ch in changes} - fresh), lock)
    for r in new_rows:
        states[r["id"]] = _State(None, r["email_id"], int(r["account_id"]), r["address"], 0, True, dict(r))
    out: list[Outcome] = []
    pending: list[dict[str, Any]] = []
    recorded: list[effects.Recorded] = []
    for ch in changes:
        st = states.get(ch.recipient_id)
        if st is None:
            out.append(Outcome.MISSING)
            continue
        is_status = ch.type in STATUS_EVENTS
        if is_status and not can_transition(Status(st.status) if st.status else None, Status(ch.type)):
            out.append(Outcome.IGNORED)
            continue
        at = ch.at if ch.at is not None else now()
        data_json = json.dumps(ch.data, separators=(",", ":")) if ch.data else None
        row = {"recipient_id": ch.recipient_id, "email_id": st.email_id, "account_id": st.account_id,
               "type": ch.type, "at": at, "reason": ch.reason, "data_json": data_json, "dedupe_key": ch.dedupe_key}
        if ch.dedupe_key is None:
            pending.append(row)
        else:
            _flush(conn, pending)  # keep the events in the order they happened
            if not _insert_deduped(conn, row):
                out.append(Outcome.DUPLICATE)
                continue
        if is_status:
            st.status = ch.type
            st.values.update(status=ch.type, updated_at=at)
            if ch.reason is not None:
                st.values["reason"] = ch.reason
        st.values.update(ch.fields)
        if effects.counts_for_webhook(ch.type):
            st.seq += 1
            st.values["event_seq"] = st.seq
        recorded.append(effects.Recorded(
            st.account_id, st.email_id, ch.recipient_id, st.address, ch.type, at, st.seq, st.status or ch.type,
            ch.reason, data_json, ch.suppress))
        out.append(Outcome.APPLIED)
    _write_recipients(conn, states)
    _flush(conn, pending)
    effects.apply(conn, recorded)
    return out


def _flush(conn: Connection, pending: list[dict[str, Any]]) -> None:
    if pending:
        insert_rows(conn, events, pending)
        pending.clear()


def _write_recipients(conn: Connection, states: dict[str, _State]) -> None:
    """New rows in one INSERT; changed rows with one executemany UPDATE per shape of values."""
    insert_rows(conn, recipients, [st.values for st in states.values() if st.new])
    updates: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for rid, st in states.items():
        if st.new or not st.values:
            continue
        updates.setdefault(tuple(sorted(st.values)), []).append(
            {"b_id": rid, **{f"b_{k}": v for k, v in st.values.items()}})
    for keys, params in updates.items():
        stmt = update(recipients).where(recipients.c.id == bindparam("b_id")).values(
            {k: bindparam(f"b_{k}") for k in keys})
        conn.execute(stmt, params)
