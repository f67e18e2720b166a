"""Sign-in, the Email Delivery Status list and one email's page."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from ..errors import MailtrackError
from ..store import accounts, queries
from ..store import web as web_store_q
from ..store.db import Store
from .auth import (
    CSRF_FIELD,
    PRELOGIN_COOKIE,
    SESSION_COOKIE,
    SESSION_SECONDS,
    CsrfError,
    WebUser,
    authenticate,
    check_csrf,
    csrf_token,
    make_session,
)
from .deps import checked_form, current_user, local_path, web_store
from .render import SOURCE_TYPES, STATUS_ORDER, page

router = APIRouter(include_in_schema=False)
PAGE_SIZE = 50


def _secure(request: Request) -> bool:
    return request.url.scheme == "https" or str(request.app.state.config.public_url).startswith("https:")


@router.get("/")
def home() -> RedirectResponse:
    return RedirectResponse("/emails", status_code=303)


@router.get("/login", response_model=None)
def login_form(request: Request, next: str | None = None) -> HTMLResponse:
    nonce = request.cookies.get(PRELOGIN_COOKIE) or secrets.token_urlsafe(16)
    resp = page(request, "login.html", csrf=csrf_token(request.app.state.web_secret, nonce),
                next=local_path(next), error=None, email="")
    resp.set_cookie(PRELOGIN_COOKIE, nonce, max_age=3600, httponly=True, samesite="lax", secure=_secure(request))
    return resp


@router.post("/login", response_model=None)
async def login(request: Request, store: Store = Depends(web_store)) -> Response:
    form = await request.form()
    nonce = request.cookies.get(PRELOGIN_COOKIE)
    if not nonce:
        raise CsrfError("the sign-in form's security cookie is missing; enable cookies and reload the page")
    check_csrf(request.app.state.web_secret, nonce, form.get(CSRF_FIELD))
    email = str(form.get("email") or "").strip().lower()
    password = str(form.get("password") or "")
    nxt = local_path(str(form.get("next") or ""))
    throttle = request.app.state.web_throttle
    error = None
    user = None
    if throttle.blocked(email):
        error = "Too many failed attempts for this address. Wait a few minutes and try again."
    elif not email or not password:
        error = "Enter your email address and password."
    else:
        user = authenticate(store, email, password)
        if user is None:
            throttle.failed(email)
            error = "Wrong email address or password."
    if user is None:
        return page(request, "login.html", status_code=200, csrf=csrf_token(request.app.state.web_secret, nonce),
                    next=nxt, error=error, email=email)
    throttle.succeeded(email)
    resp = RedirectResponse(nxt, status_code=303)
    resp.set_cookie(SESSION_COOKIE, make_session(request.app.state.web_secret, user), max_age=SESSION_SECONDS,
                    httponly=True, samesite="lax", secure=_secure(request))
    resp.delete_cookie(PRELOGIN_COOKIE)
    return resp


@router.post("/logout", response_model=None)
def logout(_form: object = Depends(checked_form)) -> RedirectResponse:
    resp = RedirectResponse("/login", status_code=303)
    resp.delete_cookie(SESSION_COOKIE)
    return resp


def _day(value: str, name: str) -> float:
    try:
        return datetime.strptime(value, "%Y-%m-%d").replace(tzinfo=UTC).timestamp()
    except ValueError:
        raise ValueError(f"{name} must be a date like 2024-05-31, got {value!r}") from None


def parse_filters(params: dict[str, str]) -> tuple[web_store_q.ListFilter, int, list[str]]:
    """Filters from the query string; problems come back as messages, never as a 500."""
    errors: list[str] = []
    f = web_store_q.ListFilter(
        source_reference=params.get("reference", "").strip() or None,
        client=params.get("client", "").strip() or None, q=params.get("q", "").strip() or None,
    )
    st = params.get("source_type", "")
    if st:
        if st in SOURCE_TYPES:
            f.source_type = st
        else:
            errors.append(f"unknown source type {st!r}")
    status = params.get("status", "")
    if status:
        if status in STATUS_ORDER:
            f.status = status
        else:
            errors.append(f"unknown status {status!r}")
    for key in ("since", "until"):
        if params.get(key):
            try:
                t = _day(params[key], key)
            except ValueError as e:
                errors.append(str(e))
                continue
            # 'until' is inclusive: the whole day counts
            setattr(f, key, t if key == "since" else t + timedelta(days=1).total_seconds())
    raw_page = params.get("page", "") or "1"
    pg = 1
    if raw_page.isascii() and raw_page.isdigit() and 0 < int(raw_page) <= 100_000:
        pg = int(raw_page)
    else:
        errors.append(f"page must be a number from 1 to 100000, got {raw_page!r}")
    return f, pg, errors


@router.get("/emails", response_model=None)
def email_list(request: Request, user: WebUser = Depends(current_user), store: Store = Depends(web_store)) -> Response:
    params = dict(request.query_params)
    f, pg, errors = parse_filters(params)
    items: list[dict[str, object]] = []
    more = False
    with store.read() as conn:
        clients = accounts.list_clients(conn, user.account_id)
        if not errors:
            items, more = web_store_q.email_rows(conn, user.account_id, f, limit=PAGE_SIZE,
                                                 offset=(pg - 1) * PAGE_SIZE)
    keep = {k: v for k, v in params.items() if k != "page" and v}
    return page(request, "emails.html", status_code=400 if errors else 200, items=items, more=more,
                page_no=pg, params=keep, clients=clients, errors=errors, page_size=PAGE_SIZE)


@router.get("/emails/{email_id}", response_model=None)
def email_page(email_id: str, request: Request, user: WebUser = Depends(current_user),
               store: Store = Depends(web_store)) -> Response:
    try:
        with store.read() as conn:
            email = queries.get_email(conn, user.account_id, email_id)
    except MailtrackError as e:
        return page(request, "error.html", status_code=e.status_code, title="Email not found", message=e.message)
    from ..domains import policy

    auth = policy.authentication(email["from"], policy.CACHE.get(store, user.account_id))
    return page(request, "email.html", email=email, auth=auth)
