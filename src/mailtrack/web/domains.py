"""The "Sending domains" page: the DNS records to publish (with copy buttons) and the state of each check."""

from __future__ import annotations

from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse, Response
from starlette.datastructures import FormData

from ..config import Config
from ..domains import service
from ..errors import MailtrackError
from ..store.db import Store
from .auth import WebUser
from .deps import checked_form, current_user, web_store
from .render import page

router = APIRouter(include_in_schema=False)
PATH = "/sending-domains"
NOTICES = {"added": "Sending domain added: publish its records, then check them.", "checked": "Records checked.",
           "removed": "Sending domain removed."}


def _config(request: Request) -> Config:
    config: Config = request.app.state.config
    return config


def _page(request: Request, user: WebUser, store: Store, error: str | None = None, status_code: int = 200) -> Response:
    views = service.listing(store, _config(request), user.account_id)
    notice = None if error else NOTICES.get(request.query_params.get("notice", ""))
    return page(request, "domains.html", status_code=status_code, domains=views, notice=notice, error=error)


@router.get(PATH, response_model=None)
def domains_page(request: Request, user: WebUser = Depends(current_user),
                 store: Store = Depends(web_store)) -> Response:
    return _page(request, user, store)


@router.post(PATH, response_model=None)
def add_domain(request: Request, form: FormData = Depends(checked_form), user: WebUser = Depends(current_user),
               store: Store = Depends(web_store)) -> Response:
    try:
        service.add(store, _config(request), user.account_id, str(form.get("domain") or ""),
                    return_path=str(form.get("return_path") or "").strip() or None)
    except MailtrackError as e:
        return _page(request, user, store, error=e.message, status_code=e.status_code)
    return RedirectResponse(f"{PATH}?{urlencode({'notice': 'added'})}", status_code=303)


@router.post(PATH + "/check", response_model=None)
def check_domain(request: Request, form: FormData = Depends(checked_form), user: WebUser = Depends(current_user),
                 store: Store = Depends(web_store)) -> Response:
    try:
        service.check(store, _config(request), str(form.get("domain") or ""), user.account_id)
    except MailtrackError as e:
        return _page(request, user, store, error=e.message, status_code=e.status_code)
    return RedirectResponse(f"{PATH}?{urlencode({'notice': 'checked'})}", status_code=303)
