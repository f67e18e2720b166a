"""The delivery queue seen and steered by an operator: counts, holds, retry now, drop.

A recipient is in the queue while it is ``spooled`` or ``deferred``; its state here is

    in_flight  a worker holds it (leased) — left alone by retry and drop
    held       its destination is on hold — not claimed until released
    spooled    waiting for its first attempt
    deferred   waiting for its next retry

Dropping ends a recipient as ``soft_bounce`` "removed by operator", recorded like every other
status change (with its event).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, Connection, and_, case, delete, func, insert, select, update

from ..domain.status import Status
from .schema import emails, queue_holds, recipients
from .transitions import Change, Outcome, record_batch

_DUE = (Status.SPOOLED.value, Status.DEFERRED.value)
DROP_REASON = "removed by operator"
STATES = ("spooled", "deferred", "held", "in_flight")


@dataclass(frozen=True)
class QueueRow:
    """Recipients of one destination in one state."""

    destination: str
    state: str
    count: int
    oldest_age: float  # seconds since the oldest one's email was submitted


@dataclass(frozen=True)
class Selection:
    """Which queued recipients an operation applies to: one recipient, one destination, or all."""

    recipient_id: str | None = None
    destination: str | None = None
    all: bool = False

    def __post_init__(self) -> None:
        if sum((self.recipient_id is not None, self.destination is not None, self.all)) != 1:
            raise ValueError("name exactly one of: a recipient id, a destination, all")

    def where(self) -> ColumnElement[bool]:
        queued = and_(recipients.c.next_attempt_at.is_not(None), recipients.c.status.in_(_DUE))
        if self.recipient_id is not None:
            return and_(queued, recipients.c.id == self.recipient_id)
        if self.destination is not None:
            return and_(queued, recipients.c.domain == self.destination.strip().lower())
        return queued


def _state() -> ColumnElement[Any]:
    held = recipients.c.domain.in_(select(queue_holds.c.destination))
    return case((recipients.c.lease_owner.is_not(None), "in_flight"), (held, "held"), else_=recipients.c.status)


def summary(conn: Connection, now: float, destination: str | None = None) -> list[QueueRow]:
    """Counts by destination and state, with the oldest age; biggest first."""
    state = _state().label("state")
    q = (select(recipients.c.domain, state, func.count().label("n"), func.min(emails.c.created_at).label("oldest"))
         .join(emails, emails.c.id == recipients.c.email_id)
         .where(Selection(destination=destination).where() if destination else Selection(all=True).where())
         .group_by(recipients.c.domain, state))
    rows = [QueueRow(r.domain, r.state, int(r.n), max(0.0, now - float(r.oldest))) for r in conn.execute(q)]
    return sorted(rows, key=lambda r: (-r.count, r.destination, r.state))


def totals(conn: Connection, now: float) -> tuple[dict[str, int], float]:
    """Recipients per state over all destinations, and the oldest age (0 when the queue is empty)."""
    state = _state().label("state")
    q = (select(state, func.count().label("n"), func.min(emails.c.created_at).label("oldest"))
         .join(emails, emails.c.id == recipients.c.email_id)
         .where(Selection(all=True).where()).group_by(state))
    counts = dict.fromkeys(STATES, 0)
    oldest = None
    for r in conn.execute(q):
        counts[str(r.state)] = int(r.n)
        if r.oldest is not None and (oldest is None or r.oldest < oldest):
            oldest = float(r.oldest)
    return counts, (max(0.0, now - oldest) if oldest is not None else 0.0)


def holds(conn: Connection) -> list[tuple[str, float, str | None]]:
    """(destination, held since, reason) for every hold."""
    q = select(queue_holds.c.destination, queue_holds.c.held_at, queue_holds.c.reason)
    q = q.order_by(queue_holds.c.destination)
    return [(r.destination, float(r.held_at), r.reason) for r in conn.execute(q)]


def hold(conn: Connection, destination: str, now: float, reason: str | None = None) -> bool:
    """Put a destination on hold; False when it already was."""
    dest = destination.strip().lower()
    if conn.execute(select(queue_holds.c.destination).where(queue_holds.c.destination == dest)).first():
        return False
    conn.execute(insert(queue_holds).values(destination=dest, held_at=now, reason=reason))
    return True


def release(conn: Connection, destination: str, now: float) -> int | None:
    """Lift a hold; what waited for it is due at once. None when the destination was not held."""
    dest = destination.strip().lower()
    if not conn.execute(delete(queue_holds).where(queue_holds.c.destination == dest)).rowcount:
        return None
    return retry(conn, Selection(destination=dest), now)


def retry(conn: Connection, sel: Selection, now: float) -> int:
    """Make the selected queued recipients due now (those in flight are left to their worker)."""
    res = conn.execute(update(recipients).where(sel.where(), recipients.c.lease_owner.is_(None))
                       .values(next_attempt_at=now))
    return int(res.rowcount or 0)


def drop(conn: Connection, sel: Selection, now: float) -> tuple[int, int]:
    """End the selected queued recipients as soft bounces; returns (dropped, left in flight)."""
    q = select(recipients.c.id).where(sel.where(), recipients.c.lease_owner.is_(None))
    if conn.dialect.name == "postgresql":
        q = q.with_for_update(skip_locked=True)  # a worker's claim skips them in turn: never sent and dropped
    ids = list(conn.execute(q).scalars())
    busy = int(conn.execute(select(func.count()).select_from(recipients)
                            .where(sel.where(), recipients.c.lease_owner.is_not(None))).scalar_one())
    dropped = 0
    for start in range(0, len(ids), 500):
        changes = [Change(rid, Status.SOFT_BOUNCE.value, reason=DROP_REASON, at=now,
                          data={"by": "operator"}, fields={"next_attempt_at": None})
                   for rid in ids[start:start + 500]]
        dropped += sum(o is Outcome.APPLIED for o in record_batch(conn, changes))
    return dropped, busy
