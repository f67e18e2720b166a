"""What was sent to one recipient, and what came back: headers, text, a sandboxed HTML preview, the
raw ``.eml``, and the raw bounce / complaint reports received for that recipient.

The message is rebuilt by ``compose`` from the stored email, as the worker builds it, but *without*
the tracking image and link rewriting: opening the preview or the downloaded ``.eml`` must not count
as an open or a click. The DKIM signature and the Date are the sending moment's and are not kept.
"""

from __future__ import annotations

import email
import email.policy
from dataclasses import replace
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from ..compose import EmailSource, build_template
from ..store import web as web_q
from ..store.db import Store
from ..store.queries import iso
from .auth import WebUser
from .deps import current_user, web_store
from .render import page

router = APIRouter(include_in_schema=False)
MAX_SHOWN = 200_000  # characters of a body or report shown on the page; the download has everything


def _load(store: Store, account: int, email_id: str, rid: str) -> dict[str, Any] | None:
    with store.read() as conn:
        return web_q.recipient_message(conn, account, email_id, rid)


def _eml(found: dict[str, Any], request: Request) -> bytes:
    src = replace(EmailSource.from_row(found["email"], found["attachments"]), tracking=False)
    cfg = request.app.state.config
    return build_template(src, date=found["email"]["created_at"]).render(
        found["recipient"]["id"], public_url=str(cfg.public_url), secret=cfg.secret_key or "",
        bounce_domain=getattr(cfg, "bounce_domain", "") or "localhost")


def _parts(raw: bytes) -> tuple[list[tuple[str, str]], str | None, str | None]:
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    headers = [(k, str(v)) for k, v in msg.items()]
    text = html = None
    for part in msg.walk():
        if part.is_multipart() or part.get_content_disposition() == "attachment":
            continue
        if part.get_content_type() == "text/plain" and text is None:
            text = str(part.get_content())
        elif part.get_content_type() == "text/html" and html is None:
            html = str(part.get_content())
    return headers, text, html


def _not_found(request: Request) -> Response:
    return page(request, "error.html", status_code=404, title="Not found",
                message="There is no such recipient in this email (or in your account).")


@router.get("/emails/{email_id}/recipients/{rid}/message", response_model=None)
def message_page(email_id: str, rid: str, request: Request, user: WebUser = Depends(current_user),
                 store: Store = Depends(web_store)) -> Response:
    found = _load(store, user.account_id, email_id, rid)
    if found is None:
        return _not_found(request)
    headers, text, html = _parts(_eml(found, request))
    reports = [{"id": m["id"], "received_at": iso(m["received_at"]), "mail_from": m["mail_from"],
                "kind": m["kind"], "text": bytes(m["raw"])[:MAX_SHOWN].decode("utf-8", "replace")}
               for m in found["reports"]]
    atts = [(n, t, len(d)) for n, t, d in found["attachments"]]
    return page(request, "message.html", email_id=email_id, rcpt=found["recipient"], subject=found["email"]["subject"],
                headers=headers, text=text[:MAX_SHOWN] if text else None, html=html[:MAX_SHOWN] if html else None,
                attachments=atts, reports=reports)


@router.get("/emails/{email_id}/recipients/{rid}/message.eml", response_model=None)
def message_eml(email_id: str, rid: str, request: Request, user: WebUser = Depends(current_user),
                store: Store = Depends(web_store)) -> Response:
    found = _load(store, user.account_id, email_id, rid)
    if found is None:
        return _not_found(request)
    return Response(_eml(found, request), media_type="message/rfc822",
                    headers={"content-disposition": f'attachment; filename="{email_id}-{rid}.eml"'})


@router.get("/emails/{email_id}/recipients/{rid}/reports/{report_id}.eml", response_model=None)
def report_eml(email_id: str, rid: str, report_id: int, request: Request, user: WebUser = Depends(current_user),
               store: Store = Depends(web_store)) -> Response:
    found = _load(store, user.account_id, email_id, rid)
    report = next((m for m in (found or {}).get("reports", []) if m["id"] == report_id), None)
    if found is None or report is None:
        return _not_found(request)
    return Response(bytes(report["raw"]), media_type="message/rfc822",
                    headers={"content-disposition": f'attachment; filename="report-{report_id}.eml"'})
