"""One-click unsubscribe (RFC 8058): ``POST /u/TOKEN`` unsubscribes, ``GET /u/TOKEN`` only asks.

Link scanners and prefetchers fetch every URL in a message with GET, so GET changes nothing: it shows
a page whose button POSTs. Mailbox providers POST ``List-Unsubscribe=One-Click`` themselves and must
get a 200 without a redirect. A token that does not verify is a 404, the same as an unknown one.
"""

from __future__ import annotations

import asyncio
import html

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse

from .. import tokens
from ..config import Config
from ..deps import get_config, get_store
from ..errors import NotFound
from ..store import unsubscribes
from ..store.db import Store

router = APIRouter(tags=["unsubscribe"], include_in_schema=True)

_PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="robots" content="noindex">
<meta name="viewport" content="width=device-width, initial-scale=1"><title>{title}</title></head>
<body style="font-family:sans-serif;max-width:32rem;margin:3rem auto;padding:0 1rem">{body}</body></html>"""


def _recipient(token: str, config: Config) -> str:
    rid = tokens.parse_unsubscribe(config.secret_key, token)
    if rid is None:
        raise NotFound("no such unsubscribe link")
    return rid


@router.get("/u/{token}", response_class=HTMLResponse, summary="Confirmation page (changes nothing)")
def confirm(token: str, store: Store = Depends(get_store), config: Config = Depends(get_config)) -> HTMLResponse:
    rid = _recipient(token, config)
    with store.read() as conn:
        address = unsubscribes.find(conn, rid)
    if address is None:
        raise NotFound("no such unsubscribe link")
    body = (f"<h1>Unsubscribe</h1><p>Stop sending email to <strong>{html.escape(address)}</strong>?</p>"
            f'<form method="post" action="/u/{html.escape(token)}">'
            '<input type="hidden" name="List-Unsubscribe" value="One-Click">'
            '<button type="submit">Unsubscribe</button></form>')
    return HTMLResponse(_PAGE.format(title="Unsubscribe", body=body),
                        headers={"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"})


@router.post("/u/{token}", response_class=HTMLResponse, summary="One-click unsubscribe (RFC 8058)")
async def unsubscribe(token: str, request: Request, store: Store = Depends(get_store),
                      config: Config = Depends(get_config)) -> HTMLResponse:
    rid = _recipient(token, config)
    # RFC 8058 senders POST "List-Unsubscribe=One-Click"; the body is not required to act on it
    via = "one-click" if b"one-click" in (await request.body())[:200].lower() else "web"
    def run() -> unsubscribes.Unsubscribed | None:
        with store.write() as conn:
            return unsubscribes.unsubscribe(conn, rid, via)

    done = await asyncio.to_thread(run)
    if done is None:
        raise NotFound("no such unsubscribe link")
    body = f"<h1>Unsubscribed</h1><p>{html.escape(done.address)} will get no more email from this sender.</p>"
    return HTMLResponse(_PAGE.format(title="Unsubscribed", body=body), headers={"Cache-Control": "no-store"})
