"""Mounts tracking on the app: the /o/ and /c/ fast path (outermost) and the per-link counts API.

``GET /o/{token}.gif`` and ``GET /c/{token}`` are served by :class:`TrackingFastPath` before
FastAPI routing (for throughput), so they are not in the OpenAPI document; see fastpath.py.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, FastAPI
from starlette.types import ASGIApp

from ..deps import account_id, get_store
from ..store import hits as store_hits
from ..store.db import Store
from .fastpath import TrackingFastPath

router = APIRouter(prefix="/api/v1", tags=["tracking"])


@router.get("/recipients/{recipient_id}/links",
            summary="One recipient's tracked links with click counts (total and human)")
def recipient_links(
    recipient_id: str, acct: int = Depends(account_id), store: Store = Depends(get_store)
) -> dict[str, Any]:
    with store.read() as conn:
        return store_hits.link_stats(conn, acct, recipient_id)


def mount(app: FastAPI) -> None:
    """``app.state.tracking_recorder``, set before the first request, overrides the default recorder."""
    app.include_router(router)
    build = app.build_middleware_stack

    def build_with_tracking() -> ASGIApp:
        # outside every other middleware (sessions, error pages): a pixel hit needs none of them
        state = app.state
        fast = TrackingFastPath(build(), store=state.store, secret=state.config.secret_key,
                                recorder=getattr(state, "tracking_recorder", None))
        app.state.tracking = fast
        return fast

    app.build_middleware_stack = build_with_tracking  # type: ignore[method-assign]


def warm_up(app: FastAPI) -> None:
    """Build the middleware stack and start the hit writer now, so the first hits are written at once.

    Blocking (it starts a process): call it in a thread. Only for a server that will serve hits.
    """
    if app.middleware_stack is None:
        app.middleware_stack = app.build_middleware_stack()
    fast = getattr(app.state, "tracking", None)
    if isinstance(fast, TrackingFastPath):
        fast.recorder.ensure_writer()
