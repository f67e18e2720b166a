"""Actions on the pages: resend to one recipient (a new email linked to the original), unsuppress and
resend, remove many addresses from the suppression list, and the filtered list as CSV.

A resend goes through ``store.submit`` like any new email (suppression check, events, the worker's
queue); the new email's metadata names the original (``resent_from``) so both pages link to each other.
"""

from __future__ import annotations

import csv
import io
import json
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse, Response
from starlette.datastructures import FormData

from ..errors import NotFound
from ..store import accounts, suppressions
from ..store import web as web_q
from ..store.db import Store
from ..store.submit import NewEmail, NewRecipient, submit
from . import zones
from .admin import _cell
from .auth import WebUser
from .deps import checked_form, current_user, web_store
from .explain import summary
from .pages import PAGE_SIZE, parse_filters
from .render import page

router = APIRouter(include_in_schema=False)
CSV_MAX_EMAILS = 100_000
MAX_BULK = 500


def _not_found(request: Request) -> Response:
    return page(request, "error.html", status_code=404, title="Not found",
                message="There is no such recipient in this email (or in your account).")


@router.post("/emails/{email_id}/recipients/{rid}/resend", response_model=None)
def resend(email_id: str, rid: str, request: Request, form: FormData = Depends(checked_form),
           user: WebUser = Depends(current_user), store: Store = Depends(web_store)) -> Response:
    """The same email again, to this one recipient only; with ``unsuppress`` the address leaves the list first."""
    with store.write() as conn:
        found = web_q.recipient_message(conn, user.account_id, email_id, rid)
        if found is None:
            return _not_found(request)
        e, r = found["email"], found["recipient"]
        if form.get("unsuppress") == "1":
            try:
                suppressions.remove(conn, user.account_id, r["address"])
            except NotFound:
                pass  # already off the list: resend all the same
        client = next((c["external_ref"] for c in accounts.list_clients(conn, user.account_id)
                       if c["id"] == e["client_id"]), None)
        meta = {**json.loads(e["metadata_json"] or "{}"), "resent_from": email_id, "resent_recipient": rid}
        new = NewEmail(
            from_addr=e["from_addr"], recipients=[NewRecipient("", r["address"], r["kind"])], subject=e["subject"],
            text=e["text_body"], html=e["html_body"], reply_to=e["reply_to"], to_header=e["to_header"],
            cc_header=e["cc_header"], attachments=list(found["attachments"]),
            headers=json.loads(e["headers_json"] or "{}"), source_type=e["source_type"],
            source_reference=e["source_reference"], source_event=e["source_event"], client=client,
            tracking=e["tracking_override"], metadata={k: str(v) for k, v in meta.items()}, size=e["size"],
        )
        [(new_id, _)] = submit(conn, user.account_id, [new])
    request.app.state.on_spooled()
    return RedirectResponse(f"/emails/{new_id}?notice=resent", status_code=303)


@router.post("/suppressions/remove-many", response_model=None)
def unsuppress_many(request: Request, form: FormData = Depends(checked_form), user: WebUser = Depends(current_user),
                    store: Store = Depends(web_store)) -> Response:
    addresses = [str(a).strip().lower() for a in form.getlist("address") if str(a).strip()][:MAX_BULK]
    removed = 0
    with store.write() as conn:
        for a in addresses:
            try:
                suppressions.remove(conn, user.account_id, a)
                removed += 1
            except NotFound:
                continue  # removed meanwhile (another tab, another person)
    return RedirectResponse(f"/suppressions?notice=unsuppressed-many&n={removed}", status_code=303)


_CSV_HEAD = ["created_at", "email_id", "subject", "source_type", "reference", "event", "client", "address", "kind",
             "status", "reason_summary", "reason", "opens_human", "opens_total", "clicks_human", "clicks_total",
             "marked_as_spam"]


@router.get("/emails.csv", response_model=None)
def emails_csv(request: Request, user: WebUser = Depends(current_user), store: Store = Depends(web_store)) -> Response:
    """The list with the page's filters, one row per recipient (keyset pages, so a big export stays cheap)."""
    params = dict(request.query_params)
    f, _pg, errors = parse_filters(params, zones.of(request))
    if errors:
        return page(request, "error.html", status_code=400, title="Cannot export", message="; ".join(errors))
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(_CSV_HEAD)
    cursor: web_q.Cursor | None = None
    done = 0
    with store.read() as conn:
        while done < CSV_MAX_EMAILS:
            items, more = web_q.email_rows(conn, user.account_id, f, limit=PAGE_SIZE * 10, cursor=cursor)
            for e in items:
                for r in e["recipients"]:
                    w.writerow(_row(e, r))
            done += len(items)
            if not more or not items:
                break
            cursor = web_q.Cursor(float(items[-1]["created_ts"]), str(items[-1]["id"]))
    return Response(buf.getvalue(), media_type="text/csv; charset=utf-8",
                    headers={"Content-Disposition": 'attachment; filename="emails.csv"'})


def _row(e: dict[str, Any], r: dict[str, Any]) -> list[Any]:
    src = e["source"]
    return [e["created_at"], e["id"], _cell(e["subject"] or ""), src["type"] or "", _cell(src["reference"] or ""),
            src["event"] or "", _cell(e["client"] or ""), _cell(r["address"]), r["kind"], r["status"],
            summary(r), _cell(r["reason"] or ""), r["opens"]["human"], r["opens"]["total"], r["clicks"]["human"],
            r["clicks"]["total"], "yes" if r["complained"] else "no"]
