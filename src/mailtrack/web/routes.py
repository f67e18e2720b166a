"""The web UI, mounted into the API app by ``create_app``."""

from __future__ import annotations

import secrets
from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.responses import RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from . import actions, admin, dashboard, domains, errors, live, message, notes, pages, webhooks_page
from .auth import CsrfError, LoginRequired, Throttle
from .render import HERE, SecurityHeaders, page

DEFAULT_FRAME_ANCESTORS = "'self'"


def mount(app: FastAPI) -> None:
    config = app.state.config
    # Without a configured key, sessions still must not be forgeable: use a per-process one
    # (everyone signs in again after a restart).
    app.state.web_secret = config.secret_key or secrets.token_hex(32)
    app.state.web_throttle = Throttle()
    frame_ancestors = getattr(config, "embed_frame_ancestors", "") or DEFAULT_FRAME_ANCESTORS
    app.add_middleware(SecurityHeaders, frame_ancestors=frame_ancestors)
    app.add_exception_handler(LoginRequired, _login_required)
    errors.install(app)
    app.add_exception_handler(CsrfError, _csrf_failed)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="web-static")
    app.include_router(pages.router)
    app.include_router(message.router)
    app.include_router(actions.router)
    app.include_router(dashboard.router)
    app.include_router(live.router)
    app.include_router(admin.router)
    app.include_router(notes.router)
    app.include_router(notes.api_router)
    app.include_router(webhooks_page.router)
    app.include_router(domains.router)


async def _login_required(request: Request, _exc: Exception) -> Response:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    if request.method != "GET":
        target = "/emails"
    return RedirectResponse(f"/login?next={quote(target, safe='')}", status_code=303)


async def _csrf_failed(request: Request, exc: Exception) -> Response:
    return page(request, "error.html", status_code=403, title="Form expired or forged",
                message=f"Forbidden (CSRF check failed): {exc}. Reload the page and submit the form again.")
