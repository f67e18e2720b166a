"""Webhook endpoints, the outbox fan-out, and the delivery queue of signed POSTs.

    webhook_outbox ──fan_out──▶ webhook_deliveries (one per matching endpoint) ──claim──▶ dispatcher
          ▲                  pending ─▶ deleted (counted on the endpoint) | failed      │
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
from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, delete, func, insert, select, update

from ..errors import NotFound
from .ids import new_id
from .schema import (
    links,
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


@dataclass(slots=True)  # not frozen: made for every event a cycle claims, and a frozen __init__ costs 4x
class Claimed:
    id: int
    endpoint_id: str
    outbox_id: int
    attempts: int
    created_at: float


# -- fan-out ----------------------------------------------------------------------------------------

def _pg_ints(ids: list[int]) -> str:
    """A PostgreSQL array literal of integers: psycopg dumps a Python list element by element, in
    Python, and for the thousands of ids a dispatcher cycle names that cost more than the SQL."""
    return "{" + ",".join(map(str, ids)) + "}"


def _ids_sql(conn: Connection, col: str, ids: list[int] | list[str]) -> tuple[str, tuple[Any, ...]]:
    """``col`` is one of ``ids``: one array parameter on PostgreSQL, an IN list on SQLite."""
    if conn.dialect.name == "postgresql":
        if ids and isinstance(ids[0], str):
            return f"{col} = ANY(%s)", (ids,)
        return f"{col} = ANY(%s::bigint[])", (_pg_ints(ids),)  # type: ignore[arg-type]
    return f"{col} IN ({', '.join('?' * len(ids))})", tuple(ids)


def _fetch(conn: Connection, sql: str, args: tuple[Any, ...]) -> list[Any]:
    """All rows of a statement, by the driver's own cursor in one ``fetchall``: for the thousands of
    rows a dispatcher cycle reads, row-by-row fetching costs more than the SQL itself."""
    raw = conn.connection.driver_connection
    assert raw is not None
    cur = raw.cursor()
    try:
        cur.execute(sql, args)
        return list(cur.fetchall())
    finally:
        cur.close()


def _chunks(ids: list[int], n: int = 2000) -> list[list[int]]:
    return [ids[i:i + n] for i in range(0, len(ids), n)]


def fan_out(conn: Connection, now: float, limit: int = 4000, owner: str | None = None,
            lease: float = 0.0) -> list[Claimed]:
    """Turn up to ``limit`` new outbox rows into deliveries for the endpoints that want them.

    Set-based, so no delivery row passes through Python. SQLite: one ``INSERT … SELECT`` per
    endpoint concerned and one ``UPDATE`` marking the rows fanned; the write lock is held, so the new
    rows are exactly the unfanned ones between the first and the last id taken. PostgreSQL: one
    statement, the rows locked (SKIP LOCKED), marked and fanned out (``_FAN_OUT_PG``).

    With an ``owner``, the new deliveries are born claimed by it (leased until ``now + lease``) and
    returned: a fresh event costs no separate claim. Without, they are due now for anyone.
    """
    due = now + lease if owner is not None else now
    if conn.dialect.name == "postgresql":
        return _fan_out_pg(conn, now, limit, owner, due)
    rows = _fetch(conn, f"SELECT id, account_id FROM webhook_outbox WHERE fanned = 0 ORDER BY id LIMIT {int(limit)}",
                  ())
    if not rows:
        return []
    ids = [int(r[0]) for r in rows]
    accounts = sorted({int(r[1]) for r in rows})
    eps = conn.execute(select(webhook_endpoints.c.id, webhook_endpoints.c.account_id, webhook_endpoints.c.events_json)
                       .where(webhook_endpoints.c.account_id.in_(accounts), webhook_endpoints.c.enabled)
                       .order_by(webhook_endpoints.c.id)).all()
    ph = "?"
    which, which_args = "fanned = 0 AND id BETWEEN ? AND ?", (ids[0], ids[-1])
    made: list[Claimed] = []
    for e in eps:
        wanted = sorted(set(json.loads(e.events_json)))
        types, type_args = "", ()
        if "*" not in wanted:
            types, type_args = f" AND type IN ({', '.join([ph] * len(wanted))})", tuple(wanted)
        got = _fetch(conn,
            "INSERT INTO webhook_deliveries (endpoint_id, outbox_id, state, attempts, next_attempt_at, lease_owner, "
            f"created_at) SELECT {ph}, id, 'pending', 0, {ph}, {ph}, {ph} FROM webhook_outbox "
            f"WHERE {which} AND account_id = {ph}{types} ORDER BY id RETURNING id, outbox_id",
            (e.id, due, owner, now, *which_args, int(e.account_id), *type_args))
        made.extend(Claimed(int(r[0]), e.id, int(r[1]), 0, now) for r in got)
    conn.exec_driver_sql(f"UPDATE webhook_outbox SET fanned = 1 WHERE {which}", which_args)
    made.sort(key=lambda c: c.id)
    return made


# PostgreSQL: take the rows (SKIP LOCKED: another dispatcher takes the next ones), mark them fanned
# and make their deliveries in one statement; no outbox id passes through Python.
_FAN_OUT_PG = (
    "WITH taken AS (UPDATE webhook_outbox SET fanned = true WHERE id IN ("
    "SELECT id FROM webhook_outbox WHERE NOT fanned ORDER BY id LIMIT {limit} FOR UPDATE SKIP LOCKED) "
    "RETURNING id, account_id, type) "
    "INSERT INTO webhook_deliveries (endpoint_id, outbox_id, state, attempts, next_attempt_at, lease_owner, "
    "created_at) SELECT e.id, t.id, 'pending', 0, %s, %s, %s FROM taken t JOIN webhook_endpoints e "
    "ON e.account_id = t.account_id AND e.enabled AND e.events_json::jsonb ?| ARRAY['*', t.type] "
    "ORDER BY t.id, e.id RETURNING id, endpoint_id, outbox_id")


def _fan_out_pg(conn: Connection, now: float, limit: int, owner: str | None, due: float) -> list[Claimed]:
    got = _fetch(conn, _FAN_OUT_PG.format(limit=int(limit)), (due, owner, now))
    made = [Claimed(int(r[0]), r[1], int(r[2]), 0, now) for r in got]
    made.sort(key=lambda c: c.id)
    return made


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

def claim(conn: Connection, owner: str, now: float, lease: float, limit: int) -> list[Claimed]:
    """Lease up to ``limit`` due deliveries of enabled endpoints to ``owner``, in one statement."""
    pg = conn.dialect.name == "postgresql"
    ph = "%s" if pg else "?"
    rows = _fetch(conn,
        f"UPDATE webhook_deliveries SET lease_owner = {ph}, next_attempt_at = {ph} WHERE id IN ("
        "SELECT d.id FROM webhook_deliveries d JOIN webhook_endpoints e ON e.id = d.endpoint_id "
        f"WHERE d.next_attempt_at <= {ph} AND e.enabled "
        # index order: no sort of the whole backlog
        f"ORDER BY d.next_attempt_at LIMIT {int(limit)}" + (" FOR UPDATE OF d SKIP LOCKED" if pg else "") + ") "
        "RETURNING id, endpoint_id, outbox_id, attempts, created_at",
        (owner, now + lease, now))
    out = [Claimed(int(r[0]), r[1], int(r[2]), int(r[3]), float(r[4])) for r in rows]
    out.sort(key=lambda c: c.id)
    return out


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


@dataclass(slots=True)  # not frozen: a frozen __init__ costs 7x, and one is made per POST
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


_ATTEMPT_COLS = "endpoint_id, delivery_ids, at, status_code, latency_ms, response, error"


def _insert_attempts(conn: Connection, attempts: list[Attempt]) -> None:
    """The attempt rows, by the driver in one statement: one per POST, so thousands a second.

    PostgreSQL: ``COPY`` (its rows are formatted by psycopg's C code); SQLite: the driver's ``executemany``.
    """
    rows = [(a.endpoint_id, "[" + ",".join(map(str, a.delivery_ids)) + "]", a.at, a.status_code, a.latency_ms,
             a.response, a.error) for a in attempts]
    raw = conn.connection.driver_connection
    assert raw is not None
    cur = raw.cursor()
    try:
        if conn.dialect.name == "postgresql":
            with cur.copy(f"COPY webhook_attempts ({_ATTEMPT_COLS}) FROM STDIN") as copy:
                for r in rows:
                    copy.write_row(r)
        else:
            cur.executemany(f"INSERT INTO webhook_attempts ({_ATTEMPT_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
    finally:
        cur.close()


def record_attempts(conn: Connection, attempts: list[Attempt], owner: str, retry_at: dict[int, float | None],
                    max_age: float) -> None:
    """Write attempt rows and move deliveries on: out of the queue on 2xx (counted on the endpoint),
    retried at ``retry_at[id]`` or failed (None).

    410 Gone disables the endpoint at once; an endpoint failing continuously for ``max_age`` too.
    """
    if not attempts:
        return
    # an endpoint removed while its POSTs were in flight: nothing left to record them against
    # (the driver's own statements on this path: it runs many times a second)
    which, args = _ids_sql(conn, "id", sorted({a.endpoint_id for a in attempts}))
    alive = {r[0] for r in _fetch(conn, f"SELECT id FROM webhook_endpoints WHERE {which}", args)}
    attempts = [a for a in attempts if a.endpoint_id in alive]
    if not attempts:
        return
    _insert_attempts(conn, attempts)
    # what went through leaves the queue (a DELETE costs a third of marking it: migration 0006) and
    # is counted on its endpoint; its POST is the attempt row just written
    done = [d for a in attempts if a.ok for d in a.delivery_ids]
    ph = "%s" if conn.dialect.name == "postgresql" else "?"
    went: Counter[str] = Counter()
    for chunk in _chunks(done):  # counted as deleted: a delivery sent twice (after a lease ran out) counts once
        which, args = _ids_sql(conn, "id", chunk)
        went.update(r[0] for r in _fetch(conn, f"DELETE FROM webhook_deliveries WHERE {which} RETURNING endpoint_id",
                                         args))
    for eid, n in sorted(went.items()):
        conn.exec_driver_sql(f"UPDATE webhook_endpoints SET delivered = delivered + {ph} WHERE id = {ph}", (n, eid))
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
    healthy = [eid for eid, tries in by_ep.items() if tries[-1].ok and all(a.status_code != 410 for a in tries)]
    if healthy:  # one statement for every endpoint whose last POST went through
        which, args = _ids_sql(conn, "id", healthy)
        conn.exec_driver_sql(f"UPDATE webhook_endpoints SET failing_since = NULL WHERE {which} "
                             "AND failing_since IS NOT NULL", args)
    for eid, tries in by_ep.items():
        last = tries[-1]
        if any(a.status_code == 410 for a in tries):
            conn.execute(update(webhook_endpoints).where(webhook_endpoints.c.id == eid).values(
                enabled=False, disabled_reason="the receiver answered 410 Gone", updated_at=last.at))
        elif last.ok:
            continue
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
    """Deliveries by state: ``pending`` and ``failed`` in the queue, ``delivered`` counted on the
    endpoint (ever, retention included); a state with none is left out."""
    rows = conn.execute(select(webhook_deliveries.c.state, func.count()).where(
        webhook_deliveries.c.endpoint_id == endpoint_id).group_by(webhook_deliveries.c.state))
    out = {str(s): int(n) for s, n in rows}
    went = conn.execute(select(webhook_endpoints.c.delivered).where(webhook_endpoints.c.id == endpoint_id)).scalar()
    if went:
        out["delivered"] = int(went)
    return out


def pending_count(conn: Connection) -> int:
    """Outbox rows not fanned out plus deliveries not finished."""
    a = conn.execute(select(func.count()).select_from(webhook_outbox).where(
        webhook_outbox.c.fanned == False)).scalar_one()  # noqa: E712
    b = conn.execute(select(func.count()).select_from(webhook_deliveries).where(
        webhook_deliveries.c.state == "pending")).scalar_one()
    return int(a) + int(b)


_ROW_COLS = ("id", "account_id", "recipient_id", "email_id", "type", "at", "seq", "status", "reason", "data_json",
             "address", "kind", "recipient_reason", "last_reply")
_ROW_SQL = (
    "SELECT o.id, o.account_id, o.recipient_id, o.email_id, o.type, o.at, o.seq, o.status, o.reason, o.data_json, "
    "r.address, r.kind, r.reason, r.last_reply "
    "FROM webhook_outbox o JOIN recipients r ON r.id = o.recipient_id WHERE ")
_EMAIL_COLS = ("subject", "source_type", "source_reference", "source_event", "metadata_json", "client_ref")
_EMAIL_SQL = ("SELECT e.id, e.subject, e.source_type, e.source_reference, e.source_event, e.metadata_json, "
              "c.external_ref FROM emails e LEFT JOIN clients c ON c.id = e.client_id WHERE ")


def outbox_rows(conn: Connection, ids: list[int]) -> dict[int, dict[str, Any]]:
    """Outbox rows with what their payload needs from the email, the recipient and the client.

    Plain driver tuples, one query per 2,000 rows and one for their emails (this runs for every
    event sent; an email's columns are read once, not once per event of it).
    """
    out: dict[int, dict[str, Any]] = {}
    for chunk in _chunks(sorted(set(ids))):
        which, args = _ids_sql(conn, "o.id", chunk)
        for r in _fetch(conn, _ROW_SQL + which, args):
            out[int(r[0])] = dict(zip(_ROW_COLS, r, strict=True))
    emails: dict[str, dict[str, Any]] = {}
    for chunk in _chunks(sorted({r["email_id"] for r in out.values()})):
        which, args = _ids_sql(conn, "e.id", chunk)
        for r in _fetch(conn, _EMAIL_SQL + which, args):
            emails[r[0]] = dict(zip(_EMAIL_COLS, r[1:], strict=True))
    for oid in [oid for oid, r in out.items() if r["email_id"] not in emails]:
        del out[oid]  # the email was deleted meanwhile: nothing left to say
    for r in out.values():
        r.update(emails[r["email_id"]])
    clicks = [r for r in out.values() if r["type"] == "clicked" and r["data_json"]]
    wanted = {(r["email_id"], int(json.loads(r["data_json"]).get("link", -1))) for r in clicks}
    urls: dict[tuple[str, int], str] = {}
    for email_id in sorted({e for e, _ in wanted}):
        for lk in conn.execute(select(links.c.idx, links.c.url).where(links.c.email_id == email_id)):
            urls[(email_id, int(lk.idx))] = lk.url
    for r in clicks:
        r["url"] = urls.get((r["email_id"], int(json.loads(r["data_json"]).get("link", -1))))
    return out


def sample_row(conn: Connection, account_id: int) -> dict[str, Any] | None:
    """The account's latest outbox row (for a test POST), if any."""
    found = conn.execute(select(webhook_outbox.c.id).where(webhook_outbox.c.account_id == account_id)
                         .order_by(webhook_outbox.c.id.desc()).limit(1)).scalar()
    return None if found is None else outbox_rows(conn, [int(found)]).get(int(found))
