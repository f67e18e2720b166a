"""The FastAPI application: routers, authentication, and one place that turns errors into responses."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..config import Config
from ..errors import MailtrackError
from ..store.db import Store
from ..store.writer import GroupWriter

log = logging.getLogger("mailtrack.api")


def _loc(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    out = ""
    for p in parts:
        out += f"[{p}]" if p.isdigit() else (f".{p}" if out else p)
    return out or "body"


def error_body(message: str, field: str | None = None, **extra: Any) -> dict[str, Any]:
    return {"error": {"message": message, "field": field, **extra}}


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(MailtrackError)
    async def _mailtrack(_req: Request, exc: MailtrackError) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if exc.status_code == 401 else None
        return JSONResponse(error_body(exc.message, exc.field), status_code=exc.status_code, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(_req: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [{"field": _loc(tuple(e.get("loc", ()))), "message": e.get("msg", "invalid")} for e in exc.errors()]
        first = errors[0] if errors else {"field": "body", "message": "invalid request"}
        msg = f"{first['field']}: {first['message']}"
        return JSONResponse(error_body(msg, first["field"], errors=errors), status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_req: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse(error_body(str(exc.detail)), status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(Exception)
    async def _unexpected(_req: Request, exc: Exception) -> JSONResponse:
        # the server logs the traceback; the caller only learns that it is our fault
        return JSONResponse(error_body("internal error; it has been logged"), status_code=500)


def create_app(config: Config, store: Store, *, on_spooled: Callable[[], None] | None = None) -> FastAPI:
    """The whole HTTP surface. ``on_spooled`` wakes an in-process delivery worker."""
    from . import routes_admin, routes_emails

    app = FastAPI(
        title="mailtrack",
        version="0.1.0",
        description="Email delivery and tracking: submit emails, read per-recipient status and events.",
    )
    app.state.config = config
    app.state.store = store
    app.state.on_spooled = on_spooled or (lambda: None)
    app.state.writer = GroupWriter(store)
    install_error_handlers(app)
    app.include_router(routes_emails.router)
    app.include_router(routes_admin.router)
    for extra in _optional_routers():
        extra(app)
    return app


def _optional_routers() -> list[Callable[[FastAPI], None]]:
    """Parts that mount themselves when present (tracking endpoints, web UI)."""
    mounts: list[Callable[[FastAPI], None]] = []
    try:
        from ..tracking.routes import mount as mount_tracking
    except ImportError:
        pass
    else:
        mounts.append(mount_tracking)
    try:
        from ..inbound.routes import mount as mount_inbound
    except ImportError:
        pass
    else:
        mounts.append(mount_inbound)
    try:
        from ..web.routes import mount as mount_web
    except ImportError:
        pass
    else:
        mounts.append(mount_web)
    return mounts
