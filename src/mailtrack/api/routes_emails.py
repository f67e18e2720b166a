"""Submission and read endpoints for emails, recipients and stats."""

from __future__ import annotations

import asyncio
import hashlib
import json
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Depends, Header, Query, Request
from pydantic import BaseModel
from sqlalchemy import Connection
from sqlalchemy.exc import IntegrityError

from ..config import Config
from ..deps import MAX_OFFSET, account_id, get_config, get_store
from ..domains import policy
from ..errors import Conflict, InputError
from ..store import idempotency, pauses, queries, submit
from ..store.db import Store
from ..store.idempotency import Keyed
from ..store.writer import GroupWriter
from .convert import to_new_email
from .schemas import BatchIn, EmailIn

router = APIRouter(prefix="/api/v1", tags=["emails"])
MAX_BATCH = 500
MAX_RECIPIENTS = 1000  # one transaction of this many must stay short: others wait for at most one
"""Recipients per request (To, Cc and Bcc of every email of a batch): more is a 422 stating the limit."""


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


SubmitRequest = tuple[int, list[submit.NewEmail], Keyed | None]
Result = list[tuple[str, bool, dict[str, Any] | None]]


def _submit_many(conn: Connection, requests: list[SubmitRequest]) -> list[Result]:
    """Several requests of one account in one submit() call; the results split back per request.

    A request with an Idempotency-Key seen before (in the database or earlier in this group) is a
    replay: the same fingerprint gets the emails it created, another one a 422 naming the key.
    """
    acct = requests[0][0]
    out: list[Result] = [[] for _ in requests]
    first_of: dict[tuple[str, str], int] = {}  # keys new in this group → the request that creates them
    replays: list[tuple[int, int]] = []
    fresh: list[int] = []
    for i, (_, _, keyed) in enumerate(requests):
        if keyed is not None:
            scope = (keyed.endpoint, keyed.key)
            if scope in first_of:
                _same_body(keyed, requests[first_of[scope]][2])
                replays.append((i, first_of[scope]))
                continue
            prior = idempotency.lookup(conn, acct, keyed.endpoint, keyed.key)
            if prior is not None:
                _same_body(keyed, prior[0])
                out[i] = [(eid, False, None) for eid in prior[1]]
                continue
            first_of[scope] = i
        fresh.append(i)
    flat = submit.submit_described(conn, acct, [e for i in fresh for e in requests[i][1]]) if fresh else []
    pos = 0
    for i in fresh:
        _, news, keyed = requests[i]
        out[i] = flat[pos:pos + len(news)]
        pos += len(news)
        if keyed is not None:
            _save_key(conn, acct, keyed, [eid for eid, *_ in out[i]])
    for i, j in replays:
        out[i] = [(eid, False, None) for eid, *_ in out[j]]
    return out


def _same_body(keyed: Keyed, other: Keyed | str | None) -> None:
    fingerprint = other.fingerprint if isinstance(other, Keyed) else other
    if fingerprint != keyed.fingerprint:
        raise InputError(
            f"Idempotency-Key {keyed.key!r} was already used on POST /api/v1/{keyed.endpoint} with a different "
            "request body; send the same body to get the original result, or use a new key for a new request",
            field="Idempotency-Key",
        )


def _save_key(conn: Connection, acct: int, keyed: Keyed, email_ids: list[str]) -> None:
    try:
        with conn.begin_nested():
            idempotency.save(conn, acct, keyed, email_ids)
    except IntegrityError as e:  # another process is storing the same key right now
        raise Conflict(f"a request with Idempotency-Key {keyed.key!r} is already being processed; retry it",
                       field="Idempotency-Key") from e


def _keyed(endpoint: str, key: str | None, body: BaseModel) -> Keyed | None:
    """The request's idempotency scope: the key (a bare token or an sf-string) and a body fingerprint."""
    if key is None:
        return None
    key = key.strip()
    if len(key) >= 2 and key[0] == key[-1] == '"':
        key = key[1:-1]
    if not key or not key.isprintable() or not key.isascii():
        raise InputError("Idempotency-Key must be 1 to 255 printable ASCII characters", field="Idempotency-Key")
    canon = json.dumps(body.model_dump(mode="json", by_alias=True), sort_keys=True, separators=(",", ":"))
    return Keyed(endpoint, key, hashlib.sha256(canon.encode()).hexdigest())


async def _store_batch(
    request: Request, store: Store, acct: int, news: list[submit.NewEmail], keyed: Keyed | None = None
) -> list[dict[str, Any]]:
    """Queue for the group writer and await its commit: no thread is held while waiting."""
    writer: GroupWriter = request.app.state.writer
    weight = sum(len(n.recipients) for n in news)  # one transaction's work is bounded by recipients
    results = await asyncio.wrap_future(writer.enqueue(("submit", acct), _submit_many, (acct, news, keyed), weight))
    if any(created for _, created, _ in results):
        request.app.state.on_spooled()
    if all(view is not None for *_, view in results):
        return [view for *_, view in results if view is not None]
    return await asyncio.to_thread(_read_back, store, acct, [eid for eid, *_ in results])


def _read_back(store: Store, acct: int, ids: list[str]) -> list[dict[str, Any]]:
    """Idempotent replays: what was stored the first time."""
    with store.read() as conn:
        return queries.get_emails(conn, acct, ids)


def _check_recipients(emails: list[EmailIn], field: str) -> int:
    total = sum(len(e.to) + len(e.cc) + len(e.bcc) for e in emails)
    if total > MAX_RECIPIENTS:
        raise InputError(f"a request holds at most {MAX_RECIPIENTS} recipients (to, cc and bcc of all its emails), "
                         f"got {total}; split it into several requests", field=field)
    return total


@router.post("/emails", status_code=202, summary="Submit one email")
async def post_email(
    body: EmailIn, request: Request,
    idempotency_key: str | None = Header(None, alias="Idempotency-Key", max_length=255),
    acct: int = Depends(account_id), store: Store = Depends(get_store), config: Config = Depends(get_config),
) -> dict[str, Any]:
    _check_recipients([body], "to")
    keyed = _keyed("emails", idempotency_key, body)
    new = to_new_email(body, config.max_message_size, public_url=config.public_url)
    if config.unverified_from == "refuse":
        await asyncio.to_thread(policy.enforce, store, config.unverified_from, acct, [("from", new.from_addr)])
    return (await _store_batch(request, store, acct, [new], keyed))[0]


@router.post("/emails/batch", status_code=202, summary=f"Submit up to {MAX_BATCH} emails")
async def post_batch(
    body: BatchIn, request: Request,
    idempotency_key: str | None = Header(None, alias="Idempotency-Key", max_length=255),
    acct: int = Depends(account_id), store: Store = Depends(get_store), config: Config = Depends(get_config),
) -> dict[str, Any]:
    if len(body.emails) > MAX_BATCH:
        raise InputError(f"a batch holds at most {MAX_BATCH} emails, got {len(body.emails)}", field="emails")
    total = _check_recipients(body.emails, "emails")
    keyed = _keyed("emails/batch", idempotency_key, body)

    def convert() -> list[submit.NewEmail]:
        return [to_new_email(e, config.max_message_size, prefix=f"emails[{i}].", public_url=config.public_url)
                for i, e in enumerate(body.emails)]

    # a big batch is converted in a thread: the event loop keeps answering everyone else meanwhile
    news = await asyncio.to_thread(convert) if total > 200 or len(body.emails) > 20 else convert()
    if config.unverified_from == "refuse":
        await asyncio.to_thread(policy.enforce, store, config.unverified_from, acct,
                                [(f"emails[{i}].from", n.from_addr) for i, n in enumerate(news)])
    return {"emails": await _store_batch(request, store, acct, news, keyed)}


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
