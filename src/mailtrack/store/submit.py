"""Submission: one transaction stores the email, its recipients and their first events (through the core)."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, select

from .. import metrics
from ..domain.status import Status
from ..domain.tracking import resolve_tracking
from ..inject import extract_links
from . import accounts as acc
from .chunked import insert_rows
from .ids import new_id, now
from .queries import email_view
from .schema import attachments, emails, links
from .suppressions import suppressed_among
from .transitions import Change, record_batch


@dataclass
class NewRecipient:
    name: str
    address: str  # normalised, domain lower-case
    kind: str  # to | cc | bcc


@dataclass
class NewEmail:
    from_addr: str
    recipients: list[NewRecipient]
    subject: str
    text: str | None = None
    html: str | None = None
    reply_to: str | None = None
    to_header: str = ""
    cc_header: str = ""
    attachments: list[tuple[str, str, bytes]] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)
    source_type: str | None = None
    source_reference: str | None = None
    source_event: str | None = None
    client: str | None = None
    tracking: bool | None = None
    unsubscribe: bool | None = None  # None: the default for the source type, decided at compose
    metadata: dict[str, str] = field(default_factory=dict)
    idempotency_key: str | None = None
    size: int = 0


def _existing(conn: Connection, account_id: int, key: str) -> str | None:
    found = conn.execute(
        select(emails.c.id).where(emails.c.account_id == account_id, emails.c.idempotency_key == key)
    ).scalar()
    return None if found is None else str(found)


def _tracked_links(email_id: str, html: str) -> list[dict[str, Any]]:
    """Link indices are fixed here, so a click redirects only to a URL stored at send time."""
    return [{"email_id": email_id, "idx": i, "url": u} for i, u in enumerate(extract_links(html))]


def submit(conn: Connection, account_id: int, batch: list[NewEmail]) -> list[tuple[str, bool]]:
    """Store emails; returns (email id, created) in order — created is False for an idempotent replay."""
    return [(eid, created) for eid, created, _ in _submit(conn, account_id, batch, describe=False)]


def submit_described(
    conn: Connection, account_id: int, batch: list[NewEmail]
) -> list[tuple[str, bool, dict[str, Any] | None]]:
    """Like submit(), plus the API view of each new email built from what was written (no read-back)."""
    return _submit(conn, account_id, batch, describe=True)


def _submit(
    conn: Connection, account_id: int, batch: list[NewEmail], *, describe: bool
) -> list[tuple[str, bool, dict[str, Any] | None]]:
    track_default = acc.track_default(conn, account_id)
    wanted = {r.address.lower() for e in batch for r in e.recipients}
    suppressed = suppressed_among(conn, account_id, wanted)
    t = now()
    email_rows: list[dict[str, Any]] = []
    att_rows: list[dict[str, Any]] = []
    rcpt_rows: list[dict[str, Any]] = []
    changes: list[Change] = []
    out: list[tuple[str, bool, dict[str, Any] | None]] = []
    rcpts_of: dict[str, list[dict[str, Any]]] = {}
    seen_keys: dict[str, str] = {}
    link_rows: list[dict[str, Any]] = []
    client_cache: dict[str, dict[str, Any]] = {}
    client_refs: dict[str, str | None] = {}
    for e in batch:
        if e.idempotency_key:
            prior = seen_keys.get(e.idempotency_key) or _existing(conn, account_id, e.idempotency_key)
            if prior:
                out.append((prior, False, None))
                continue
        client_row = None
        if e.client is not None:
            if e.client not in client_cache:
                client_cache[e.client] = acc.find_client(conn, account_id, e.client)
            client_row = client_cache[e.client]
        tracking = resolve_tracking(
            track_default, client_row["tracking"] if client_row else None, e.tracking
        )
        eid = new_id()
        client_refs[eid] = client_row["external_ref"] if client_row else None
        if e.idempotency_key:
            seen_keys[e.idempotency_key] = eid
        email_rows.append({
            "id": eid, "account_id": account_id, "client_id": client_row["id"] if client_row else None,
            "idempotency_key": e.idempotency_key, "from_addr": e.from_addr, "reply_to": e.reply_to,
            "to_header": e.to_header, "cc_header": e.cc_header, "subject": e.subject,
            "text_body": e.text, "html_body": e.html, "headers_json": json.dumps(e.headers),
            "metadata_json": json.dumps(e.metadata), "source_type": e.source_type,
            "source_reference": e.source_reference, "source_event": e.source_event,
            "tracking": tracking, "tracking_override": e.tracking, "size": e.size, "created_at": t,
            "unsubscribe": e.unsubscribe,
        })
        if tracking and e.html:
            link_rows += _tracked_links(eid, e.html)
        att_rows += [
            {"email_id": eid, "filename": fn, "content_type": ct, "content": data} for fn, ct, data in e.attachments
        ]
        for r in e.recipients:
            rid = new_id()
            reason = suppressed.get(r.address.lower())
            status = Status.REJECTED if reason is not None else Status.SPOOLED
            shown = f"on the suppression list: {reason}" if reason is not None else None
            rcpts_of.setdefault(eid, []).append({
                "id": rid, "email_id": eid, "account_id": account_id, "address": r.address,
                "domain": r.address.rpartition("@")[2], "kind": r.kind, "status": status.value,
                "reason": shown, "attempts": 0,
                "next_attempt_at": t if status is Status.SPOOLED else None, "updated_at": t,
                "opens_total": 0, "opens_human": 0, "clicks_total": 0, "clicks_human": 0, "complained": False,
                "last_reply": None, "first_attempt_at": None, "first_opened_at": None, "first_clicked_at": None,
                "lease_until": None, "lease_owner": None,
            })
            rcpt_rows.append(rcpts_of[eid][-1])
            changes.append(Change(rid, Status.CREATING.value, at=t))
            changes.append(Change(rid, status.value, reason=shown, at=t))
        out.append((eid, True, None))
    if email_rows:
        insert_rows(conn, emails, email_rows)
        insert_rows(conn, attachments, att_rows)
        insert_rows(conn, links, link_rows)
        if rcpt_rows:
            # the rows start with no status: the core enters creating, then spooled or rejected
            record_batch(conn, changes, new_rows=rcpt_rows)
    counted: Counter[str | None] = Counter()
    for row in email_rows:
        counted[row["source_type"]] += len(rcpts_of.get(row["id"], ()))
    for source_type, n in counted.items():
        metrics.submitted(source_type, n)
    if not describe:
        return out
    by_id = {row["id"]: row for row in email_rows}
    return [
        (eid, created, email_view(by_id[eid], rcpts_of.get(eid, []), client_refs.get(eid)) if created else None)
        for eid, created, _ in out
    ]
