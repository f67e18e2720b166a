"""Read API for received reports: ``GET /api/v1/inbound?state=…`` (mount with ``mount(app)``)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, FastAPI, Query

from ..deps import MAX_OFFSET, account_id, get_store
from ..store import inbound
from ..store.db import Store
from ..store.queries import iso

router = APIRouter(prefix="/api/v1")


@router.get("/inbound", tags=["inbound"], summary="Bounces, complaints and auto-replies received for this account")
def list_inbound(
    state: str | None = Query(None, pattern="^(stored|applied|orphan|unparsed)$",
                              description="stored, applied, orphan or unparsed"),
    limit: int = Query(100, ge=1, le=1000), offset: int = Query(0, ge=0, le=MAX_OFFSET),
    acct: int = Depends(account_id), store: Store = Depends(get_store),
) -> dict[str, Any]:
    """Reports correlated to this account's recipients, newest first (raw bytes left out).

    Orphans belong to no account, so an API key never sees them; they are for the operator.
    """
    with store.read() as conn:
        rows, total = inbound.search(conn, state=state, account_id=acct, limit=limit, offset=offset)
    for r in rows:
        r["received_at"] = iso(r["received_at"])
    return {"inbound": rows, "total": total}


def mount(app: FastAPI) -> None:
    app.include_router(router)
