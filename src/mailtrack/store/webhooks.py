"""Webhook endpoints, the outbox fan-out, and the delivery queue of signed POSTs.

    webhook_outbox ──fan_out──▶ webhook_deliveries (one per matching endpoint) ──claim──▶ dispatcher
          ▲                         pending ─▶ delivered | failed                       │
    status-change core                   ▲                                              │
    (effects.apply)                      └──────────── finish (attempt rows) ◀──────────┘

A claim moves ``next_attempt_at`` to the lease's end (like the delivery queue), so a delivery held
by a dispatcher that died comes back by itself: at least once, duplicates only for POSTs in flight.
On PostgreSQL both the fan-out and the claim are ``FOR UPDATE SKIP LOCKED``.
"""

from __future__ import annotations

import base64
import json
import secrets
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, delete, func, insert, select, update

from ..errors import NotFound
from .ids import new_id
from .schema import (
    clients,
    emails,
    links,
    recipients,
    webhook_attempts,
    webhook_deliveries,
    webhook_endpoints,
    webhook_outbox,
)

RESPONSE_KEPT = 1024


def new_secret() -> str:
    """A Standard Webhooks secret: ``whsec_`` and 32 random bytes in base64."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def _view(r: Any) -> dict[str, Any]:
    return {
        "id": r["id"], "url": r["url"], "description": r["description"], "events": json.loads(r["events_json"]),
        "batch": bool(r["batch"]), "enabled": bool(r["enabled"]), "disabled_reason": r["disabled_reason"],
        "failing_since": r["failing_since"], "created_at": r["created_at"], "updated_at": r["updated_at"],
    }


def create_endpoint(conn: Connection, account_id: int, url: str, events: list[str], description: str = "",
                    batch: bool = False, now: float = 0.0) -> tuple[dict[str, Any], str]:
    """A new endpoint and its secret (the only time the secret is handed out)."""
    secret = new_secret()
    row = {"id": "we_" + new_id(), "account_id": account_id, "url": url, "description": description,
           "events_json": json.dumps(sorted(set(events))), "batch": batch, "secret": secret, "old_secret": None,
           "old_secret_until": None, "enabled": True, "disabled_reason": None, "failing_since": None,
           "created_at": now, "updated_at": now}
    conn.execute(insert(webhook_endpoints).values(**row))
    return _view(row), secret


def _row(conn: Connection, account_id: int, endpoint_id: str) -> Any:
    r = conn.execute(select(webhook_endpoints).where(
        webhook_endpoints.c.id == endpoint_id, webhook_endpoints.c.account_id == account_id)).mappings().first()
    if r is None:
        raise NotFound(f"no webhook endpoint {endpoint_id!r} in this account")
    return r


def get_endpoint(conn: Connection, account_id: int, endpoint_id: str) -> dict[str, Any]:
    return _view(_row(conn, account_id, endpoint_id))


def list_endpoints(conn: Connection, account_id: int) -> list[dict[str, Any]]:
    rows = conn.execute(select(webhook_endpoints).where(webhook_endpoints.c.account_id == account_id)
                        .order_by(webhook_endpoints.c.created_at, webhook_endpoints.c.id)).mappings()
    return [_view(r) for r in rows]


def update_endpoint(conn: Connection, account_id: int, endpoint_id: str, now: float, **changes: Any) -> dict[str, Any]:
    """Change url/events/description/batch/enabled; enabling again clears the failure record."""
    _row(conn, account_id, endpoint_id)
    values: dict[str, Any] = {"updated_at": now}
    for k, v in changes.items():
        if v is None:
            continue
        if k == "events":
            values["events_json"] = json.dumps(sorted(set(v)))
        else:
            values[k] = v
    if changes.get("enabled") is True:
        values.update(disabled_reason=None, failing_since=None)
    conn.execute(update(webhook_endpoints).where(webhook_endpoints.c.id == endpoint_id).values(**values))
    return get_endpoint(conn, account_id, endpoint_id)


def delete_endpoint(conn: Connection, account_id: int, endpoint_id: str) -> None:
    _row(conn, account_id, endpoint_id)
    conn.execute(delete(webhook_attempts).where(webhook_attempts.c.endpoint_id == endpoint_id))
    conn.execute(delete(webhook_deliveries).where(webhook_deliveries.c.endpoint_id == endpoint_id))
    conn.execute(delete(webhook_endpoints).where(webhook_endpoints.c.id == endpoint_id))


def rotate_secret(conn: Connection, account_id: int, endpoint_id: str, now: float, overlap: float) -> str:
    """A new secret; the old one keeps signing too (both signatures sent) for ``overlap`` seconds."""
    r = _row(conn, account_id, endpoint_id)
    secret = new_secret()
    conn.execute(update(webhook_endpoints).where(webhook_endpoints.c.id == endpoint_id).values(
        secret=secret, old_secret=r["secret"], old_secret_until=now + overlap, updated_at=now))
    return secret


def signing_secrets(r: Any, now: float) -> list[str]:
    """The secrets that sign a POST now: the current one, and the previous one during its overlap."""
    out = [r["secret"]]
    if r["old_secret"] and (r["old_secret_until"] or 0) > now:
        out.append(r["old_secret"])
    return out


def _wants(events_json: str, type_: str) -> bool:
    wanted = json.loads(events_json)
    return "*" in wanted or type_ in wanted


# -- fan-out ----------------------------------------------------------------------------------------

def fan_out(conn: Connection, now: float, limit: int = 2000) -> int:
    """Turn up to ``limit`` new outbox rows into deliveries for the endpoints that want them."""
    q = (select(webhook_outbox.c.id, webhook_outbox.c.account_id, webhook_outbox.c.type)
         .where(webhook_outbox.c.fanned == False).order_by(webhook_outbox.c.id).limit(limit))  # noqa: E712
    if conn.dialect.name == "postgresql":
        q = q.with_for_update(skip_locked=True)
    rows = conn.execute(q).all()
    if not rows:
        return 0
    accounts = sorted({r.account_id for r in rows})
    eps: dict[int, list[tuple[str, str]]] = defaultdict(list)
    for e in conn.execute(select(webhook_endpoints.c.id, webhook_endpoints.c.account_id,
                                 webhook_endpoints.c.events_json)
                          .where(webhook_endpoints.c.account_id.in_(accounts), webhook_endpoints.c.enabled)):
        eps[int(e.account_id)].append((e.id, e.events_json))
    new = [{"endpoint_id": eid, "outbox_id": r.id, "state": "pending", "attempts": 0, "next_attempt_at": now,
            "lease_owner": None, "created_at": now, "done_at": None}
           for r in rows for eid, wanted in eps.get(int(r.account_id), []) if _wants(wanted, r.type)]
    if new:
        conn.execute(insert(webhook_deliveries), new)
    ids = [r.id for r in rows]
    for i in range(0, len(ids), 500):
        conn.execute(update(webhook_outbox).where(webhook_outbox.c.id.in_(ids[i:i + 500])).values(fanned=True))
    return len(new)


def replay(conn: Connection, account_id: int, endpoint_id: str, now: float, since: float | None = None,
           event_id: int | None = None) -> int:
    """Queue again the account's events since a time (or one event) for one endpoint; returns how many."""
    r = _row(conn, account_id, endpoint_id)
    q = select(webhook_outbox.c.id, webhook_outbox.c.type).where(webhook_outbox.c.account_id == account_id)
    if event_id is not None:
        q = q.where(webhook_outbox.c.id == event_id)
    if since is not None:
        q = q.where(webhook_outbox.c.at >= since)
    rows = [x for x in conn.execute(q.order_by(webhook_outbox.c.id)) if event_id is not None
            or _wants(r["events_json"], x.type)]
    if event_id is not None and not rows:
        raise NotFound(f"no event evt_{event_id} in this account", field="event_id")
    if rows:
        conn.execute(insert(webhook_deliveries), [
            {"endpoint_id": endpoint_id, "outbox_id": x.id, "state": "pending", "attempts": 0,
             "next_attempt_at": now, "lease_owner": None, "created_at": now, "done_at": None} for x in rows])
    return len(rows)


# -- the delivery queue -----------------------------------------------------------------------------

@dataclass(frozen=True)
class Claimed:
    id: int
    endpoint_id: str
    outbox_id: int
    attempts: int
    created_at: float


def claim(conn: Connection, owner: str, now: float, lease: float, limit: int) -> list[Claimed]:
    """Lease up to ``limit`` due deliveries of enabled endpoints to ``owner``."""
    due = (select(webhook_deliveries.c.id)
           .select_from(webhook_deliveries.join(webhook_endpoints,
                                                webhook_endpoints.c.id == webhook_deliveries.c.endpoint_id))
           .where(webhook_deliveries.c.next_attempt_at <= now, webhook_endpoints.c.enabled)
           .order_by(webhook_deliveries.c.next_attempt_at, webhook_deliveries.c.id).limit(limit))
    if conn.dialect.name == "postgresql":
        due = due.with_for_update(skip_locked=True, of=webhook_deliveries)
    ids = [int(i) for i in conn.execute(due).scalars()]
    if not ids:
        return []
    stmt = (update(webhook_deliveries).where(webhook_deliveries.c.id.in_(ids))
            .values(lease_owner=owner, next_attempt_at=now + lease)
            .returning(webhook_deliveries.c.id, webhook_deliveries.c.endpoint_id, webhook_deliveries.c.outbox_id,
                       webhook_deliveries.c.attempts, webhook_deliveries.c.created_at))
    out = [Claimed(int(r.id), r.endpoint_id, int(r.outbox_id), int(r.attempts), float(r.created_at))
           for r in conn.execute(stmt)]
    return sorted(out, key=lambda c: c.id)


def extend(conn: Connection, owner: str, ids: list[int], until: float) -> None:
    """Renew the lease on deliveries a live dispatcher still holds, so only a dead one's come back."""
    for i in range(0, len(ids), 500):
        conn.execute(update(webhook_deliveries).where(
            webhook_deliveries.c.id.in_(ids[i:i + 500]), webhook_deliveries.c.lease_owner == owner,
            webhook_deliveries.c.state == "pending").values(next_attempt_at=until))


def release(conn: Connection, owner: str, ids: list[int], at: float) -> None:
    """Give back claimed deliveries that were not attempted (due again at ``at``)."""
    for i in range(0, len(ids), 500):
        conn.execute(update(webhook_deliveries).where(
            webhook_deliveries.c.id.in_(ids[i:i + 500]), webhook_deliveries.c.lease_owner == owner,
            webhook_deliveries.c.state == "pending").values(lease_owner=None, next_attempt_at=at))


def endpoints_by_id(conn: Connection, ids: set[str]) -> dict[str, dict[str, Any]]:
    rows = conn.execute(select(webhook_endpoints).where(webhook_endpoints.c.id.in_(sorted(ids)))).mappings()
    return {r["id"]: dict(r) for r in rows}


@dataclass(frozen=True)
class Attempt:
    """One POST (carrying one delivery, or several in batch mode) and what came of it."""

    endpoint_id: str
    delivery_ids: list[int]
    at: float
    status_code: int | None
    latency_ms: int
    response: str | None
    error: str | None
    waiting_since: float | None = None  # when the oldest event in it became ready to send

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


def record_attempts(conn: Connection, attempts: list[Attempt], owner: str, retry_at: dict[int, float | None],
                    max_age: float) -> None:
    """Write attempt rows and move deliveries on: done on 2xx, retried at ``retry_at[id]`` or failed (None).

    410 Gone disables the endpoint at once; an endpoint failing continuously for ``max_age`` too.
    """
    if not attempts:
        return
    conn.execute(insert(webhook_attempts), [
        {"endpoint_id": a.endpoint_id, "delivery_ids": json.dumps(a.delivery_ids), "at": a.at,
         "status_code": a.status_code, "latency_ms": a.latency_ms, "response": a.response, "error": a.error}
        for a in attempts])
    done = [d for a in attempts if a.ok for d in a.delivery_ids]
    for i in range(0, len(done), 500):
        conn.execute(update(webhook_deliveries).where(webhook_deliveries.c.id.in_(done[i:i + 500])).values(
            state="delivered", done_at=attempts[0].at, next_attempt_at=None, lease_owner=None,
            attempts=webhook_deliveries.c.attempts + 1))
    failed = [(d, a.at) for a in attempts if not a.ok for d in a.delivery_ids]
    for d, at in failed:
        nxt = retry_at.get(d)
        values: dict[str, Any] = {"attempts": webhook_deliveries.c.attempts + 1, "lease_owner": None,
                                  "next_attempt_at": nxt}
        if nxt is None:
            values.update(state="failed", done_at=at)
        conn.execute(update(webhook_deliveries).where(webhook_deliveries.c.id == d).values(**values))
    by_ep: dict[str, list[Attempt]] = defaultdict(list)
    for a in attempts:
        by_ep[a.endpoint_id].append(a)
    for eid, tries in by_ep.items():
        last = tries[-1]
        if any(a.status_code == 410 for a in tries):
            conn.execute(update(webhook_endpoints).where(webhook_endpoints.c.id == eid).values(
                enabled=False, disabled_reason="the receiver answered 410 Gone", updated_at=last.at))
        elif last.ok:
            conn.execute(update(webhook_endpoints).where(webhook_endpoints.c.id == eid,
                                                         webhook_endpoints.c.failing_since.is_not(None))
                         .values(failing_since=None))
        else:
            # failing since the oldest event this endpoint could not take: its last try comes max_age later
            first_fail = min(a.waiting_since or a.at for a in tries)
            conn.execute(update(webhook_endpoints).where(webhook_endpoints.c.id == eid,
                                                         webhook_endpoints.c.failing_since.is_(None))
                         .values(failing_since=first_fail))
            conn.execute(update(webhook_endpoints).where(
                webhook_endpoints.c.id == eid, webhook_endpoints.c.failing_since <= last.at - max_age).values(
                enabled=False, updated_at=last.at,
                disabled_reason=f"every delivery failed for {max_age / 86400:g} days (last: "
                                f"{last.error or last.status_code})"))


# -- reads ------------------------------------------------------------------------------------------

def attempts_of(conn: Connection, account_id: int, endpoint_id: str, limit: int = 100) -> list[dict[str, Any]]:
    _row(conn, account_id, endpoint_id)
    rows = conn.execute(select(webhook_attempts).where(webhook_attempts.c.endpoint_id == endpoint_id)
                        .order_by(webhook_attempts.c.id.desc()).limit(limit)).mappings()
    return [{"at": r["at"], "status_code": r["status_code"], "latency_ms": r["latency_ms"],
             "response": r["response"], "error": r["error"], "deliveries": json.loads(r["delivery_ids"])}
            for r in rows]


def delivery_counts(conn: Connection, endpoint_id: str) -> dict[str, int]:
    rows = conn.execute(select(webhook_deliveries.c.state, func.count()).where(
        webhook_deliveries.c.endpoint_id == endpoint_id).group_by(webhook_deliveries.c.state))
    return {str(s): int(n) for s, n in rows}


def pending_count(conn: Connection) -> int:
    """Outbox rows not fanned out plus deliveries not finished."""
    a = conn.execute(select(func.count()).select_from(webhook_outbox).where(
        webhook_outbox.c.fanned == False)).scalar_one()  # noqa: E712
    b = conn.execute(select(func.count()).select_from(webhook_deliveries).where(
        webhook_deliveries.c.state == "pending")).scalar_one()
    return int(a) + int(b)


def outbox_rows(conn: Connection, ids: list[int]) -> dict[int, dict[str, Any]]:
    """Outbox rows with what their payload needs from the email, the recipient and the client."""
    out: dict[int, dict[str, Any]] = {}
    cols = (webhook_outbox, emails.c.subject, emails.c.source_type, emails.c.source_reference,
            emails.c.source_event, emails.c.metadata_json, clients.c.external_ref.label("client_ref"),
            recipients.c.address, recipients.c.kind, recipients.c.reason.label("recipient_reason"),
            recipients.c.last_reply)
    j = (webhook_outbox.join(emails, emails.c.id == webhook_outbox.c.email_id)
         .join(recipients, recipients.c.id == webhook_outbox.c.recipient_id)
         .outerjoin(clients, clients.c.id == emails.c.client_id))
    for i in range(0, len(ids), 500):
        q = select(*cols).select_from(j).where(webhook_outbox.c.id.in_(ids[i:i + 500]))
        out.update({int(r["id"]): dict(r) for r in conn.execute(q).mappings()})
    wanted = {(r["email_id"], int(json.loads(r["data_json"]).get("link", -1)))
              for r in out.values() if r["type"] == "clicked" and r["data_json"]}
    urls: dict[tuple[str, int], str] = {}
    for email_id in sorted({e for e, _ in wanted}):
        for lk in conn.execute(select(links.c.idx, links.c.url).where(links.c.email_id == email_id)):
            urls[(email_id, int(lk.idx))] = lk.url
    for r in out.values():
        if r["type"] == "clicked" and r["data_json"]:
            r["url"] = urls.get((r["email_id"], int(json.loads(r["data_json"]).get("link", -1))))
    return out


def sample_row(conn: Connection, account_id: int) -> dict[str, Any] | None:
    """The account's latest outbox row (for a test POST), if any."""
    found = conn.execute(select(webhook_outbox.c.id).where(webhook_outbox.c.account_id == account_id)
                         .order_by(webhook_outbox.c.id.desc()).limit(1)).scalar()
    return None if found is None else outbox_rows(conn, [int(found)]).get(int(found))
