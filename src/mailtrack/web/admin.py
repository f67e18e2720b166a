"""Settings ("Print/Email Layout Defaults": tracking site switch, client overrides) and the suppression list."""

from __future__ import annotations

import csv
import io
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse, Response
from starlette.datastructures import FormData

from ..domain.addresses import AddressError, parse_address
from ..errors import MailtrackError
from ..store import accounts, suppressions
from ..store.db import Store
from ..store.queries import iso
from . import zones
from .auth import WebUser
from .deps import checked_form, current_user, web_store
from .render import page

router = APIRouter(include_in_schema=False)

NOTICES = {
    "tracking-on": "Tracking is now on for the site.",
    "tracking-off": "Tracking is now off for the site.",
    "client-saved": "Client tracking saved.",
    "client-added": "Client added.",
    "suppressed": "Address added to the suppression list.",
    "already": "That address was already on the suppression list.",
    "unsuppressed": "Address removed from the suppression list.",
    "tz-saved": "Time zone saved for your account.",
}
_CHOICES = {"inherit": None, "on": True, "off": False}


def _back(path: str, notice: str, **params: str) -> RedirectResponse:
    query = urlencode({"notice": notice, **{k: v for k, v in params.items() if v}})
    return RedirectResponse(f"{path}?{query}", status_code=303)


def _notice(request: Request) -> str | None:
    if request.query_params.get("notice") == "unsuppressed-many":
        n = request.query_params.get("n", "0")
        return f"{n if n.isdigit() else 0} address(es) removed from the suppression list."
    return NOTICES.get(request.query_params.get("notice", ""))


def _settings_page(request: Request, user: WebUser, store: Store, error: str | None = None,
                   status_code: int = 200) -> Response:
    with store.read() as conn:
        account = accounts.get_account(conn, user.account_id)
        clients = accounts.list_clients(conn, user.account_id)
    return page(request, "settings.html", status_code=status_code, track_default=bool(account["track_default"]),
                zone_names=zones.names(), tz_chosen=bool(user.time_zone),
                clients=clients, notice=None if error else _notice(request), error=error)


@router.get("/settings", response_model=None)
def settings(request: Request, user: WebUser = Depends(current_user), store: Store = Depends(web_store)) -> Response:
    return _settings_page(request, user, store)


@router.post("/settings/tracking", response_model=None)
def set_tracking(form: FormData = Depends(checked_form), user: WebUser = Depends(current_user),
                 store: Store = Depends(web_store)) -> Response:
    enabled = form.get("enabled") == "on"
    with store.write() as conn:
        accounts.set_track_default(conn, user.account_id, enabled)
    return _back("/settings", "tracking-on" if enabled else "tracking-off")


def _choice(form: FormData) -> bool | None:
    value = str(form.get("tracking") or "inherit")
    if value not in _CHOICES:
        raise ValueError(f"tracking must be inherit, on or off, got {value!r}")
    return _CHOICES[value]


@router.post("/settings/clients", response_model=None)
def add_client(request: Request, form: FormData = Depends(checked_form), user: WebUser = Depends(current_user),
               store: Store = Depends(web_store)) -> Response:
    ref = str(form.get("external_ref") or "").strip()
    name = str(form.get("name") or "").strip() or None
    try:
        tracking = _choice(form)
        if not ref or len(ref) > 200 or (name and len(name) > 200):
            raise ValueError("a client needs a reference of 1 to 200 characters (name: at most 200)")
        with store.write() as conn:
            accounts.create_client(conn, user.account_id, ref, name, tracking)
    except (ValueError, MailtrackError) as e:
        msg = e.message if isinstance(e, MailtrackError) else str(e)
        return _settings_page(request, user, store, error=msg, status_code=400)
    return _back("/settings", "client-added")


@router.post("/settings/clients/{client_id}/tracking", response_model=None)
def client_tracking(client_id: int, request: Request, form: FormData = Depends(checked_form),
                    user: WebUser = Depends(current_user), store: Store = Depends(web_store)) -> Response:
    try:
        tracking = _choice(form)
        with store.write() as conn:
            # by numeric id, scoped to the account; find_client would also match a ref that looks numeric
            found = [c for c in accounts.list_clients(conn, user.account_id) if c["id"] == client_id]
            if not found:
                raise ValueError(f"no client #{client_id} in this account")
            accounts.set_client_tracking(conn, user.account_id, found[0]["external_ref"], tracking)
    except ValueError as e:
        return _settings_page(request, user, store, error=str(e), status_code=400)
    return _back("/settings", "client-saved")


@router.post("/settings/timezone", response_model=None)
def set_timezone(request: Request, form: FormData = Depends(checked_form), user: WebUser = Depends(current_user),
                 store: Store = Depends(web_store)) -> Response:
    """Fix the zone the user's pages use (in every browser), or go back to following each browser's."""
    choice = str(form.get("tz") or "")
    resp = _back("/settings", "tz-saved")
    if choice == "browser":
        with store.write() as conn:
            accounts.set_time_zone(conn, user.id, None)
        resp.delete_cookie(zones.TZ_CHOSEN_COOKIE)
        return resp
    if choice != "UTC" and choice not in zones.names():
        return _settings_page(request, user, store, error=f"unknown time zone {choice[:64]!r}", status_code=400)
    with store.write() as conn:
        accounts.set_time_zone(conn, user.id, choice)
    resp.set_cookie(zones.TZ_COOKIE, choice, max_age=400 * 86400, samesite="lax")
    resp.set_cookie(zones.TZ_CHOSEN_COOKIE, "1", max_age=400 * 86400, samesite="lax")
    return resp


# --- suppression list -------------------------------------------------------------------------

def _suppressions_page(request: Request, user: WebUser, store: Store, error: str | None = None,
                       status_code: int = 200, q: str | None = None) -> Response:
    q = q if q is not None else request.query_params.get("q", "").strip()
    raw = request.query_params.get("page", "1")
    pg = int(raw) if raw.isascii() and raw.isdigit() and 0 < int(raw) <= 100_000 else 1
    with store.read() as conn:
        rows, total = suppressions.search(conn, user.account_id, q or None, 100, (pg - 1) * 100)
    items = [{**r, "created": iso(r["created_at"])} for r in rows]
    return page(request, "suppressions.html", status_code=status_code, items=items, total=total, q=q, page_no=pg,
                more=pg * 100 < total, notice=None if error else _notice(request), error=error)


@router.get("/suppressions", response_model=None)
def suppression_list(request: Request, user: WebUser = Depends(current_user),
                     store: Store = Depends(web_store)) -> Response:
    return _suppressions_page(request, user, store)


@router.post("/suppressions", response_model=None)
def suppress(request: Request, form: FormData = Depends(checked_form), user: WebUser = Depends(current_user),
             store: Store = Depends(web_store)) -> Response:
    raw = str(form.get("address") or "").strip()
    reason = str(form.get("reason") or "").strip() or "added manually"
    try:
        _, addr = parse_address(raw, "address")
        if len(reason) > 500:
            raise AddressError("the reason can be at most 500 characters")
    except AddressError as e:
        return _suppressions_page(request, user, store, error=str(e), status_code=400, q="")
    with store.write() as conn:
        added = suppressions.add(conn, user.account_id, addr, reason, "manual")
    return _back("/suppressions", "suppressed" if added else "already", q=addr.lower())


@router.post("/suppressions/remove", response_model=None)
def unsuppress(request: Request, form: FormData = Depends(checked_form), user: WebUser = Depends(current_user),
               store: Store = Depends(web_store)) -> Response:
    addr = str(form.get("address") or "").strip()
    try:
        with store.write() as conn:
            suppressions.remove(conn, user.account_id, addr)
    except MailtrackError as e:
        return _suppressions_page(request, user, store, error=e.message, status_code=e.status_code, q="")
    return _back("/suppressions", "unsuppressed")


@router.get("/suppressions.csv", response_model=None)
def suppressions_csv(user: WebUser = Depends(current_user), store: Store = Depends(web_store)) -> Response:
    with store.read() as conn:
        rows, _ = suppressions.search(conn, user.account_id, None, 10**9, 0)
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["address", "reason", "source", "created_at"])
    for r in rows:
        # a leading = + - @ makes spreadsheets run the cell as a formula; bounce texts are not ours
        w.writerow([_cell(r["address"]), _cell(r["reason"]), r["source"], iso(r["created_at"])])
    return Response(buf.getvalue(), media_type="text/csv; charset=utf-8",
                    headers={"Content-Disposition": 'attachment; filename="suppressions.csv"'})


def _cell(value: str) -> str:
    return "'" + value if value[:1] in ("=", "+", "-", "@", "\t", "\r") else value
