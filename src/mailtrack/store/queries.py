"""Reads for the API and the web pages, always scoped to one account."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, exists, func, select

from ..domain.status import summarize
from ..errors import NotFound
from .schema import clients, emails, events, recipients

ENGAGEMENT_NOTE = (
    "Opens and clicks can never be 100% accurate: privacy proxies and image caches load pixels and "
    "security scanners follow links, so counts are given as total and human; a text-only email "
    "cannot be tracked for opens."
)


def iso(t: float | None) -> str | None:
    if t is None:
        return None
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _recipient_view(r: Any) -> dict[str, Any]:
    return {
        "id": r["id"], "address": r["address"], "kind": r["kind"], "status": r["status"],
        "reason": r["reason"], "last_reply": r["last_reply"], "attempts": r["attempts"],
        "next_attempt_at": iso(r["next_attempt_at"]) if r["status"] in ("spooled", "deferred") else None,
        "opens": {"total": r["opens_total"], "human": r["opens_human"]},
        "clicks": {"total": r["clicks_total"], "human": r["clicks_human"]},
        "first_opened_at": iso(r["first_opened_at"]), "first_clicked_at": iso(r["first_clicked_at"]),
        "complained": bool(r["complained"]),
    }


def email_view(e: Any, rcpts: list[Any], client_ref: str | None) -> dict[str, Any]:
    tracked = bool(e["tracking"])
    return {
        "id": e["id"],
        "status": summarize([r["status"] for r in rcpts]),
        "tracking": tracked,
        "tracking_override": e["tracking_override"],
        "opens_trackable": tracked and bool(e["html_body"]),
        "from": e["from_addr"],
        "subject": e["subject"],
        "source": {"type": e["source_type"], "reference": e["source_reference"], "event": e["source_event"]},
        "client": client_ref,
        "metadata": json.loads(e["metadata_json"] or "{}"),
        "created_at": iso(e["created_at"]),
        "recipients": [_recipient_view(r) for r in rcpts],
    }


def _event_view(ev: Any, address: str | None = None) -> dict[str, Any]:
    out = {"at": iso(ev["at"]), "type": ev["type"], "recipient_id": ev["recipient_id"], "reason": ev["reason"],
           "data": json.loads(ev["data_json"]) if ev["data_json"] else None}
    if address is not None:
        out["address"] = address
    return out


_EMAIL_COLS: list[Any] = [emails, clients.c.external_ref.label("client_ref")]


def _email_select() -> Any:
    return select(*_EMAIL_COLS).select_from(emails.outerjoin(clients, clients.c.id == emails.c.client_id))


def get_email(conn: Connection, account_id: int, email_id: str, *, timeline: bool = True) -> dict[str, Any]:
    e = conn.execute(
        _email_select().where(emails.c.id == email_id, emails.c.account_id == account_id)
    ).mappings().first()
    if e is None:
        raise NotFound(f"no email {email_id!r} in this account")
    rcpts = list(conn.execute(
        select(recipients).where(recipients.c.email_id == email_id).order_by(recipients.c.id)
    ).mappings())
    view = email_view(e, rcpts, e["client_ref"])
    view["engagement_note"] = ENGAGEMENT_NOTE if view["tracking"] else "not tracked: no opens or clicks are recorded"
    if timeline:
        addr = {r["id"]: r["address"] for r in rcpts}
        evs = conn.execute(
            select(events).where(events.c.email_id == email_id).order_by(events.c.at, events.c.id)
        ).mappings()
        view["timeline"] = [_event_view(ev, addr.get(ev["recipient_id"])) for ev in evs]
    return view


def list_emails(
    conn: Connection, account_id: int, *, source_type: str | None = None, source_reference: str | None = None,
    client: str | None = None, status: str | None = None, since: float | None = None,
    until: float | None = None, q: str | None = None, limit: int = 50, offset: int = 0,
) -> tuple[list[dict[str, Any]], int]:
    """Emails newest first, each with its recipients (no timeline), and the total matching."""
    cond: list[Any] = [emails.c.account_id == account_id]
    if source_type:
        cond.append(emails.c.source_type == source_type)
    if source_reference:
        cond.append(emails.c.source_reference == source_reference)
    if client:
        cond.append(clients.c.external_ref == client)
    if since is not None:
        cond.append(emails.c.created_at >= since)
    if until is not None:
        cond.append(emails.c.created_at < until)
    if q:
        cond.append(emails.c.subject.contains(q, autoescape=True))
    if status:
        cond.append(exists().where(recipients.c.email_id == emails.c.id, recipients.c.status == status))
    base = emails.outerjoin(clients, clients.c.id == emails.c.client_id)
    total = conn.execute(select(func.count()).select_from(base).where(*cond)).scalar_one()
    rows = list(conn.execute(
        _email_select().where(*cond).order_by(emails.c.created_at.desc(), emails.c.id.desc())
        .limit(limit).offset(offset)
    ).mappings())
    by_email: dict[str, list[Any]] = {r["id"]: [] for r in rows}
    if rows:
        for r in conn.execute(
            select(recipients).where(recipients.c.email_id.in_(list(by_email))).order_by(recipients.c.id)
        ).mappings():
            by_email[r["email_id"]].append(r)
    return [email_view(e, by_email[e["id"]], e["client_ref"]) for e in rows], int(total)


def recipient_events(conn: Connection, account_id: int, recipient_id: str) -> dict[str, Any]:
    r = conn.execute(
        select(recipients).where(recipients.c.id == recipient_id, recipients.c.account_id == account_id)
    ).mappings().first()
    if r is None:
        raise NotFound(f"no recipient {recipient_id!r} in this account")
    evs = conn.execute(
        select(events).where(events.c.recipient_id == recipient_id).order_by(events.c.at, events.c.id)
    ).mappings()
    return {"recipient": _recipient_view(r), "email_id": r["email_id"], "events": [_event_view(e) for e in evs]}


def stats(conn: Connection, account_id: int, since: float | None = None) -> dict[str, Any]:
    rq = select(recipients.c.status, func.count()).where(recipients.c.account_id == account_id)
    eq = select(events.c.type, func.count()).where(events.c.account_id == account_id)
    if since is not None:
        rq = rq.where(recipients.c.updated_at >= since)
        eq = eq.where(events.c.at >= since)
    statuses = {s: int(n) for s, n in conn.execute(rq.group_by(recipients.c.status))}
    evs = {t: int(n) for t, n in conn.execute(eq.group_by(events.c.type))}
    from .retention import with_rollups  # what the retention purge removed still counts

    return with_rollups(conn, account_id, since, {"statuses": statuses, "events": evs})


def get_emails(conn: Connection, account_id: int, ids: list[str]) -> list[dict[str, Any]]:
    """Several emails (no timeline) in the order of ``ids``; two queries whatever the count."""
    if not ids:
        return []
    unique = sorted(set(ids))
    rows = {e["id"]: e for e in conn.execute(
        _email_select().where(emails.c.account_id == account_id, emails.c.id.in_(unique))
    ).mappings()}
    by_email: dict[str, list[Any]] = {i: [] for i in rows}
    for r in conn.execute(
        select(recipients).where(recipients.c.email_id.in_(unique)).order_by(recipients.c.id)
    ).mappings():
        by_email[r["email_id"]].append(r)
    return [email_view(rows[i], by_email[i], rows[i]["client_ref"]) for i in ids if i in rows]
