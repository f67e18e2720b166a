"""Operator endpoints: /healthz, /readyz, /metrics and the admin queue API.

``/healthz`` answers while the process runs. ``/readyz`` says whether this process can do its job
(JSON, 503 when not): the database answers, its schema is the newest migration, the delivery worker
running here has a fresh heartbeat, the inbound SMTP server running here listens. ``/metrics``
needs ``Authorization: Bearer MAILTRACK_METRICS_TOKEN`` when that is set. The admin queue API
(``/api/v1/admin/queue…``) needs ``Authorization: Bearer MAILTRACK_ADMIN_TOKEN`` and is off without it.
"""

from __future__ import annotations

import asyncio
import hmac
import time
from functools import cache
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field
from sqlalchemy import text

from ..errors import AuthError, InputError, MailtrackError, NotFound
from ..store import queue
from ..store import workers as wstore
from ..store.db import Store
from . import scrape

public = APIRouter(tags=["operations"])
admin = APIRouter(prefix="/api/v1/admin", tags=["operations"])


class Forbidden(MailtrackError):
    status_code = 403


@cache
def _migration_head() -> str | None:
    from alembic.config import Config as AlembicConfig
    from alembic.script import ScriptDirectory

    from ..store import db

    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(db._HERE / "migrations"))
    return ScriptDirectory.from_config(cfg).get_current_head()


def _check_store(store: Store, dead_after: float) -> dict[str, Any]:
    out: dict[str, Any] = {}
    try:
        with store.read() as conn:
            conn.execute(text("SELECT 1"))
            out["database"] = "ok"
            current = conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
            now = time.time()
            out["workers_alive"] = sum(1 for w in wstore.listed(conn) if now - w.heartbeat_at <= dead_after)
        head = _migration_head()
        out["migrations"] = "current" if current == head else f"database at {current}, code at {head}"
    except Exception as e:  # any failure here is the answer, not a 500
        out["database"] = f"unreachable: {type(e).__name__}"
    return out


@public.get("/healthz", summary="The process answers")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@public.get("/readyz", summary="Ready to serve: database, migrations, worker heartbeat, inbound listener")
async def readyz(request: Request) -> JSONResponse:
    state = request.app.state
    dead_after = float(getattr(state.config, "worker_dead_after", 15.0))
    checks = await asyncio.to_thread(_check_store, state.store, dead_after)
    ready = checks.get("database") == "ok" and checks.get("migrations") == "current"
    worker = getattr(state, "worker", None)
    if worker is not None:
        beat = worker.last_beat
        age = None if beat is None else time.time() - beat
        checks["worker_heartbeat_age"] = None if age is None else round(age, 1)
        fresh = age is not None and age <= dead_after
        checks["worker"] = "fresh" if fresh else "stale"
        ready = ready and fresh
    inbound = getattr(state, "inbound", None)
    if inbound is not None:
        server = getattr(inbound, "_server", None)
        listening = server is not None and server.is_serving()
        checks["inbound"] = "listening" if listening else "not listening"
        ready = ready and listening
    checks["status"] = "ready" if ready else "not ready"
    return JSONResponse(checks, status_code=200 if ready else 503)


def _bearer(request: Request) -> str:
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    return value.strip() if scheme.lower() == "bearer" else ""


def _token_ok(given: str, wanted: str) -> bool:
    return hmac.compare_digest(given.encode(), wanted.encode())


@public.get("/metrics", summary="Prometheus metrics (Bearer MAILTRACK_METRICS_TOKEN when set)")
async def metrics(request: Request) -> Response:
    config = request.app.state.config
    wanted = getattr(config, "metrics_token", "")
    if wanted and not _token_ok(_bearer(request), wanted):
        raise AuthError("metrics need 'Authorization: Bearer MAILTRACK_METRICS_TOKEN'")
    body, ctype = await asyncio.to_thread(scrape.render, request.app.state.store,
                                          float(getattr(config, "worker_dead_after", 15.0)))
    return Response(body, media_type=ctype)


async def require_admin(request: Request) -> Store:
    """The store, for a caller holding the admin token."""
    wanted = getattr(request.app.state.config, "admin_token", "")
    given = _bearer(request)
    if not given:
        raise AuthError("missing admin API key: send 'Authorization: Bearer MAILTRACK_ADMIN_TOKEN'"
                        + ("" if wanted else " (the admin API is off until that is set)"))
    if not wanted:
        raise Forbidden("the admin API is off: set MAILTRACK_ADMIN_TOKEN to use it")
    if not _token_ok(given, wanted):
        raise AuthError("wrong admin API key: send 'Authorization: Bearer MAILTRACK_ADMIN_TOKEN'")
    store: Store = request.app.state.store
    return store


class Target(BaseModel):
    """Exactly one of: a recipient id, a destination (recipient domain), all."""

    recipient_id: str | None = Field(None, max_length=32)
    destination: str | None = Field(None, min_length=1, max_length=255)
    all: bool = False


class HoldIn(BaseModel):
    destination: str = Field(min_length=1, max_length=255)
    reason: str | None = Field(None, max_length=500)


def _selection(t: Target) -> queue.Selection:
    try:
        return queue.Selection(t.recipient_id, t.destination, t.all)
    except ValueError as e:
        raise InputError(str(e), field="body") from e


def queue_view(rows: list[queue.QueueRow], holds: list[tuple[str, float, str | None]]) -> dict[str, Any]:
    return {"queue": [{"destination": r.destination, "state": r.state, "count": r.count,
                       "oldest_age_seconds": round(r.oldest_age, 1)} for r in rows],
            "holds": [{"destination": d, "held_at": at, "reason": why} for d, at, why in holds]}


@admin.get("/queue", summary="Queued recipients by destination and state, with the oldest age")
def list_queue(destination: str | None = None, store: Store = Depends(require_admin)) -> dict[str, Any]:
    with store.read() as conn:
        return queue_view(queue.summary(conn, time.time(), destination), queue.holds(conn))


@admin.post("/queue/hold", summary="Hold a destination: nothing is sent to it until released")
def hold(body: HoldIn, store: Store = Depends(require_admin)) -> dict[str, Any]:
    with store.write() as conn:
        new = queue.hold(conn, body.destination, time.time(), body.reason)
    return {"destination": body.destination.strip().lower(), "held": True, "already_held": not new}


@admin.post("/queue/release", summary="Release a held destination; what waited is due at once")
def release(body: HoldIn, store: Store = Depends(require_admin)) -> dict[str, Any]:
    with store.write() as conn:
        n = queue.release(conn, body.destination, time.time())
    if n is None:
        raise NotFound(f"{body.destination!r} is not on hold", field="destination")
    return {"destination": body.destination.strip().lower(), "released": n}


@admin.post("/queue/retry", summary="Make queued recipients due now")
def retry(body: Target, store: Store = Depends(require_admin)) -> dict[str, Any]:
    sel = _selection(body)
    with store.write() as conn:
        n = queue.retry(conn, sel, time.time())
    return {"due_now": n}


@admin.post("/queue/drop", summary="End queued recipients as soft bounces 'removed by operator'")
def drop(body: Target, store: Store = Depends(require_admin)) -> dict[str, Any]:
    sel = _selection(body)
    with store.write() as conn:
        dropped, busy = queue.drop(conn, sel, time.time())
    return {"dropped": dropped, "in_flight_left": busy}


def mount(app: FastAPI) -> None:
    from .logs import RequestIds

    app.include_router(public)
    app.include_router(admin)
    app.add_middleware(RequestIds)
