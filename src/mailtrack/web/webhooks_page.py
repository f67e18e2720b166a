"""The webhooks page: endpoints with their state and latest attempts; add (secret shown once), enable, remove."""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse, Response
from starlette.datastructures import FormData

from ..errors import MailtrackError
from ..store import webhooks as wh
from ..store.db import Store
from ..store.queries import iso
from ..webhooks import guard, payload
from .auth import WebUser
from .deps import checked_form, current_user, web_store
from .render import page

router = APIRouter(include_in_schema=False)
NOTICES = {"removed": "Endpoint removed.", "enabled": "Endpoint enabled again."}


def _page(request: Request, user: WebUser, store: Store, *, error: str | None = None, secret: str | None = None,
          status_code: int = 200) -> Response:
    with store.read() as conn:
        eps = wh.list_endpoints(conn, user.account_id)
        items: list[dict[str, Any]] = []
        for e in eps:
            attempts = wh.attempts_of(conn, user.account_id, e["id"], 5)
            items.append({**e, "counts": wh.delivery_counts(conn, e["id"]), "failing": iso(e["failing_since"]),
                          "attempts": [{**a, "when": iso(a["at"])} for a in attempts]})
    notice = NOTICES.get(request.query_params.get("notice", "")) if not error else None
    return page(request, "webhooks.html", status_code=status_code, items=items, error=error, secret=secret,
                notice=notice, event_types=payload.EVENT_TYPES)


@router.get("/webhooks", response_model=None)
def webhooks_page(request: Request, user: WebUser = Depends(current_user),
                  store: Store = Depends(web_store)) -> Response:
    return _page(request, user, store)


@router.post("/webhooks", response_model=None)
def webhooks_form(request: Request, form: FormData = Depends(checked_form), user: WebUser = Depends(current_user),
                  store: Store = Depends(web_store)) -> Response:
    action = str(form.get("action") or "add")
    config = request.app.state.config
    try:
        if action == "add":
            url = str(form.get("url") or "").strip()
            events = [str(e) for e in form.getlist("events") if str(e) in (*payload.EVENT_TYPES, "*")] or ["*"]
            if len(url) > 2000:
                raise guard.UnsafeURL("the URL is too long")
            guard.check(url, config.webhook_allow_private)
            with store.write() as conn:
                _, secret = wh.create_endpoint(conn, user.account_id, url, events,
                                               str(form.get("description") or "")[:500],
                                               form.get("batch") == "on", time.time())
            return _page(request, user, store, secret=secret, status_code=201)
        endpoint_id = str(form.get("id") or "")
        with store.write() as conn:
            if action == "remove":
                wh.delete_endpoint(conn, user.account_id, endpoint_id)
            elif action == "enable":
                wh.update_endpoint(conn, user.account_id, endpoint_id, time.time(), enabled=True)
            else:
                return _page(request, user, store, error=f"unknown action {action[:40]!r}", status_code=400)
        return RedirectResponse(f"/webhooks?notice={'removed' if action == 'remove' else 'enabled'}",
                                status_code=303)
    except guard.UnsafeURL as e:
        return _page(request, user, store, error=f"URL refused: {e}", status_code=422)
    except MailtrackError as e:
        return _page(request, user, store, error=e.message, status_code=e.status_code)
