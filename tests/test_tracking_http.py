"""Pixel and click endpoints on a real app and store (SQLite and PostgreSQL)."""

from __future__ import annotations

import email
import re
import time
from typing import Any

import pytest
from sqlalchemy import func, select

from mailtrack import tokens
from mailtrack.inject import personalize_html
from mailtrack.store import transitions
from mailtrack.store.schema import events, links
from mailtrack.tracking.fastpath import GIF

from .conftest import Api, email_body

HTML = """<html><body><p>Your task sheet</p>
<a href="https://portal.acme.test/tasks/42?a=1&amp;b=2">Open task</a>
<a HREF='https://docs.acme.test/manual.pdf'>Manual</a>
<a href="mailto:ops@acme.test">Mail us</a>
</body></html>"""
BROWSER = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36"


def _html_part(raw: bytes) -> str | None:
    for part in email.message_from_bytes(raw).walk():
        if part.get_content_type() == "text/html":
            payload = part.get_payload(decode=True)
            assert isinstance(payload, bytes)
            return payload.decode(part.get_content_charset() or "utf-8")
    return None


def composed_html(api: Api, email_id: str, rid: str) -> str | None:
    """The HTML this recipient is sent: the delivery engineer's compose when present."""
    from mailtrack.store.schema import emails

    with api.store.read() as conn:
        row = conn.execute(select(emails).where(emails.c.id == email_id)).mappings().one()
    try:
        from mailtrack.compose import Composer, EmailSource
    except ImportError:
        if not row["tracking"] or row["html_body"] is None:
            return row["html_body"]
        return personalize_html(row["html_body"], email_id=email_id, recipient_id=rid,
                                public_url=api.config.public_url, secret=api.config.secret_key)
    composer = Composer(secret=api.config.secret_key, bounce_domain=api.config.bounce_domain,
                        public_url=api.config.public_url)
    return _html_part(composer.compose(EmailSource.from_row(dict(row)), rid, "x@example.test").data)


def paths(html: str) -> tuple[str, list[str]]:
    """(pixel path, click paths) found in a composed HTML body."""
    pixel = re.findall(r'src="https?://[^/"]+(/o/[^"]+)"', html)
    clicks = re.findall(r"""href=["']https?://[^/"']+(/c/[^"']+)["']""", html, re.IGNORECASE)
    assert len(pixel) == 1
    return pixel[0], clicks


def submit(api: Api, **over: Any) -> dict[str, Any]:
    body = email_body(to=["alice@example.test", "bob@example.test"], cc=[], bcc=[], html=HTML, **over)
    r = api.post("/api/v1/emails", body)
    assert r.status_code == 202, r.text
    return dict(r.json())


def view(api: Api, email_id: str) -> dict[str, Any]:
    r = api.get(f"/api/v1/emails/{email_id}")
    assert r.status_code == 200
    return {x["address"]: x for x in r.json()["recipients"]}


def count_events(api: Api, rid: str, type_: str) -> int:
    with api.store.read() as conn:
        return int(conn.execute(select(func.count()).select_from(events).where(
            events.c.recipient_id == rid, events.c.type == type_)).scalar_one())


def mark_sent(api: Api, rid: str, at: float) -> None:
    with api.store.write() as conn:
        transitions.record(conn, transitions.Change(rid, "sent", at=at))


@pytest.fixture
def sent_email(api: Api) -> tuple[dict[str, Any], dict[str, str]]:
    e = submit(api)
    rids = {r["address"]: r["id"] for r in e["recipients"]}
    for rid in rids.values():
        mark_sent(api, rid, time.time() - 3600)
    return e, rids


def test_open_and_click_count_for_their_recipient_only(api: Api, sent_email: Any) -> None:
    e, rids = sent_email
    html_a = composed_html(api, e["id"], rids["alice@example.test"])
    html_b = composed_html(api, e["id"], rids["bob@example.test"])
    assert html_a and html_b and html_a != html_b
    pixel_a, clicks_a = paths(html_a)
    assert len(clicks_a) == 2 and "mailto:ops@acme.test" in html_a
    r = api.client.get(pixel_a, headers={"User-Agent": BROWSER})
    assert r.status_code == 200 and r.content == GIF and r.headers["content-type"] == "image/gif"
    assert "no-store" in r.headers["cache-control"] and "set-cookie" not in r.headers
    r = api.client.get(clicks_a[0], headers={"User-Agent": BROWSER}, follow_redirects=False)
    assert r.status_code == 302
    assert r.headers["location"] == "https://portal.acme.test/tasks/42?a=1&b=2"
    assert "no-store" in r.headers["cache-control"] and "set-cookie" not in r.headers
    api.settle()
    got = view(api, e["id"])
    a, b = got["alice@example.test"], got["bob@example.test"]
    assert a["opens"] == {"total": 1, "human": 1} and a["clicks"] == {"total": 1, "human": 1}
    assert a["first_opened_at"] and a["first_clicked_at"]
    assert b["opens"] == {"total": 0, "human": 0} and b["clicks"] == {"total": 0, "human": 0}
    assert b["first_opened_at"] is None and b["first_clicked_at"] is None
    assert a["status"] == "sent"  # engagement never changes the delivery status
    timeline = [(t["type"], t["recipient_id"]) for t in api.get(f"/api/v1/emails/{e['id']}").json()["timeline"]]
    assert ("opened", rids["alice@example.test"]) in timeline
    assert ("opened", rids["bob@example.test"]) not in timeline
    ev = api.get(f"/api/v1/recipients/{rids['alice@example.test']}/events").json()["events"]
    clicked = next(x for x in ev if x["type"] == "clicked")
    assert clicked["data"]["link"] == 0 and clicked["data"]["class"] == "human"
    assert clicked["data"]["ua"] == BROWSER


def test_per_link_counts_and_account_scoping(api: Api, sent_email: Any) -> None:
    e, rids = sent_email
    rid = rids["alice@example.test"]
    _, clicks = paths(composed_html(api, e["id"], rid) or "")
    api.client.get(clicks[1], headers={"User-Agent": BROWSER}, follow_redirects=False)
    api.client.get(clicks[1], headers={"User-Agent": "curl/8.5.0"}, follow_redirects=False)
    api.settle()
    r = api.get(f"/api/v1/recipients/{rid}/links")
    assert r.status_code == 200
    got = {lk["index"]: (lk["url"], lk["clicks"]) for lk in r.json()["links"]}
    assert got == {0: ("https://portal.acme.test/tasks/42?a=1&b=2", {"total": 0, "human": 0}),
                   1: ("https://docs.acme.test/manual.pdf", {"total": 2, "human": 1})}
    other = api.new_key("globex")
    assert api.get(f"/api/v1/recipients/{rid}/links", key=other).status_code == 404
    assert api.client.get(f"/api/v1/recipients/{rid}/links").status_code == 401


def _flip(token: str, at: int) -> str:
    c = token[at]
    return token[:at] + ("0" if c != "0" else "1") + token[at + 1:]


def test_tampered_tokens_count_nothing(api: Api, sent_email: Any) -> None:
    _e, rids = sent_email
    a, b = rids["alice@example.test"], rids["bob@example.test"]
    secret = api.config.secret_key
    open_a = tokens.open_token(secret, a)
    click_a = tokens.click_token(secret, a, 0)
    mac = open_a.rpartition("-")[2]
    forged_opens = [
        _flip(open_a, 0), _flip(open_a, len(open_a) - 1), f"{b}-{mac}",  # A's mac on B's id
        tokens.open_token("wrong-secret", b), tokens.click_token(secret, b, 0),  # a click token as a pixel
        open_a + "0", "", "x" * 300,
    ]
    for t in forged_opens:
        r = api.client.get(f"/o/{t}.gif", headers={"User-Agent": BROWSER})
        assert r.status_code == 200 and r.content == GIF, t
    cmac = click_a.rpartition("-")[2]
    forged_clicks = [
        _flip(click_a, 3), _flip(click_a, len(click_a) - 2), f"{b}-0-{cmac}", f"{a}-1-{cmac}",
        open_a, tokens.click_token("wrong-secret", b, 0), "", "%00",
    ]
    for t in forged_clicks:
        r = api.client.get(f"/c/{t}", headers={"User-Agent": BROWSER}, follow_redirects=False)
        assert r.status_code == 404 and "location" not in r.headers, t
    api.settle()
    for rid in (a, b):
        assert count_events(api, rid, "opened") == 0 and count_events(api, rid, "clicked") == 0
    # the genuine token of a link index that was never stored is not a redirect either
    r = api.client.get(f"/c/{tokens.click_token(secret, a, 7)}", follow_redirects=False)
    assert r.status_code == 404 and "location" not in r.headers


@pytest.mark.parametrize("suffix", [
    "/https://evil.example", "//evil.example", "/javascript:alert(1)", "?url=https://evil.example",
    "?next=//evil.example&u=javascript:alert(1)", "https://evil.example", "%2F%2Fevil.example",
    "#https://evil.example", "/../../evil.example",
])
def test_redirect_goes_only_to_the_stored_url(api: Api, sent_email: Any, suffix: str) -> None:
    _e, rids = sent_email
    token = tokens.click_token(api.config.secret_key, rids["alice@example.test"], 1)
    r = api.client.get(f"/c/{token}{suffix}", follow_redirects=False)
    if r.status_code == 302:
        assert r.headers["location"] == "https://docs.acme.test/manual.pdf"
    else:
        assert r.status_code == 404 and "location" not in r.headers
    assert "evil" not in r.headers.get("location", "") and "javascript" not in r.headers.get("location", "")


def test_head_and_prefetch_are_served_not_counted(api: Api, sent_email: Any) -> None:
    e, rids = sent_email
    rid = rids["alice@example.test"]
    pixel, clicks = paths(composed_html(api, e["id"], rid) or "")
    r = api.client.head(pixel)
    assert r.status_code == 200 and r.headers["content-type"] == "image/gif"
    for h in ({"Purpose": "prefetch"}, {"Sec-Purpose": "prefetch;prerender"}, {"X-Moz": "prefetch"}):
        assert api.client.get(pixel, headers=h).content == GIF
        assert api.client.get(clicks[0], headers=h, follow_redirects=False).status_code == 302
    assert api.client.head(clicks[0], follow_redirects=False).status_code == 302
    assert api.client.post(pixel).status_code == 405
    api.settle()
    assert count_events(api, rid, "opened") == 0 and count_events(api, rid, "clicked") == 0
    api.client.get(pixel)
    api.settle()
    assert count_events(api, rid, "opened") == 1


def test_classes_recorded_and_first_times_from_humans_only(api: Api, sent_email: Any) -> None:
    e, rids = sent_email
    rid = rids["bob@example.test"]
    pixel, clicks = paths(composed_html(api, e["id"], rid) or "")
    api.client.get(pixel, headers={"User-Agent": "Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 "
                                                 "(via ggpht.com GoogleImageProxy)"})
    api.client.get(pixel, headers={"User-Agent": "Mozilla/5.0"})
    api.client.get(clicks[0], headers={"User-Agent": "Mimecast/1.0"}, follow_redirects=False)
    api.settle()
    b = view(api, e["id"])["bob@example.test"]
    assert b["opens"] == {"total": 2, "human": 0} and b["clicks"] == {"total": 1, "human": 0}
    assert b["first_opened_at"] is None and b["first_clicked_at"] is None
    classes = [x["data"]["class"] for x in api.get(f"/api/v1/recipients/{rid}/events").json()["events"]
               if x["data"]]
    assert classes == ["image_proxy", "apple_privacy", "scanner"]


def test_click_right_after_delivery_is_a_scanner(api: Api) -> None:
    e = submit(api)
    rid = e["recipients"][0]["id"]
    mark_sent(api, rid, time.time())
    _, clicks = paths(composed_html(api, e["id"], rid) or "")
    api.client.get(clicks[0], headers={"User-Agent": BROWSER}, follow_redirects=False)
    api.settle()
    got = next(r for r in view(api, e["id"]).values() if r["id"] == rid)
    assert got["clicks"] == {"total": 1, "human": 0}


def test_links_stored_at_submission_with_fixed_indices(api: Api) -> None:
    e = submit(api)
    with api.store.read() as conn:
        rows = conn.execute(select(links.c.idx, links.c.url).where(links.c.email_id == e["id"])
                            .order_by(links.c.idx)).all()
    assert [tuple(r) for r in rows] == [(0, "https://portal.acme.test/tasks/42?a=1&b=2"),
                                        (1, "https://docs.acme.test/manual.pdf")]


def test_tracking_off_means_no_pixel_no_links(api: Api) -> None:
    r = api.post("/api/v1/clients", {"external_ref": "quiet", "tracking": False})
    assert r.status_code == 201, r.text
    for over in ({"client": "quiet"}, {"tracking": False}):
        e = submit(api, **over)
        assert e["tracking"] is False and e["opens_trackable"] is False
        html = composed_html(api, e["id"], e["recipients"][0]["id"]) or ""
        assert "/o/" not in html and "/c/" not in html and "https://portal.acme.test/tasks/42" in html
        with api.store.read() as conn:
            assert conn.execute(select(func.count()).select_from(links).where(
                links.c.email_id == e["id"])).scalar_one() == 0


def test_text_only_email_gets_no_pixel(api: Api) -> None:
    r = api.post("/api/v1/emails", email_body(to=["alice@example.test"], cc=[], bcc=[], text="Plain https://a.test"))
    e = r.json()
    assert e["tracking"] is True and e["opens_trackable"] is False
    try:
        from mailtrack.compose import Composer, EmailSource  # noqa: F401
    except ImportError:
        pytest.skip("compose not present")
    assert composed_html(api, e["id"], e["recipients"][0]["id"]) is None


def test_other_paths_still_reach_the_app(api: Api) -> None:
    assert api.get("/api/v1/emails").status_code == 200
    assert api.client.get("/openapi.json").json()["paths"]["/api/v1/recipients/{recipient_id}/links"]
