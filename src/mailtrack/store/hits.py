"""Opens and clicks: batched recording, link look-ups for the redirect, per-link counts.

Engagement hits are events, not status changes, so they never touch ``recipients.status``;
``record_hits`` is the batched form of ``transitions.record`` for them: one event row per hit
and the recipient's counters updated in the caller's transaction.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, bindparam, func, insert, select, update

from ..domain.status import EventType
from ..errors import NotFound
from .schema import events, links, recipients

MAX_UA = 512
HUMAN = "human"


@dataclass(frozen=True)
class Hit:
    """One pixel load or link click, already classified."""

    recipient_id: str
    type: str  # EventType.OPENED | EventType.CLICKED
    at: float
    ip: str | None
    ua: str | None
    cls: str
    link: int | None = None


@dataclass(frozen=True)
class ClickTarget:
    url: str
    email_id: str
    sent_at: float | None
    link_count: int
    recent: tuple[tuple[float, int], ...]


_COUNTERS = (
    update(recipients)
    .where(recipients.c.id == bindparam("b_id"))
    .values(
        opens_total=recipients.c.opens_total + bindparam("b_ot"),
        opens_human=recipients.c.opens_human + bindparam("b_oh"),
        clicks_total=recipients.c.clicks_total + bindparam("b_ct"),
        clicks_human=recipients.c.clicks_human + bindparam("b_ch"),
        first_opened_at=func.coalesce(recipients.c.first_opened_at, bindparam("b_fo")),
        first_clicked_at=func.coalesce(recipients.c.first_clicked_at, bindparam("b_fc")),
    )
)


def _data(h: Hit) -> str:
    d: dict[str, Any] = {"ip": h.ip, "ua": (h.ua or "")[:MAX_UA], "class": h.cls}
    if h.link is not None:
        d["link"] = h.link
    return json.dumps(d, separators=(",", ":"))


def record_hits(conn: Connection, hits: Sequence[Hit]) -> int:
    """Insert one event per hit and bump counters; hits for unknown recipients are dropped."""
    ids = sorted({h.recipient_id for h in hits})
    owners: dict[str, tuple[str, int]] = {}
    for i in range(0, len(ids), 500):
        chunk = ids[i:i + 500]
        q = select(recipients.c.id, recipients.c.email_id, recipients.c.account_id).where(
            recipients.c.id.in_(chunk))
        owners.update({r.id: (r.email_id, r.account_id) for r in conn.execute(q)})
    rows: list[dict[str, Any]] = []
    per: dict[str, list[Any]] = defaultdict(lambda: [0, 0, 0, 0, None, None])
    for h in hits:
        owner = owners.get(h.recipient_id)
        if owner is None:
            continue
        rows.append({"recipient_id": h.recipient_id, "email_id": owner[0], "account_id": owner[1],
                     "type": h.type, "at": h.at, "reason": None, "data_json": _data(h), "dedupe_key": None})
        c = per[h.recipient_id]
        human = h.cls == HUMAN
        base = 0 if h.type == EventType.OPENED else 2
        c[base] += 1
        if human:
            c[base + 1] += 1
            first = 4 if h.type == EventType.OPENED else 5
            c[first] = h.at if c[first] is None else min(c[first], h.at)
    if not rows:
        return 0
    conn.execute(insert(events), rows)
    # sorted so concurrent writers (several API processes on PostgreSQL) lock rows in one order
    conn.execute(_COUNTERS, [
        {"b_id": rid, "b_ot": c[0], "b_oh": c[1], "b_ct": c[2], "b_ch": c[3], "b_fo": c[4], "b_fc": c[5]}
        for rid, c in sorted(per.items())
    ])
    return len(rows)


def store_links(conn: Connection, email_id: str, urls: Sequence[str]) -> None:
    """The trackable links of an email, fixed at submission (index = position)."""
    if urls:
        conn.execute(insert(links), [{"email_id": email_id, "idx": i, "url": u} for i, u in enumerate(urls)])


def click_target(conn: Connection, recipient_id: str, idx: int, recent_since: float) -> ClickTarget | None:
    """The stored URL for link ``idx`` of the recipient's email, and what classifying the click needs."""
    r = conn.execute(
        select(recipients.c.email_id, links.c.url)
        .select_from(recipients.join(links, links.c.email_id == recipients.c.email_id))
        .where(recipients.c.id == recipient_id, links.c.idx == idx)
    ).first()
    if r is None:
        return None
    count = conn.execute(select(func.count()).select_from(links).where(links.c.email_id == r.email_id)).scalar()
    sent_at = conn.execute(select(func.min(events.c.at)).where(
        events.c.recipient_id == recipient_id, events.c.type == EventType.SENT)).scalar()
    recent = tuple(
        (float(e.at), int(json.loads(e.data_json or "{}").get("link", -1)))
        for e in conn.execute(select(events.c.at, events.c.data_json).where(
            events.c.recipient_id == recipient_id, events.c.type == EventType.CLICKED,
            events.c.at >= recent_since).limit(200))
    )
    return ClickTarget(url=r.url, email_id=r.email_id, sent_at=sent_at, link_count=int(count or 0), recent=recent)


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
