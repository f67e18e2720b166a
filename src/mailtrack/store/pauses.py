"""Provider groups paused by a rate-limit reply, as the workers last reported them (for status views)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Connection, delete, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from .ids import now
from .schema import provider_pauses


@dataclass(frozen=True)
class Paused:
    group: str
    until: float
    reason: str


def save(conn: Connection, group: str, until: float, reason: str) -> None:
    ins = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
    t = now()
    stmt = ins(provider_pauses).values(grp=group, paused_until=until, reason=reason, updated_at=t)
    conn.execute(stmt.on_conflict_do_update(index_elements=["grp"],
                                            set_={"paused_until": until, "reason": reason, "updated_at": t}))
    conn.execute(delete(provider_pauses).where(provider_pauses.c.paused_until < t - 86400))  # old news


def active(conn: Connection, at: float | None = None) -> list[Paused]:
    t = now() if at is None else at
    rows = conn.execute(select(provider_pauses).where(provider_pauses.c.paused_until > t)
                        .order_by(provider_pauses.c.grp))
    return [Paused(r.grp, r.paused_until, r.reason) for r in rows]
