"""Reads for the web pages: lean list queries that fetch only what a table row shows."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, exists, select

from ..domain.status import summarize
from .queries import iso
from .schema import clients, emails, recipients


@dataclass
class ListFilter:
    source_type: str | None = None
    source_reference: str | None = None
    client: str | None = None  # external reference
    status: str | None = None
    since: float | None = None
    until: float | None = None
    q: str | None = None


_ROW_COLS: list[Any] = [
    emails.c.id, emails.c.subject, emails.c.source_type, emails.c.source_reference, emails.c.source_event,
    emails.c.created_at, emails.c.tracking, emails.c.from_addr,
    (emails.c.html_body.is_not(None)).label("has_html"), clients.c.external_ref.label("client_ref"),
    clients.c.name.label("client_name"),
]
_RCPT_COLS: list[Any] = [
    recipients.c.id, recipients.c.email_id, recipients.c.address, recipients.c.kind, recipients.c.status,
    recipients.c.reason, recipients.c.opens_total, recipients.c.opens_human, recipients.c.clicks_total,
    recipients.c.clicks_human, recipients.c.complained,
]


def _rcpt(r: Any) -> dict[str, Any]:
    return {"id": r["id"], "address": r["address"], "kind": r["kind"], "status": r["status"],
            "reason": r["reason"], "opens": {"total": r["opens_total"], "human": r["opens_human"]},
            "clicks": {"total": r["clicks_total"], "human": r["clicks_human"]}, "complained": bool(r["complained"])}


def email_rows(
    conn: Connection, account_id: int, f: ListFilter, *, limit: int = 50, offset: int = 0
) -> tuple[list[dict[str, Any]], bool]:
    """One page of emails (newest first) with their recipients, and whether another page follows.

    No total count: counting a filtered 100,000-email account costs more than the page itself.
    """
    cond: list[Any] = [emails.c.account_id == account_id]
    if f.source_type:
        cond.append(emails.c.source_type == f.source_type)
    if f.source_reference:
        cond.append(emails.c.source_reference == f.source_reference)
    if f.client:
        cond.append(clients.c.external_ref == f.client)
    if f.since is not None:
        cond.append(emails.c.created_at >= f.since)
    if f.until is not None:
        cond.append(emails.c.created_at < f.until)
    if f.q:
        cond.append(emails.c.subject.contains(f.q, autoescape=True))
    if f.status:
        cond.append(exists().where(recipients.c.email_id == emails.c.id, recipients.c.status == f.status))
    rows = list(conn.execute(
        select(*_ROW_COLS).select_from(emails.outerjoin(clients, clients.c.id == emails.c.client_id))
        .where(*cond).order_by(emails.c.created_at.desc(), emails.c.id.desc()).limit(limit + 1).offset(offset)
    ).mappings())
    more = len(rows) > limit
    rows = rows[:limit]
    by_email: dict[str, list[dict[str, Any]]] = {r["id"]: [] for r in rows}
    if rows:
        for r in conn.execute(
            select(*_RCPT_COLS).where(recipients.c.email_id.in_(list(by_email))).order_by(recipients.c.id)
        ).mappings():
            by_email[r["email_id"]].append(_rcpt(r))
    out = []
    for e in rows:
        rc = by_email[e["id"]]
        out.append({
            "id": e["id"], "subject": e["subject"], "from": e["from_addr"],
            "source": {"type": e["source_type"], "reference": e["source_reference"], "event": e["source_event"]},
            "client": e["client_ref"], "client_name": e["client_name"], "created_at": iso(e["created_at"]),
            "tracking": bool(e["tracking"]), "opens_trackable": bool(e["tracking"]) and bool(e["has_html"]),
            "status": summarize([r["status"] for r in rc]), "recipients": rc,
        })
    return out, more
