"""Sign-in, the Email Delivery Status list and one email's page."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from ..errors import MailtrackError
from ..store import accounts, queries, suppressions
from ..store import web as web_store_q
from ..store.db import Store
from . import timeline, zones
from .auth import (
    CSRF_FIELD,
    MAX_EMAIL,
    MAX_LOGIN_BODY,
    MAX_PASSWORD,
    PRELOGIN_COOKIE,
    SESSION_COOKIE,
    SESSION_SECONDS,
    CsrfError,
    WebUser,
    authenticate,
    check_csrf,
    csrf_token,
    end_session,
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
    nonce = request.cookies.get(PRELOGIN_COOKIE)
    length = request.headers.get("content-length", "")
    if not (length.isascii() and length.isdigit()) or int(length) > MAX_LOGIN_BODY:
        # refused before the form is read: an oversize field costs neither memory nor a hash
        known = length.isascii() and length.isdigit()
        refusal = ("The sign-in form is too large: check the email address and password." if known
                 else "The sign-in form must be sent with its length (Content-Length).")
        return page(request, "login.html", status_code=413 if known else 411,
                    csrf=csrf_token(request.app.state.web_secret, nonce or ""), next="/emails", error=refusal, email="")
    form = await request.form()
    if not nonce:
        raise CsrfError("the sign-in form's security cookie is missing; enable cookies and reload the page")
    check_csrf(request.app.state.web_secret, nonce, form.get(CSRF_FIELD))
    email = str(form.get("email") or "").strip().lower()
    password = str(form.get("password") or "")
    nxt = local_path(str(form.get("next") or ""))
    throttle = request.app.state.web_throttle
    ip = request.client.host if request.client else "?"
    error = None
    user = None
    if len(email) > MAX_EMAIL or len(password) > MAX_PASSWORD:
        error = (f"The email address (at most {MAX_EMAIL} characters) or the password "
                 f"(at most {MAX_PASSWORD}) is too long.")
        email = ""
    elif not email or not password:
        error = "Enter your email address and password."
    elif (refused := throttle.blocked(ip, email)) is not None:
        error = refused
    else:
        user = authenticate(store, email, password)
        if user is None:
            throttle.failed(ip, email)
            error = "Wrong email address or password."
    if user is None:
        return page(request, "login.html", status_code=200, csrf=csrf_token(request.app.state.web_secret, nonce),
                    next=nxt, error=error, email=email)
    throttle.succeeded(ip, email)
    resp = RedirectResponse(nxt, status_code=303)
    resp.set_cookie(SESSION_COOKIE, make_session(store, user), max_age=SESSION_SECONDS,
                    httponly=True, samesite="lax", secure=_secure(request))
    resp.delete_cookie(PRELOGIN_COOKIE)
    return resp


@router.post("/logout", response_model=None)
def logout(request: Request, _form: object = Depends(checked_form), store: Store = Depends(web_store)) -> Response:
    end_session(store, request.cookies.get(SESSION_COOKIE))  # the cookie is worthless from now on, everywhere
    resp = RedirectResponse("/login", status_code=303)
    resp.delete_cookie(SESSION_COOKIE)
    return resp


def parse_filters(params: dict[str, str], tz: tzinfo = UTC) -> tuple[web_store_q.ListFilter, int, list[str]]:
    """Filters from the query string (days in the reader's zone); problems come back as messages, never a 500."""
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
    for key, label in (("since", "From"), ("until", "To")):
        if params.get(key):
            try:
                t = zones.day_start(params[key], label, tz)
                if key == "until":  # inclusive: up to the next midnight in this zone (23 or 25 hours on DST days)
                    nxt = datetime.strptime(params[key], "%Y-%m-%d") + timedelta(days=1)
                    t = zones.day_start(f"{nxt:%Y-%m-%d}", label, tz)
            except (ValueError, OverflowError) as e:
                errors.append(str(e) if isinstance(e, ValueError) else f"{label} is out of range")
                continue
            setattr(f, key, t)
    raw_page = params.get("page", "") or "1"
    pg = 1
    if raw_page.isascii() and raw_page.isdigit() and 0 < int(raw_page) <= 100_000:
        pg = int(raw_page)
    else:
        errors.append(f"page must be a number from 1 to 100000, got {raw_page!r}")
    return f, pg, errors


def _pager(page_no: int, pages: int) -> list[int | None]:
    """Page numbers to link: the first, the last and two either side of this one (None is a gap)."""
    want = sorted({1, pages, *range(max(1, page_no - 2), min(pages, page_no + 2) + 1)} - {0})
    out: list[int | None] = []
    for n in want:
        if out and out[-1] is not None and n - out[-1] > 1:
            out.append(None)
        out.append(n)
    return out


@router.get("/emails", response_model=None)
def email_list(request: Request, user: WebUser = Depends(current_user), store: Store = Depends(web_store)) -> Response:
    params = dict(request.query_params)
    f, pg, errors = parse_filters(params, zones.of(request))
    cursor: web_store_q.Cursor | None = None
    if params.get("at"):
        try:
            cursor = web_store_q.Cursor.parse(params["at"])
        except ValueError as e:
            errors.append(str(e))
    items: list[dict[str, Any]] = []
    more = False
    total = 0
    with store.read() as conn:
        clients = accounts.list_clients(conn, user.account_id)
        if not errors:
            total = web_store_q.count_emails(conn, user.account_id, f)
            items, more = web_store_q.email_rows(conn, user.account_id, f, limit=PAGE_SIZE,
                                                 offset=(pg - 1) * PAGE_SIZE, cursor=cursor)
    newer = older = None
    if cursor is not None and cursor.newer:
        pg = pg if more else 1  # reached the newest page
        has_newer, has_older = more, True
    else:
        has_newer, has_older = pg > 1, more
    if items and has_newer:
        first = items[0]
        newer = web_store_q.Cursor(float(first["created_ts"]), str(first["id"]), newer=True).token()
    if items and has_older:
        last = items[-1]
        older = web_store_q.Cursor(float(last["created_ts"]), str(last["id"])).token()
    pages = max(1, -(-total // PAGE_SIZE))
    keep = {k: v for k, v in params.items() if k not in ("page", "at") and v}
    return page(request, "emails.html", status_code=400 if errors else 200, items=items, more=more,
                page_no=pg, params=keep, clients=clients, errors=errors, page_size=PAGE_SIZE, total=total,
                pages=pages, pager=_pager(pg, pages), newer=newer, older=older)


@router.get("/emails/{email_id}", response_model=None)
def email_page(email_id: str, request: Request, user: WebUser = Depends(current_user),
               store: Store = Depends(web_store)) -> Response:
    try:
        with store.read() as conn:
            email = queries.get_email(conn, user.account_id, email_id)
            listed = suppressions.suppressed_among(conn, user.account_id,
                                                   {r["address"].lower() for r in email["recipients"]})
    except MailtrackError as e:
        return page(request, "error.html", status_code=e.status_code, title="Email not found", message=e.message)
    from ..domains import policy

    auth = policy.authentication(email["from"], policy.CACHE.get(store, user.account_id))
    all_steps = timeline.steps(email["timeline"])
    return page(request, "email.html", email=email, steps=all_steps, steps_by=timeline.by_recipient(all_steps),
                listed=listed, auth=auth)
