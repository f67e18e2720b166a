"""One-click unsubscribe (RFC 8058 / RFC 2369): the headers, POST /u/TOKEN, and a GET that changes nothing."""

from __future__ import annotations

import email
import re
from email import policy
from pathlib import Path
from typing import Any

from sqlalchemy import select

from mailtrack.delivery.worker import Worker
from mailtrack.store import queries, suppressions
from mailtrack.store.db import Store
from mailtrack.store.schema import events
from tests.conftest import Api, make_config
from tests.helpers.capture import capture_server
from tests.helpers.worker import run_until

FAST = {"retry_schedule": "0.2s", "max_queue_age": "5s", "smtp_timeout": "5s", "delivery_lease": "5s"}


def body(to: str, source_type: str, **over: Any) -> dict[str, Any]:
    return {"from": "Acme <ops@acme.example>", "to": [to], "subject": "Schedule created", "text": "Hi",
            "source": {"type": source_type, "reference": "S-1"}, **over}


async def test_headers_by_source_type_and_one_click_post(any_store: Store, tmp_path: Path) -> None:
    async with capture_server() as cap:
        config = make_config(tmp_path, transport_map=f"x.test=127.0.0.1:{cap.port}",
                             public_url="https://track.acme.example", **FAST)
        api = Api(any_store, config)
        for b in (body("event@x.test", "event_message"), body("invoice@x.test", "invoice"),
                  body("optin@x.test", "invoice", unsubscribe=True),
                  body("optout@x.test", "event_message", unsubscribe=False)):
            assert api.post("/api/v1/emails", b).status_code == 202
        await run_until(Worker(config, any_store), lambda: len(cap.messages) >= 4)
    got = {m.rcpt_tos[0]: email.message_from_bytes(m.data, policy=policy.default) for m in cap.messages}
    assert got["invoice@x.test"]["List-Unsubscribe"] is None and got["optout@x.test"]["List-Unsubscribe"] is None
    for addr in ("event@x.test", "optin@x.test"):
        msg = got[addr]
        assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        m = re.fullmatch(r"<https://track\.acme\.example/u/([0-9a-f-]+)>,\s*<mailto:unsubscribe\+([0-9a-f-]+)@"
                         + re.escape(config.bounce_domain) + ">", str(msg["List-Unsubscribe"]))
        assert m is not None and m.group(1) == m.group(2), msg["List-Unsubscribe"]
        assert msg["Feedback-ID"].endswith(":mailtrack")
    token = re.search(r"/u/([0-9a-f-]+)>", str(got["event@x.test"]["List-Unsubscribe"])).group(1)  # type: ignore[union-attr]

    def suppressed(addr: str) -> dict[str, str]:
        with any_store.read() as conn:
            return suppressions.suppressed_among(conn, 1, {addr})

    # a link scanner's GET: a page with a button, and nothing changes
    r = api.client.get(f"/u/{token}")
    assert r.status_code == 200 and "event@x.test" in r.text and 'method="post"' in r.text
    assert suppressed("event@x.test") == {}
    # bad tokens: 404, and still nothing changes
    bad = token[:-1] + ("0" if token[-1] != "0" else "1")
    for t in (bad, "nonsense", "x" * 300):
        assert api.client.post(f"/u/{t}", content=b"List-Unsubscribe=One-Click").status_code == 404
        assert api.client.get(f"/u/{t}").status_code == 404
    # the mailbox provider's one-click POST: 200, no redirect, suppressed with source "unsubscribe"
    for _ in range(2):  # a retried POST is fine too
        r = api.client.post(f"/u/{token}", content=b"List-Unsubscribe=One-Click", follow_redirects=False,
                            headers={"Content-Type": "application/x-www-form-urlencoded"})
        assert r.status_code == 200, r.text
    assert "unsubscribed" in suppressed("event@x.test")["event@x.test"]
    with any_store.read() as conn:
        rows, _ = suppressions.search(conn, 1, q="event@")
        kinds = conn.execute(select(events.c.type).where(events.c.type == "unsubscribed")).scalars().all()
    assert rows[0]["source"] == "unsubscribe" and kinds == ["unsubscribed"]
    # the next email to that address is rejected, not sent
    r = api.post("/api/v1/emails", body("event@x.test", "event_message"))
    with any_store.read() as conn:
        view = queries.get_email(conn, 1, r.json()["id"], timeline=False)
    assert view["recipients"][0]["status"] == "rejected"
