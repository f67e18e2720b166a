"""Error pages for people: a browser asking for a page gets HTML 404/500, ``/api`` keeps its JSON."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from .render import page

log = logging.getLogger("mailtrack.web")
Handler = Callable[[Request, Any], Awaitable[Response] | Response]

_TITLES = {404: "Page not found", 405: "Not allowed here", 500: "Something went wrong"}
_MESSAGES = {
    404: "There is no page at this address. It may have been mistyped, or the link is out of date.",
    405: "This address does not accept that kind of request.",
    500: "mailtrack hit an internal error and has logged it. Try again in a moment.",
}


def wants_html(request: Request) -> bool:
    """A browser navigating to a page (not the API, not a script asking for JSON)."""
    path = request.url.path
    if path.startswith(("/api/", "/o/", "/c/", "/docs", "/openapi")) or path == "/api":
        return False
    return "text/html" in request.headers.get("accept", "")


def _html(request: Request, status: int) -> Response:
    resp = page(request, "error.html", status_code=status, title=_TITLES[status], message=_MESSAGES[status])
    # outside the web paths SecurityHeaders does not run; the page still gets the same protection
    resp.headers.setdefault("content-security-policy", "default-src 'self'")
    resp.headers.setdefault("x-frame-options", "DENY")
    resp.headers.setdefault("x-content-type-options", "nosniff")
    return resp


def install(app: FastAPI) -> None:
    """Wrap the JSON handlers already installed: HTML for browsers, the same JSON for everyone else."""
    json_http: Handler | None = app.exception_handlers.get(StarletteHTTPException)
    json_any: Handler | None = app.exception_handlers.get(Exception)

    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        if wants_html(request) and exc.status_code in _TITLES:
            return _html(request, exc.status_code)
        return await _call(json_http, request, exc)

    async def server_error(request: Request, exc: Exception) -> Response:
        if wants_html(request):
            log.exception("error on %s", request.url.path, exc_info=exc)
            return _html(request, 500)
        return await _call(json_any, request, exc)

    app.add_exception_handler(StarletteHTTPException, http_error)  # type: ignore[arg-type]
    app.add_exception_handler(Exception, server_error)


async def _call(handler: Handler | None, request: Request, exc: Exception) -> Response:
    if handler is None:
        raise exc
    out = handler(request, exc)
    return await out if isinstance(out, Awaitable) else out
