"""The account's suppression list (the blacklist): addresses mailtrack never sends to."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, delete, func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from ..errors import NotFound
from .chunked import chunks
from .ids import now
from .schema import suppressions

SOURCES = ("manual", "hard_bounce", "complaint", "unsubscribe")


def add(conn: Connection, account_id: int, address: str, reason: str, source: str) -> bool:
    """Suppress an address; False when it already was (the first reason is kept)."""
    ins = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
    stmt = ins(suppressions).values(
        account_id=account_id, address=address.lower(), reason=reason, source=source, created_at=now()
    ).on_conflict_do_nothing(index_elements=["account_id", "address"])
    return conn.execute(stmt.returning(suppressions.c.address)).first() is not None


def remove(conn: Connection, account_id: int, address: str) -> None:
    res = conn.execute(
        delete(suppressions).where(suppressions.c.account_id == account_id, suppressions.c.address == address.lower())
    )
    if not res.rowcount:
        raise NotFound(f"{address} is not on the suppression list", field="address")


def suppressed_among(conn: Connection, account_id: int, addresses: set[str]) -> dict[str, str]:
    """address → reason for those of ``addresses`` (lower-case) that are suppressed."""
    if not addresses:
        return {}
    found: dict[str, str] = {}
    ph = "%s" if conn.dialect.name == "postgresql" else "?"
    for part in chunks(sorted(addresses)):  # one IN list per chunk: a huge batch must not exceed SQL limits
        # by the driver: every submission transaction asks, usually for one or two addresses
        rows = conn.exec_driver_sql(
            f"SELECT address, reason FROM suppressions WHERE account_id = {ph} AND address IN "
            f"({', '.join([ph] * len(part))})", (account_id, *part))
        found.update({a: r for a, r in rows})
    return found


def search(
    conn: Connection, account_id: int, q: str | None = None, limit: int = 100, offset: int = 0
) -> tuple[list[dict[str, Any]], int]:
    cond = [suppressions.c.account_id == account_id]
    if q:
        cond.append(suppressions.c.address.contains(q.lower(), autoescape=True))
    total = conn.execute(select(func.count()).select_from(suppressions).where(*cond)).scalar_one()
    rows = conn.execute(
        select(suppressions).where(*cond).order_by(suppressions.c.created_at.desc()).limit(limit).offset(offset)
    ).mappings()
    return [dict(r) for r in rows], int(total)
