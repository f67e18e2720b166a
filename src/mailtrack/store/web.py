"""Reads for the web pages: lean list queries that fetch only what a table row shows."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, and_, exists, func, or_, select

from ..domain.status import summarize
from .queries import iso
from .schema import clients, emails, events, inbound_messages, recipients


@dataclass
class ListFilter:
    source_type: str | None = None
    source_reference: str | None = None
    client: str | None = None  # external reference
    status: str | None = None
    since: float | None = None
    until: float | None = None
    q: str | None = None  # subject, recipient address or reference; partial, case-insensitive


@dataclass(frozen=True)
class Cursor:
    """A position in the newest-first list: the (created_at, id) of a row; keyset paging."""

    created_at: float
    email_id: str
    newer: bool = False  # True: the page of rows just before this one (the "Newer" link)

    def token(self) -> str:
        return f"{'n' if self.newer else 'o'}{self.created_at!r}_{self.email_id}"

    @classmethod
    def parse(cls, text: str) -> Cursor:
        """'o1717000000.25_abc' → Cursor; ValueError with a readable message when it is not one."""
        head, sep, eid = text[1:].partition("_")
        try:
            if text[:1] not in ("o", "n") or not sep or not eid or len(eid) > 32 or not eid.isalnum():
                raise ValueError
            return cls(float(head), eid, newer=text[0] == "n")
        except ValueError:
            raise ValueError(f"the page position {text[:40]!r} is not valid; start again from the first page") \
                from None


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


def _conditions(account_id: int, f: ListFilter) -> list[Any]:
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
        # lower() LIKE lower() on both engines: "t-104" finds "T-1042", "BOB@" finds "bob@example.test"
        cond.append(or_(
            emails.c.subject.icontains(f.q, autoescape=True),
            emails.c.source_reference.icontains(f.q, autoescape=True),
            exists().where(recipients.c.email_id == emails.c.id,
                           recipients.c.address.icontains(f.q, autoescape=True)),
        ))
    if f.status:
        cond.append(exists().where(recipients.c.email_id == emails.c.id, recipients.c.status == f.status))
    return cond


def _from() -> Any:
    return emails.outerjoin(clients, clients.c.id == emails.c.client_id)


def count_emails(conn: Connection, account_id: int, f: ListFilter) -> int:
    """How many emails match the filter (for "n emails" and the page numbers)."""
    return int(conn.execute(select(func.count()).select_from(_from()).where(*_conditions(account_id, f)))
               .scalar_one())


def email_rows(
    conn: Connection, account_id: int, f: ListFilter, *, limit: int = 50, offset: int = 0,
    cursor: Cursor | None = None,
) -> tuple[list[dict[str, Any]], bool]:
    """One page of emails (newest first) with their recipients, and whether another page follows.

    With a ``cursor`` the page starts right after (or, for ``newer``, ends right before) that row,
    whatever the offset: deep pages cost what the first one does. For ``newer`` pages, "another
    page follows" means one more newer page.
    """
    cond = _conditions(account_id, f)
    order: list[Any] = [emails.c.created_at.desc(), emails.c.id.desc()]
    if cursor is not None:
        t, i = cursor.created_at, cursor.email_id
        if cursor.newer:
            cond.append(or_(emails.c.created_at > t, and_(emails.c.created_at == t, emails.c.id > i)))
            order = [emails.c.created_at.asc(), emails.c.id.asc()]
        else:
            cond.append(or_(emails.c.created_at < t, and_(emails.c.created_at == t, emails.c.id < i)))
        offset = 0
    rows = list(conn.execute(
        select(*_ROW_COLS).select_from(_from()).where(*cond).order_by(*order).limit(limit + 1).offset(offset)
    ).mappings())
    more = len(rows) > limit
    rows = rows[:limit]
    if cursor is not None and cursor.newer:
        rows.reverse()
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
            "created_ts": e["created_at"],
            "tracking": bool(e["tracking"]), "opens_trackable": bool(e["tracking"]) and bool(e["has_html"]),
            "status": summarize([r["status"] for r in rc]), "recipients": rc,
        })
    return out, more



def recipient_message(conn: Connection, account_id: int, email_id: str, recipient_id: str) -> dict[str, Any] | None:
    """One recipient of one of the account's emails, with the email row and its attachments (None if not)."""
    from .delivery import load_emails

    r = conn.execute(select(recipients.c.id, recipients.c.address, recipients.c.kind, recipients.c.status).where(
        recipients.c.id == recipient_id, recipients.c.email_id == email_id,
        recipients.c.account_id == account_id)).mappings().first()
    if r is None:
        return None
    [(row, atts)] = load_emails(conn, {email_id}).values()
    reports = [dict(m) for m in conn.execute(
        select(inbound_messages.c.id, inbound_messages.c.received_at, inbound_messages.c.mail_from,
               inbound_messages.c.kind, inbound_messages.c.raw)
        .where(inbound_messages.c.recipient_id == recipient_id).order_by(inbound_messages.c.id)).mappings()]
    return {"recipient": dict(r), "email": row, "attachments": atts, "reports": reports}


DASHBOARD_TYPES = ("creating", "sent", "deferred", "soft_bounce", "hard_bounce", "rejected", "complained", "opened",
                   "clicked")


def event_buckets(conn: Connection, account_id: int, start: float, size: float, n: int,
                  source_type: str | None = None) -> dict[str, list[int]]:
    """Events per type in ``n`` buckets of ``size`` seconds from ``start``; ``opened_human`` and
    ``clicked_human`` count the hits classified as a person. Grouped in SQL, one query."""
    from sqlalchemy import Integer, case, cast

    offset = (events.c.at - start) / size
    bucket = func.floor(offset) if conn.dialect.name == "postgresql" else cast(offset, Integer)  # at >= start
    human = case((events.c.data_json.contains('"class":"human"'), 1), else_=0)
    cond: list[Any] = [events.c.account_id == account_id, events.c.at >= start, events.c.at < start + size * n,
                       events.c.type.in_(DASHBOARD_TYPES)]
    if source_type:
        cond.append(events.c.email_id.in_(select(emails.c.id).where(emails.c.account_id == account_id,
                                                                     emails.c.source_type == source_type)))
    q = (select(events.c.type, bucket.label("b"), func.count(), func.sum(human))
         .where(*cond).group_by(events.c.type, bucket))
    out: dict[str, list[int]] = {t: [0] * n for t in (*DASHBOARD_TYPES, "opened_human", "clicked_human")}
    for typ, b, count, humans in conn.execute(q):
        i = int(b)
        if 0 <= i < n:
            out[typ][i] += int(count)
            if typ in ("opened", "clicked"):
                out[f"{typ}_human"][i] += int(humans or 0)
    return out
