"""Task notes: one source reference's emails with status symbols, as a page, an embeddable
fragment and JSON (``symbols.py`` derives the symbols for all three)."""

from __future__ import annotations

import hmac
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from ..deps import account_id
from ..store import web as web_q
from ..store.db import Store
from .auth import SESSION_COOKIE, WebUser, mac, user_from_cookie
from .deps import current_user, web_store
from .render import page
from .symbols import note_view

router = APIRouter(include_in_schema=False)
api_router = APIRouter(prefix="/api/v1", tags=["notes"])
MAX_NOTES = 200


def embed_token(secret: str, account: int, reference: str) -> str:
    """A token that shows this one reference's notes and nothing else (safer in a host page than a key)."""
    return f"{account}.{mac(secret, 'embed', f'{account}:{reference}')}"


def _token_account(secret: str, token: str, reference: str) -> int | None:
    acct, dot, _ = token.partition(".")
    if not dot or not (acct.isascii() and acct.isdigit()) or len(acct) > 18:
        return None
    return int(acct) if hmac.compare_digest(token, embed_token(secret, int(acct), reference)) else None


def _notes(store: Store, account: int, reference: str) -> tuple[list[dict[str, Any]], bool]:
    with store.read() as conn:
        return web_q.email_rows(conn, account, web_q.ListFilter(source_reference=reference), limit=MAX_NOTES)


@router.get("/tasks/{reference:path}", response_model=None)
def task_notes(reference: str, request: Request, user: WebUser = Depends(current_user),
               store: Store = Depends(web_store)) -> Response:
    items, more = _notes(store, user.account_id, reference)
    embed = f"/embed/notes/{quote(reference, safe='')}?token=" + embed_token(
        request.app.state.web_secret, user.account_id, reference)
    return page(request, "tasks.html", reference=reference, items=items, more=more, embed_url=embed)


@router.get("/embed/notes/{reference:path}", response_model=None)
def embed_notes(reference: str, request: Request, key: str | None = None, token: str | None = None,
                store: Store = Depends(web_store)) -> Response:
    secret = request.app.state.web_secret
    account: int | None = None
    if key is not None:
        # a key in a URL ends up in access logs and Referer headers: refuse it, whether valid or not
        return page(request, "error.html", status_code=401, title="API key in a URL",
                    message="An API key is never accepted in a URL. Embed the notes with the ?token= "
                            "from GET /api/v1/notes/{reference} (it shows that one reference only), "
                            "and revoke the key you used here: `mailtrack apikey revoke KEY`.")
    if token:
        account = _token_account(secret, token, reference)
    else:
        user = user_from_cookie(secret, store, request.cookies.get(SESSION_COOKIE))
        account = user.account_id if user else None
    if account is None:
        return page(request, "embed_denied.html", status_code=401)
    items, more = _notes(store, account, reference)
    return page(request, "embed.html", reference=reference, items=items, more=more)


@api_router.get("/notes/{reference:path}", summary="A task's notes: each email of a source reference with its "
                "status symbols (spooling, sent, opened, clicked, soft_bounce, hard_bounce, rejected, spam)")
def api_notes(reference: str, request: Request, acct: int = Depends(account_id),
              store: Store = Depends(web_store)) -> dict[str, Any]:
    items, more = _notes(store, acct, reference)
    base = str(request.app.state.config.public_url).rstrip("/")
    token = embed_token(request.app.state.web_secret, acct, reference)
    return {
        "reference": reference,
        "notes": [note_view(e) for e in items],
        "truncated": more,
        "embed_url": f"{base}/embed/notes/{quote(reference, safe='')}?token={token}",
    }
