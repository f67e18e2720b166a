"""Opens and clicks: batched recording, link look-ups for the redirect, per-link counts.

Engagement hits are events, not status changes, so they never touch ``recipients.status``;
``record_hits`` is the fast batched form of the status-change core for them: one event row per hit,
the recipient's counters, and the core's effects (``effects.apply``: the webhook outbox) in the
caller's transaction.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Sequence
from typing import Any, NamedTuple

from sqlalchemy import Connection, func, insert, select

from ..domain.status import EventType
from ..errors import NotFound
from . import effects
from .schema import events, links, recipients

MAX_UA = 512
HUMAN = "human"


class Hit(NamedTuple):
    """One pixel load or link click, already classified (a tuple: cheap to make and to pickle)."""

    recipient_id: str
    type: str  # EventType.OPENED | EventType.CLICKED
    at: float
    ip: str | None
    ua: str | None
    cls: str
    link: int | None = None


_EVENT_COLS = "recipient_id, email_id, account_id, type, at, data_json"
_CHUNK = 200  # rows per INSERT statement: one statement step instead of one per row
_UA_JSON: dict[str, str] = {}


def _ph(conn: Connection) -> str:
    return "%s" if conn.dialect.name == "postgresql" else "?"


def _json_str(value: str | None) -> str:
    return json.dumps(value)


def _ua_json(ua: str | None) -> str:
    """UAs repeat a lot (a few mail clients and proxies), so their JSON form is memoised."""
    key = ua or ""
    got = _UA_JSON.get(key)
    if got is None:
        if len(_UA_JSON) > 10_000:
            _UA_JSON.clear()
        got = _UA_JSON[key] = json.dumps(key[:MAX_UA])
    return got


def _data(h: Hit) -> str:
    link = f',"link":{int(h.link)}' if h.link is not None else ""
    return f'{{"ip":{_json_str(h.ip)},"ua":{_ua_json(h.ua)},"class":{_json_str(h.cls)}{link}}}'


class _Owner(NamedTuple):
    email_id: str
    account_id: int
    address: str
    status: str
    seq: int


def _owners(conn: Connection, ids: list[str]) -> dict[str, _Owner]:
    """The recipients' rows, locked on PostgreSQL in id order: their sequence numbers move on here."""
    owners: dict[str, _Owner] = {}
    lock = conn.dialect.name == "postgresql"
    for i in range(0, len(ids), 500):
        q = select(recipients.c.id, recipients.c.email_id, recipients.c.account_id, recipients.c.address,
                   recipients.c.status, recipients.c.event_seq).where(
            recipients.c.id.in_(ids[i:i + 500])).order_by(recipients.c.id)
        if lock:
            q = q.with_for_update()
        owners.update({r.id: _Owner(r.email_id, int(r.account_id), r.address, r.status, int(r.event_seq or 0))
                       for r in conn.execute(q)})
    return owners


def record_hits(conn: Connection, hits: Sequence[Hit], known: dict[str, tuple[str, int]] | None = None) -> int:
    """Insert one event per hit, bump counters, and hand the events to the core's effects (webhook outbox).

    Hits for unknown recipients are dropped. ``known`` is filled with the recipients found
    (id → (email id, account id)); the rows are read (and on PostgreSQL locked) for every batch
    all the same: each hit takes the recipient's next webhook ``sequence`` number.

    Plain SQL with multi-row VALUES: at thousands of hits per second the per-row cost of
    compiled constructs and of one statement step per row (each a GIL hand-off) dominates.
    """
    owners = _owners(conn, sorted({h.recipient_id for h in hits}))
    if known is not None:  # the caller counts per batch which hits had a recipient
        if len(known) > 100_000:
            known.clear()
        known.update({rid: (o.email_id, o.account_id) for rid, o in owners.items()})
    rows: list[tuple[Any, ...]] = []
    recorded: list[effects.Recorded] = []
    per: dict[str, list[Any]] = defaultdict(lambda: [0, 0, 0, 0, None, None, 0])
    seqs = {rid: o.seq for rid, o in owners.items()}
    for h in hits:
        owner = owners.get(h.recipient_id)
        if owner is None:
            continue
        data = _data(h)
        rows.append((h.recipient_id, owner.email_id, owner.account_id, str(h.type), h.at, data))
        seq = seqs[h.recipient_id] = seqs[h.recipient_id] + 1
        recorded.append(effects.Recorded(owner.account_id, owner.email_id, h.recipient_id, owner.address,
                                         str(h.type), h.at, seq, owner.status, None, data))
        c = per[h.recipient_id]
        c[6] = seq
        base = 0 if h.type == EventType.OPENED else 2
        c[base] += 1
        if h.cls == HUMAN:
            c[base + 1] += 1
            first = 4 if h.type == EventType.OPENED else 5
            c[first] = h.at if c[first] is None else min(c[first], h.at)
    if not rows:
        return 0
    n = len(rows)
    ph = _ph(conn)
    one = "(" + ", ".join([ph] * 6) + ")"
    if conn.dialect.name == "postgresql" and conn.dialect.driver == "psycopg":
        _copy_events(conn, rows)
        rows = []
    for i in range(0, len(rows), _CHUNK):
        chunk = rows[i:i + _CHUNK]
        sql = f"INSERT INTO events ({_EVENT_COLS}) VALUES " + ", ".join([one] * len(chunk))
        conn.exec_driver_sql(sql, tuple(v for row in chunk for v in row))
    # sorted so concurrent writers (several API processes on PostgreSQL) lock rows in one order
    conn.exec_driver_sql(
        f"UPDATE recipients SET opens_total = opens_total + {ph}, opens_human = opens_human + {ph}, "
        f"clicks_total = clicks_total + {ph}, clicks_human = clicks_human + {ph}, "
        f"first_opened_at = COALESCE(first_opened_at, {ph}), first_clicked_at = COALESCE(first_clicked_at, {ph}), "
        f"event_seq = {ph} WHERE id = {ph}",
        [(c[0], c[1], c[2], c[3], c[4], c[5], c[6], rid) for rid, c in sorted(per.items())],
    )
    effects.apply(conn, recorded)
    return n


def _copy_events(conn: Connection, rows: list[tuple[Any, ...]]) -> None:
    """PostgreSQL's COPY: no statement to parse and plan per chunk of rows."""
    raw = conn.connection.driver_connection
    assert raw is not None
    with raw.cursor() as cur, cur.copy(f"COPY events ({_EVENT_COLS}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row(row)


def store_links(conn: Connection, email_id: str, urls: Sequence[str]) -> None:
    """The trackable links of an email, fixed at submission (index = position)."""
    if urls:
        conn.execute(insert(links), [{"email_id": email_id, "idx": i, "url": u} for i, u in enumerate(urls)])


def link_url(conn: Connection, recipient_id: str, idx: int) -> str | None:
    """The URL stored at submission for link ``idx`` of the recipient's email."""
    return conn.execute(
        select(links.c.url)
        .select_from(recipients.join(links, links.c.email_id == recipients.c.email_id))
        .where(recipients.c.id == recipient_id, links.c.idx == idx)
    ).scalar()


def click_contexts(conn: Connection, recipient_ids: Sequence[str], recent_since: float
                   ) -> dict[str, tuple[float | None, int, list[tuple[float, int]]]]:
    """Per recipient: (first ``sent`` time, links in its email, its clicks since ``recent_since``).

    What classifying a click needs from the store, for a whole batch in three queries; the hit
    writer asks for it, so the redirect itself never reads the database.
    """
    out: dict[str, tuple[float | None, int, list[tuple[float, int]]]] = {}
    ids = sorted(set(recipient_ids))
    for i in range(0, len(ids), 500):
        chunk = ids[i:i + 500]
        sent = dict(conn.execute(
            select(events.c.recipient_id, func.min(events.c.at))
            .where(events.c.recipient_id.in_(chunk), events.c.type == EventType.SENT)
            .group_by(events.c.recipient_id)).tuples().all())
        counts: dict[str, int] = dict(conn.execute(
            select(recipients.c.id, func.count(links.c.idx))
            .select_from(recipients.join(links, links.c.email_id == recipients.c.email_id))
            .where(recipients.c.id.in_(chunk)).group_by(recipients.c.id)).tuples().all())
        recent: dict[str, list[tuple[float, int]]] = defaultdict(list)
        for e in conn.execute(select(events.c.recipient_id, events.c.at, events.c.data_json).where(
                events.c.recipient_id.in_(chunk), events.c.type == EventType.CLICKED,
                events.c.at >= recent_since).order_by(events.c.at).limit(200 * len(chunk))):
            recent[e.recipient_id].append((float(e.at), int(json.loads(e.data_json or "{}").get("link", -1))))
        for rid in chunk:
            at = sent.get(rid)
            out[rid] = (float(at) if at is not None else None, int(counts.get(rid, 0)), recent.get(rid, []))
    return out


def link_stats(conn: Connection, account_id: int, recipient_id: str) -> dict[str, Any]:
    """Per-link click counts (total / human) for one recipient of this account."""
    r = conn.execute(select(recipients.c.email_id).where(
        recipients.c.id == recipient_id, recipients.c.account_id == account_id)).first()
    if r is None:
        raise NotFound(f"no recipient {recipient_id!r} in this account")
    counts: dict[int, list[int]] = defaultdict(lambda: [0, 0])
    for e in conn.execute(select(events.c.data_json).where(
            events.c.recipient_id == recipient_id, events.c.type == EventType.CLICKED)):
        data = json.loads(e.data_json or "{}")
        c = counts[int(data.get("link", -1))]
        c[0] += 1
        c[1] += data.get("class") == HUMAN
    out = [
        {"index": lk.idx, "url": lk.url, "clicks": {"total": counts[lk.idx][0], "human": counts[lk.idx][1]}}
        for lk in conn.execute(select(links.c.idx, links.c.url).where(links.c.email_id == r.email_id)
                               .order_by(links.c.idx))
    ]
    return {"recipient_id": recipient_id, "email_id": r.email_id, "links": out}
