"""Live pages without polling the whole page: a Server-Sent Events stream says *that* something changed;
the page then fetches itself once and swaps only the rows that differ (app.js).

The stream checks a cheap change token every ``CHECK_SECONDS``: the newest event id of one email (an
indexed look-up), or the newest event id overall for the list and the task notes (the primary key's
maximum, whatever the table's size). It carries no data, only "changed"; it ends after
``STREAM_SECONDS`` and the browser's EventSource reconnects by itself.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

from fastapi import APIRouter, Depends, Request
from fastapi.responses import StreamingResponse
from sqlalchemy import func, select

from ..store.db import Store
from ..store.schema import emails, events
from .auth import WebUser
from .deps import current_user, web_store

router = APIRouter(include_in_schema=False)
CHECK_SECONDS = 1.0
HEARTBEAT_SECONDS = 15.0
STREAM_SECONDS = 300.0


def _token(store: Store, account: int, email_id: str | None) -> int:
    with store.read() as conn:
        if email_id:
            q = select(func.max(events.c.id)).where(events.c.email_id == email_id, events.c.account_id == account)
        else:
            q = select(func.max(events.c.id))
        return int(conn.execute(q).scalar() or 0)


def _owns(store: Store, account: int, email_id: str) -> bool:
    with store.read() as conn:
        return conn.execute(select(emails.c.id).where(emails.c.id == email_id, emails.c.account_id == account)
                            ).first() is not None


@router.get("/live/stream", response_model=None)
async def stream(request: Request, email: str | None = None, user: WebUser = Depends(current_user),
                 store: Store = Depends(web_store)) -> StreamingResponse:
    """``event: changed`` whenever the page's data may have changed (``email=`` narrows it to one email)."""
    email_id = email if email and len(email) <= 32 and email.isalnum() else None
    if email_id and not await asyncio.to_thread(_owns, store, user.account_id, email_id):
        email_id = None  # not this account's: fall back to the coarse token, which says nothing about it

    async def events_() -> AsyncIterator[bytes]:
        last = await asyncio.to_thread(_token, store, user.account_id, email_id)
        yield b"retry: 3000\n\n"
        started = beat = time.monotonic()
        while time.monotonic() - started < STREAM_SECONDS:
            if await request.is_disconnected():
                return
            await asyncio.sleep(CHECK_SECONDS)
            now = await asyncio.to_thread(_token, store, user.account_id, email_id)
            if now != last:
                last = now
                yield b"event: changed\ndata: {}\n\n"
            elif time.monotonic() - beat > HEARTBEAT_SECONDS:
                beat = time.monotonic()
                yield b": still here\n\n"

    return StreamingResponse(events_(), media_type="text/event-stream",
                             headers={"x-accel-buffering": "no"})
