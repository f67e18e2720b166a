"""The retention purge: emails older than the retention go, with their recipients, events (opens
and clicks included), links, attachments and webhook outbox rows — a small chunk per transaction, so no lock is held
for long. What the purged rows counted is added to ``daily_rollups`` first, in the same
transaction, so statistics over long periods stay the same after a purge.

An email whose recipients are still queued (spooled, deferred, creating) is never purged.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, delete, exists, func, select, text
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from ..domain.status import Status
from .db import Store
from .schema import (
    attachments,
    daily_rollups,
    emails,
    events,
    links,
    recipients,
    webhook_deliveries,
    webhook_outbox,
)

CHUNK = 200  # emails per transaction
_OPEN = (Status.CREATING.value, Status.SPOOLED.value, Status.DEFERRED.value)
_PURGE_LOCK = 0x6D747270  # PostgreSQL advisory lock: one purge at a time across processes


@dataclass
class Purged:
    emails: int = 0
    recipients: int = 0
    events: int = 0
    seconds: float = 0.0


def day_of(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d")


def _candidates(conn: Connection, cutoff: float, limit: int) -> list[str]:
    still_queued = exists().where(recipients.c.email_id == emails.c.id, recipients.c.status.in_(_OPEN))
    q = (select(emails.c.id).where(emails.c.created_at < cutoff, ~still_queued)
         .order_by(emails.c.created_at).limit(limit))
    return list(conn.execute(q).scalars())


def count(conn: Connection, cutoff: float) -> Purged:
    """What a purge with this cutoff would remove (the dry run)."""
    still_queued = exists().where(recipients.c.email_id == emails.c.id, recipients.c.status.in_(_OPEN))
    old = select(emails.c.id).where(emails.c.created_at < cutoff, ~still_queued).scalar_subquery()
    n_e = conn.execute(select(func.count()).select_from(emails).where(emails.c.id.in_(old))).scalar_one()
    n_r = conn.execute(select(func.count()).select_from(recipients).where(recipients.c.email_id.in_(old))).scalar_one()
    n_v = conn.execute(select(func.count()).select_from(events).where(events.c.email_id.in_(old))).scalar_one()
    return Purged(int(n_e), int(n_r), int(n_v))


def _roll_up(conn: Connection, rows: Counter[tuple[str, int, str, str]]) -> None:
    if not rows:
        return
    ins = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
    values = [{"day": d, "account_id": a, "kind": k, "name": n, "count": c} for (d, a, k, n), c in rows.items()]
    stmt = ins(daily_rollups)
    stmt = stmt.on_conflict_do_update(index_elements=["day", "account_id", "kind", "name"],
                                      set_={"count": daily_rollups.c.count + stmt.excluded["count"]})
    conn.execute(stmt, values)


def purge_chunk(conn: Connection, cutoff: float, limit: int = CHUNK) -> Purged:
    """Purge up to ``limit`` of the oldest emails created before ``cutoff`` (one transaction: the caller's)."""
    ids = _candidates(conn, cutoff, limit)
    if not ids:
        return Purged()
    roll: Counter[tuple[str, int, str, str]] = Counter()
    for at, acct, typ in conn.execute(select(events.c.at, events.c.account_id, events.c.type)
                                      .where(events.c.email_id.in_(ids))):
        roll[(day_of(at), int(acct), "event", typ)] += 1
    n_rcpt = 0
    for at, acct, status in conn.execute(select(recipients.c.updated_at, recipients.c.account_id, recipients.c.status)
                                         .where(recipients.c.email_id.in_(ids))):
        roll[(day_of(at), int(acct), "status", status)] += 1
        n_rcpt += 1
    _roll_up(conn, roll)
    n_ev = conn.execute(delete(events).where(events.c.email_id.in_(ids))).rowcount or 0
    conn.execute(delete(recipients).where(recipients.c.email_id.in_(ids)))
    conn.execute(delete(links).where(links.c.email_id.in_(ids)))
    # their webhook events: delivered or given up long ago (retries stop after WEBHOOK_MAX_AGE)
    conn.execute(delete(webhook_deliveries).where(webhook_deliveries.c.outbox_id.in_(
        select(webhook_outbox.c.id).where(webhook_outbox.c.email_id.in_(ids)))))
    conn.execute(delete(webhook_outbox).where(webhook_outbox.c.email_id.in_(ids)))
    conn.execute(delete(attachments).where(attachments.c.email_id.in_(ids)))
    conn.execute(delete(emails).where(emails.c.id.in_(ids)))
    return Purged(len(ids), n_rcpt, int(n_ev))


def purge(store: Store, cutoff: float, *, chunk: int = CHUNK, pause: float = 0.05,
          should_stop: Callable[[], bool] = lambda: False) -> Purged:
    """Purge everything older than ``cutoff``, chunk by chunk, pausing between chunks for the others."""
    total = Purged()
    t0 = time.monotonic()
    while not should_stop():
        with store.write() as conn:
            if conn.dialect.name == "postgresql" and not conn.execute(
                    text("SELECT pg_try_advisory_xact_lock(:k)"), {"k": _PURGE_LOCK}).scalar():
                break  # another process is purging
            got = purge_chunk(conn, cutoff, chunk)
        if not got.emails:
            break
        total.emails += got.emails
        total.recipients += got.recipients
        total.events += got.events
        time.sleep(pause)
    total.seconds = time.monotonic() - t0
    return total


def rollup_counts(conn: Connection, account_id: int, since: float | None) -> tuple[dict[str, int], dict[str, int]]:
    """(recipients by status, events by type) that purges rolled up, from the day of ``since`` on."""
    q = select(daily_rollups.c.kind, daily_rollups.c.name, func.sum(daily_rollups.c.count)).where(
        daily_rollups.c.account_id == account_id)
    if since is not None:
        q = q.where(daily_rollups.c.day >= day_of(since))
    statuses: dict[str, int] = {}
    evs: dict[str, int] = {}
    for kind, name, n in conn.execute(q.group_by(daily_rollups.c.kind, daily_rollups.c.name)):
        (statuses if kind == "status" else evs)[name] = int(n)
    return statuses, evs


def with_rollups(conn: Connection, account_id: int, since: float | None, stats: dict[str, Any]) -> dict[str, Any]:
    """Add what was purged to live statistics ``{"statuses": …, "events": …}``."""
    statuses, evs = rollup_counts(conn, account_id, since)
    for name, n in statuses.items():
        stats["statuses"][name] = stats["statuses"].get(name, 0) + n
    for name, n in evs.items():
        stats["events"][name] = stats["events"].get(name, 0) + n
    return stats


