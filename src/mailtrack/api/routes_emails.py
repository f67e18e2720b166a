"""Submission and read endpoints for emails, recipients and stats."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Depends, Header, Query, Request
from sqlalchemy import Connection

from ..config import Config
from ..domains import policy
from ..errors import InputError
from ..store import pauses, queries, submit
from ..store.db import Store
from ..store.writer import GroupWriter
from .convert import to_new_email
from .deps import MAX_OFFSET, account_id, get_config, get_store
from .schemas import BatchIn, EmailIn

router = APIRouter(prefix="/api/v1", tags=["emails"])
MAX_BATCH = 500


def parse_since(value: str | None, field: str = "since") -> float | None:
    """ISO 8601 date/time or epoch seconds → epoch seconds."""
    if value is None or value == "":
        return None
    try:
        return float(value)
    except ValueError:
        pass
    try:
        dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as e:
        raise InputError(f"{field} must be an ISO 8601 date/time or epoch seconds, got {value!r}", field=field) from e
    if dt.tzinfo is None:
        from datetime import UTC

        dt = dt.replace(tzinfo=UTC)
    return dt.timestamp()


def _submit_many(
    conn: Connection, requests: list[tuple[int, list[submit.NewEmail]]]
) -> list[list[tuple[str, bool, dict[str, Any] | None]]]:
    """Several requests of one account in one submit() call; the results split back per request."""
    acct = requests[0][0]
    flat = submit.submit_described(conn, acct, [e for _, news in requests for e in news])
    out, i = [], 0
    for _, news in requests:
        out.append(flat[i:i + len(news)])
        i += len(news)
    return out


async def _store_batch(request: Request, store: Store, acct: int, news: list[submit.NewEmail]) -> list[dict[str, Any]]:
    """Queue for the group writer and await its commit: no thread is held while waiting."""
    writer: GroupWriter = request.app.state.writer
    results = await asyncio.wrap_future(writer.enqueue(("submit", acct), _submit_many, (acct, news)))
    if any(created for _, created, _ in results):
        request.app.state.on_spooled()
    if all(view is not None for *_, view in results):
        return [view for *_, view in results if view is not None]
    return await asyncio.to_thread(_read_back, store, acct, [eid for eid, *_ in results])


def _read_back(store: Store, acct: int, ids: list[str]) -> list[dict[str, Any]]:
    """Idempotent replays: what was stored the first time."""
    with store.read() as conn:
        return queries.get_emails(conn, acct, ids)


@router.post("/emails", status_code=202, summary="Submit one email")
async def post_email(
    body: EmailIn, request: Request,
    idempotency_key: str | None = Header(None, alias="Idempotency-Key", max_length=200),
    acct: int = Depends(account_id), store: Store = Depends(get_store), config: Config = Depends(get_config),
) -> dict[str, Any]:
    new = to_new_email(body, config.max_message_size, idempotency_key=idempotency_key)
    if config.unverified_from == "refuse":
        await asyncio.to_thread(policy.enforce, store, config.unverified_from, acct, [("from", new.from_addr)])
    return (await _store_batch(request, store, acct, [new]))[0]


@router.post("/emails/batch", status_code=202, summary=f"Submit up to {MAX_BATCH} emails")
async def post_batch(
    body: BatchIn, request: Request,
    idempotency_key: str | None = Header(None, alias="Idempotency-Key", max_length=180),
    acct: int = Depends(account_id), store: Store = Depends(get_store), config: Config = Depends(get_config),
) -> dict[str, Any]:
    if len(body.emails) > MAX_BATCH:
        raise InputError(f"a batch holds at most {MAX_BATCH} emails, got {len(body.emails)}", field="emails")
    news = [
        to_new_email(e, config.max_message_size, prefix=f"emails[{i}].",
                     idempotency_key=f"{idempotency_key}:{i}" if idempotency_key else None)
        for i, e in enumerate(body.emails)
    ]
    if config.unverified_from == "refuse":
        await asyncio.to_thread(policy.enforce, store, config.unverified_from, acct,
                                [(f"emails[{i}].from", n.from_addr) for i, n in enumerate(news)])
    return {"emails": await _store_batch(request, store, acct, news)}


@router.get("/emails", summary="List emails, newest first (what a task's notes area reads)")
def list_emails(
    source_type: str | None = None, source_reference: str | None = None, client: str | None = None,
    status: str | None = None, since: str | None = None,
    limit: int = Query(50, ge=1, le=500), offset: int = Query(0, ge=0, le=MAX_OFFSET),
    acct: int = Depends(account_id), store: Store = Depends(get_store),
) -> dict[str, Any]:
    with store.read() as conn:
        items, total = queries.list_emails(
            conn, acct, source_type=source_type, source_reference=source_reference, client=client,
            status=status, since=parse_since(since), limit=limit, offset=offset,
        )
    nxt = offset + limit if offset + limit < total else None
    return {"emails": items, "total": total, "limit": limit, "offset": offset, "next_offset": nxt}


@router.get("/emails/{email_id}", summary="One email: every recipient's status and the timeline")
def get_email(email_id: str, acct: int = Depends(account_id), store: Store = Depends(get_store)) -> dict[str, Any]:
    with store.read() as conn:
        view = queries.get_email(conn, acct, email_id)
    view.update(policy.authentication(view["from"], policy.CACHE.get(store, acct)))
    return view


@router.get("/recipients/{recipient_id}/events", summary="Every event of one recipient")
def recipient_events(
    recipient_id: str, acct: int = Depends(account_id), store: Store = Depends(get_store)
) -> dict[str, Any]:
    with store.read() as conn:
        return queries.recipient_events(conn, acct, recipient_id)


@router.get("/stats", summary="Recipients per status now, and events per type")
def stats(
    since: str | None = None, acct: int = Depends(account_id), store: Store = Depends(get_store)
) -> dict[str, Any]:
    with store.read() as conn:
        out = queries.stats(conn, acct, parse_since(since))
        # mail providers paused after a rate-limit reply (site-wide: the sending IPs are shared); only when any
        paused = pauses.active(conn)
        if paused:
            out["paused_providers"] = [{"group": p.group, "until": queries.iso(p.until), "reason": p.reason}
                                       for p in paused]
        return out
