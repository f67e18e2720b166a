"""The FastAPI application: routers, authentication, and one place that turns errors into responses."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Receive, Scope, Send

from ..config import Config
from ..errors import MailtrackError
from ..store.db import Store
from ..store.writer import GroupWriter
from . import routes_admin, routes_domains, routes_emails, routes_keys, routes_unsubscribe, routes_webhooks

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

    from .unavailable import UNAVAILABLE, database_unavailable

    for exc_type in UNAVAILABLE:  # disk full, read-only, unreachable: 503 + Retry-After, not 500
        app.add_exception_handler(exc_type, database_unavailable)

    @app.exception_handler(Exception)
    async def _unexpected(_req: Request, exc: Exception) -> JSONResponse:
        # the server logs the traceback; the caller only learns that it is our fault
        return JSONResponse(error_body("internal error; it has been logged"), status_code=500)


def body_limit(config: Config) -> int:
    """Largest request body: a batch may carry several emails, base64 adds a third to attachments."""
    return 2 * config.max_message_size + 16 * 1024 * 1024


class BodySizeLimit:
    """Refuse a request whose Content-Length is over the limit before reading it: 413 with a message."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            for name, value in scope["headers"]:
                if name == b"content-length" and value.isdigit() and int(value) > self.limit:
                    msg = f"request body is {int(value)} bytes; the limit is {self.limit} bytes"
                    await JSONResponse(error_body(msg, "body"), status_code=413)(scope, receive, send)
                    return
        await self.app(scope, receive, send)


def build_api(config: Config, store: Store, *, on_spooled: Callable[[], None] | None = None) -> FastAPI:
    """The FastAPI app with the JSON API's routers; ``mailtrack.app`` mounts the rest on it.

    ``on_spooled`` wakes an in-process delivery worker.
    """

    app = FastAPI(
        title="mailtrack",
        version="0.1.0",
        description="Email delivery and tracking: submit emails, read per-recipient status and events.",
        # backstop for bodies without Content-Length; BodySizeLimit answers the announced ones
        max_body_size=body_limit(config),
    )
    build = app.build_middleware_stack
    # outermost, so the announced size is judged before FastAPI's own plain-text limit
    app.build_middleware_stack = lambda: BodySizeLimit(build(), body_limit(config))  # type: ignore[method-assign]
    app.state.config = config
    app.state.store = store
    app.state.on_spooled = on_spooled or (lambda: None)
    app.state.writer = GroupWriter(store)
    install_error_handlers(app)
    for router in (routes_emails.router, routes_admin.router, routes_webhooks.router, routes_keys.router,
                   routes_domains.router, routes_unsubscribe.router):
        app.include_router(router)
    routes_webhooks.document(app)
    return app
