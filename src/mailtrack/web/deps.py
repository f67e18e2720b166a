"""Request dependencies for the pages: the signed-in user and CSRF-checked forms."""

from __future__ import annotations

from fastapi import Depends, Request
from starlette.datastructures import FormData

from ..store.db import Store
from .auth import CSRF_FIELD, SESSION_COOKIE, LoginRequired, WebUser, check_csrf, user_from_cookie


async def web_store(request: Request) -> Store:
    store: Store = request.app.state.store
    return store


def current_user(request: Request, store: Store = Depends(web_store)) -> WebUser:
    user = user_from_cookie(request.app.state.web_secret, store, request.cookies.get(SESSION_COOKIE))
    if user is None:
        raise LoginRequired()
    request.state.web_user = user
    return user


async def checked_form(request: Request, user: WebUser = Depends(current_user)) -> FormData:
    """The submitted form, after its CSRF token matched the session's."""
    form = await request.form()
    check_csrf(request.app.state.web_secret, user.nonce, form.get(CSRF_FIELD))
    return form


def local_path(target: str | None, default: str = "/emails") -> str:
    """Only same-site paths: a 'next' of '//evil.test' or 'https://…' would be an open redirect."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return default
    return target
