"""Delivery workers known to each other: a row per worker, kept fresh by its heartbeat.

    worker starts ─▶ register(row) ─▶ release what dead workers hold (due at once)
    every beat    ─▶ heartbeat_at = now, leases of what it holds renewed, reap the dead
    worker stops  ─▶ releases what it holds, deletes its row

A worker is dead when its heartbeat is older than ``dead_after``, or at once when it ran in the
same process namespace as the caller and its pid is gone (a restart after ``kill -9`` on one
machine). On SQLite only one process holds the queue, so a starting worker releases everything
held by any worker it cannot see running. A live worker's recipients are never released: its
heartbeat runs beside its SMTP transactions, however slow they are.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Collection
from dataclasses import dataclass
from functools import cache

from sqlalchemy import Connection, delete, func, insert, select, text, update

from ..domain.status import Status
from .schema import recipients, workers

_DUE = (Status.SPOOLED.value, Status.DEFERRED.value)
_REAP_LOCK = 0x6D74776B  # PostgreSQL advisory lock: one reaper at a time, never two in a deadlock


@dataclass(frozen=True)
class Worker:
    """One row of ``workers``."""

    id: str
    host: str
    pid: int
    process_ns: str | None
    started_at: float
    heartbeat_at: float


@cache
def process_ns() -> str | None:
    """Boot id + pid namespace: two processes that share it can check each other's pid."""
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            boot = f.read().strip()
        return f"{boot}:{os.stat('/proc/self/ns/pid').st_ino}"
    except OSError:
        return None


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    return True


def register(conn: Connection, owner: str, now: float) -> None:
    """Insert (or refresh) this worker's row."""
    conn.execute(delete(workers).where(workers.c.id == owner))
    conn.execute(insert(workers).values(id=owner, host=socket.gethostname()[:255], pid=os.getpid(),
                                        process_ns=process_ns(), started_at=now, heartbeat_at=now))


def beat(conn: Connection, owner: str, now: float) -> bool:
    """Mark this worker alive; False when its row was gone (it had been declared dead): re-registered."""
    res = conn.execute(update(workers).where(workers.c.id == owner).values(heartbeat_at=now))
    if res.rowcount:
        return True
    register(conn, owner, now)
    return False


def unregister(conn: Connection, owner: str) -> None:
    conn.execute(delete(workers).where(workers.c.id == owner))


def listed(conn: Connection) -> list[Worker]:
    """Every worker row, newest heartbeat first."""
    rows = conn.execute(select(workers).order_by(workers.c.heartbeat_at.desc()))
    return [Worker(r.id, r.host, int(r.pid), r.process_ns, float(r.started_at), float(r.heartbeat_at))
            for r in rows]


def is_dead(w: Worker, now: float, dead_after: float, live_here: Collection[str],
            alive: Callable[[int], bool] = pid_alive) -> bool:
    """Stale heartbeat, or a process we can check (same namespace) that is not running."""
    if w.id in live_here:
        return False
    if now - w.heartbeat_at > dead_after:
        return True
    if w.process_ns is None or w.process_ns != process_ns():
        return False  # another machine or container: only its heartbeat tells
    # same pid as ours but not one of our running workers: a previous incarnation (pid reused)
    return w.pid == os.getpid() or not alive(w.pid)


def release_held(conn: Connection, owners: Collection[str], now: float) -> int:
    """Make what ``owners`` hold due at once, in their old place in the queue; their rows go."""
    if not owners:
        return 0
    wanted = sorted(owners)
    res = conn.execute(
        update(recipients)
        .where(recipients.c.lease_owner.in_(wanted), recipients.c.status.in_(_DUE))
        # due since they were last queued (≤ now): they go out before mail queued after them
        .values(lease_owner=None, lease_until=None, next_attempt_at=func.min(recipients.c.updated_at, now)
                if conn.dialect.name == "sqlite" else func.least(recipients.c.updated_at, now))
    )
    conn.execute(delete(workers).where(workers.c.id.in_(wanted)))
    return int(res.rowcount or 0)


def _held_by_unknown(conn: Connection) -> list[str]:
    """Lease owners with no worker row (died before this table existed, or reaped while paused)."""
    known = select(workers.c.id)
    q = (select(recipients.c.lease_owner).distinct()
         .where(recipients.c.lease_owner.is_not(None), recipients.c.lease_owner.not_in(known)))
    return [str(o) for o in conn.execute(q).scalars()]


def reap(conn: Connection, now: float, dead_after: float, live_here: Collection[str],
         *, at_start_on_sqlite: bool = False) -> tuple[list[str], int]:
    """Release what dead workers hold; returns (their ids, recipients released).

    ``at_start_on_sqlite``: the starting process is the only one that may hold the queue, so every
    worker not seen running (in this process, or a live pid in this namespace) counts as dead.
    """
    if conn.dialect.name == "postgresql" and not conn.execute(
            text("SELECT pg_try_advisory_xact_lock(:k)"), {"k": _REAP_LOCK}).scalar():
        return [], 0  # another worker is reaping right now
    dead = []
    for w in listed(conn):
        if at_start_on_sqlite and w.id not in live_here:
            running_elsewhere = (w.process_ns is not None and w.process_ns == process_ns()
                                 and w.pid != os.getpid() and pid_alive(w.pid)
                                 and now - w.heartbeat_at <= dead_after)
            if not running_elsewhere:
                dead.append(w.id)
        elif is_dead(w, now, dead_after, live_here):
            dead.append(w.id)
    unknown = [o for o in _held_by_unknown(conn) if o not in live_here]
    return dead + unknown, release_held(conn, dead + unknown, now)
