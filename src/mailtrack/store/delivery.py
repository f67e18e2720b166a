"""The delivery queue: claim due recipients under a lease, then record what happened to them.

A claim sets ``lease_owner``/``lease_until`` and moves ``next_attempt_at`` to the lease's end, so a
claimed recipient drops out of the due range of the ``ix_recipients_due`` index and comes back by
itself when the worker that holds it dies. On PostgreSQL the claim is ``FOR UPDATE SKIP LOCKED``,
so any number of workers share the queue; on SQLite the store's single writer is enough.

``finish`` records a batch of outcomes in one transaction through the status-change core
(``transitions.record_batch``: event, row, suppression, webhook outbox), and clears the lease.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, func, select, update

from ..domain.status import Status
from . import suppressions
from .schema import attachments, emails, queue_holds, recipients
from .transitions import Change, Outcome, record_batch

_DUE = (Status.SPOOLED.value, Status.DEFERRED.value)


@dataclass(frozen=True)
class Claimed:
    """One recipient a worker now holds."""

    id: str
    email_id: str
    account_id: int
    address: str
    domain: str
    attempts: int
    first_attempt_at: float | None


@dataclass
class Finished:
    """The outcome of one delivery attempt (or of a check before it)."""

    recipient_id: str
    status: Status
    reason: str | None = None
    last_reply: str | None = None
    next_attempt_at: float | None = None  # for deferred
    attempts: int | None = None  # the new count when this was an attempt
    first_attempt_at: float | None = None
    data: dict[str, Any] | None = None
    # set (account id, address, reason) for a hard bounce to be suppressed; None when the site does not
    suppress: tuple[int, str, str] | None = None
    at: float | None = None


@dataclass
class ClaimResult:
    recipients: list[Claimed] = field(default_factory=list)
    rejected: int = 0  # suppressed after submission: recorded as rejected, not handed out


def claim(conn: Connection, owner: str, now: float, lease: float, limit: int,
          skip_domains: Collection[str] = ()) -> ClaimResult:
    """Lease up to ``limit`` due recipients to ``owner``; suppressed ones are rejected on the spot.

    ``skip_domains``: destinations the worker has enough of in flight (retries to a slow destination
    must not take every slot from fresh mail to the others).
    """
    due = (
        select(recipients.c.id)
        .where(recipients.c.next_attempt_at <= now, recipients.c.status.in_(_DUE),
               recipients.c.domain.not_in(select(queue_holds.c.destination)))  # an operator's hold
        .order_by(recipients.c.next_attempt_at)
        .limit(limit)
    )
    if skip_domains:
        due = due.where(recipients.c.domain.not_in(sorted(skip_domains)))
    if conn.dialect.name == "postgresql":
        due = due.with_for_update(skip_locked=True)
    until = now + lease
    stmt = (
        update(recipients)
        .where(recipients.c.id.in_(due.scalar_subquery()))
        .values(lease_owner=owner, lease_until=until, next_attempt_at=until)
        .returning(recipients.c.id, recipients.c.email_id, recipients.c.account_id, recipients.c.address,
                   recipients.c.domain, recipients.c.attempts, recipients.c.first_attempt_at)
    )
    rows = [Claimed(r.id, r.email_id, int(r.account_id), r.address, r.domain, int(r.attempts or 0),
                    r.first_attempt_at) for r in conn.execute(stmt)]
    out = ClaimResult()
    by_account: dict[int, set[str]] = defaultdict(set)
    for r in rows:
        by_account[r.account_id].add(r.address.lower())
    blocked: dict[int, dict[str, str]] = {
        acct: found for acct, addrs in by_account.items() if (found := suppressions.suppressed_among(conn, acct, addrs))
    }
    for r in rows:
        reason = blocked.get(r.account_id, {}).get(r.address.lower())
        if reason is None:
            out.recipients.append(r)
            continue
        _apply(conn, owner, Finished(r.id, Status.REJECTED, reason=f"on the suppression list: {reason}", at=now))
        out.rejected += 1
    return out


def load_emails(conn: Connection, ids: set[str]) -> dict[str, tuple[dict[str, Any], list[tuple[str, str, bytes]]]]:
    """email id → (email row, attachments as (filename, content type, bytes))."""
    if not ids:
        return {}
    wanted = sorted(ids)
    out: dict[str, tuple[dict[str, Any], list[tuple[str, str, bytes]]]] = {
        e["id"]: (dict(e), []) for e in conn.execute(select(emails).where(emails.c.id.in_(wanted))).mappings()
    }
    att = select(attachments.c.email_id, attachments.c.filename, attachments.c.content_type, attachments.c.content)
    for a in conn.execute(att.where(attachments.c.email_id.in_(wanted)).order_by(attachments.c.id)):
        out[a.email_id][1].append((a.filename, a.content_type, bytes(a.content)))
    return out


def _change(f: Finished) -> Change:
    fields: dict[str, Any] = {"lease_owner": None, "lease_until": None,
                              "next_attempt_at": f.next_attempt_at if f.status is Status.DEFERRED else None}
    if f.last_reply is not None:
        fields["last_reply"] = f.last_reply
    if f.attempts is not None:
        fields["attempts"] = f.attempts
    if f.first_attempt_at is not None:
        fields["first_attempt_at"] = f.first_attempt_at
    if f.reason is None:
        fields["reason"] = None  # a success clears the reason an earlier deferral left
    # the core's effects table suppresses a hard bounce; ``suppress`` is None when the site switched that off
    return Change(f.recipient_id, f.status.value, reason=f.reason, data=f.data, at=f.at, fields=fields,
                  suppress=f.suppress is not None)


def _apply(conn: Connection, owner: str, f: Finished) -> Outcome:
    return finish(conn, owner, [f])[0]


def finish(conn: Connection, owner: str, results: list[Finished]) -> list[Outcome]:
    """Record a batch of outcomes in the caller's transaction (each status change with its event and effects)."""
    outcomes = record_batch(conn, [_change(f) for f in results])
    let_go = [f.recipient_id for f, o in zip(results, outcomes, strict=True) if o is not Outcome.APPLIED]
    if let_go:
        # The status moved on without us (another worker, a report, a suppression): just let go.
        conn.execute(update(recipients).where(recipients.c.id.in_(let_go), recipients.c.lease_owner == owner)
                     .values(lease_owner=None, lease_until=None))
    return outcomes


def extend(conn: Connection, owner: str, ids: list[str], until: float) -> int:
    """Renew the lease on recipients a live worker still holds (a heartbeat), so only a dead one's expire."""
    n = 0
    for start in range(0, len(ids), 500):
        res = conn.execute(
            update(recipients)
            .where(recipients.c.id.in_(ids[start:start + 500]), recipients.c.lease_owner == owner,
                   recipients.c.status.in_(_DUE))
            .values(lease_until=until, next_attempt_at=until)
        )
        n += int(res.rowcount or 0)
    return n


def release(conn: Connection, owner: str, ids: list[str], now: float) -> int:
    """Give back recipients that were claimed but not attempted (a worker stopping), due now."""
    if not ids:
        return 0
    res = conn.execute(
        update(recipients)
        .where(recipients.c.id.in_(ids), recipients.c.lease_owner == owner, recipients.c.status.in_(_DUE))
        .values(lease_owner=None, lease_until=None, next_attempt_at=now)
    )
    return int(res.rowcount or 0)


def pending_count(conn: Connection) -> int:
    """Recipients still waiting for delivery (spooled or deferred)."""
    return int(conn.execute(select(func.count()).select_from(recipients).where(recipients.c.status.in_(_DUE)))
               .scalar_one())


def account_named(conn: Connection, name: str) -> int | None:
    """The id of the account called ``name`` (for the command line), else None."""
    from .schema import accounts

    found = conn.execute(select(accounts.c.id).where(accounts.c.name == name)).scalar()
    return None if found is None else int(found)


def account_of_email(conn: Connection, email_id: str) -> int | None:
    """The account an email belongs to (for the command line, which has no API key), else None."""
    found = conn.execute(select(emails.c.account_id).where(emails.c.id == email_id)).scalar()
    return None if found is None else int(found)
