"""Reasons and timeline events in plain words, text-only emails, and error pages for people."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from mailtrack.domain.reasons import REASONS
from mailtrack.store.db import Store
from mailtrack.web.explain import WORDS, explain
from mailtrack.web.timeline import steps
from tests.conftest import Api, make_config
from tests.test_web import sign_in
from tests.test_web_seed import add_user, seed_every_status


def _r(status: str, reason: str | None = None, last_reply: str | None = None) -> dict[str, Any]:
    return {"status": status, "reason": reason, "last_reply": last_reply}


def test_every_reason_of_the_vocabulary_has_words() -> None:
    assert set(WORDS) == set(REASONS)
    for code, (summary, _next) in WORDS.items():
        assert summary and summary[0].isupper() and "_" not in summary, code


@pytest.mark.parametrize(("r", "summary"), [
    (_r("hard_bounce", "550 5.1.1 <bob@x.test>: Recipient address rejected: User unknown"),
     "The mailbox does not exist"),
    (_r("soft_bounce", "552 5.2.2 Mailbox full"), "The mailbox is full"),
    (_r("soft_bounce", "550 5.7.1 Message scored as spam by the receiving server"),
     "Blocked as spam by the receiving server"),
    (_r("soft_bounce", "gave up after 5 attempts: 451 4.7.1 Greylisted"),
     "Delivery kept failing, so mailtrack stopped retrying"),
    (_r("hard_bounce", "host not found: no such domain"), "The domain does not exist or has no mail server"),
    (_r("deferred", "451 4.7.1 Greylisted, try again in 5 minutes"),
     "Delayed: the receiving server asked us to try again later"),
    (_r("deferred", "452 4.2.2 Mailbox full"), "Delayed: the mailbox is full"),
    (_r("rejected", "on the suppression list: unsubscribed"), "Not sent: the address is on the suppression list"),
    (_r("spooled"), "Queued for delivery"),
    (_r("soft_bounce", "554 something nobody recognises"),
     "The receiving server refused the email without a recognisable reason"),
])
def test_reason_summaries(r: dict[str, Any], summary: str) -> None:
    e = explain(r)
    assert e is not None and e.summary == summary
    assert e.raw is None or e.raw == r["reason"] or e.raw.startswith("Listed because")


def test_a_complaint_is_said_in_words() -> None:
    e = explain({**_r("sent", None, "250 ok"), "complained": True})
    assert e is not None and e.summary == "The recipient marked the email as spam" and e.raw is None


def test_sent_hides_the_queued_as_reply() -> None:
    assert explain(_r("sent", None, "250 2.0.0 Ok: queued as 4Bx9")) is None
    assert explain(_r("sent", "250 2.0.0 Ok: queued as 4Bx9")) is None


def test_timeline_uses_the_statuses_words_and_explains_a_late_bounce() -> None:
    evs = [
        {"at": "t1", "type": "sent", "recipient_id": "r1", "address": "a@x.test", "reason": None,
         "data": {"reply": "250 ok", "class": "delivered", "host": "mx.x.test", "stage": "data"}},
        {"at": "t0", "type": "deferred", "recipient_id": "r2", "address": "b@x.test",
         "reason": "451 4.7.1 Greylisted", "data": {"class": "rejected", "retry_in": 120.0}},
        {"at": "t2", "type": "hard_bounce", "recipient_id": "r1", "address": "a@x.test",
         "reason": "5.1.1 (user_unknown): 550 5.1.1 no such user",
         "data": {"inbound_id": 7, "correlated_by": "verp", "engine": "rfc3464", "remote_mta": "mx.x.test"}},
    ]
    sent, deferred, late = steps(evs)
    assert sent.tag is None and "delivered" not in sent.text.lower()  # no clashing classification tag
    assert deferred.tag is None and "rejected" not in deferred.text and "in about 2 min" in deferred.text
    assert late.text.startswith("Accepted at first, then a bounce report arrived from mx.x.test")
    assert "The mailbox does not exist" in late.text
    assert ("Report number", "7") in late.technical and "inbound_id" not in late.text


def test_text_only_email_shows_na_with_the_reason(tmp_path: Path, sqlite_store: Store) -> None:
    api = Api(sqlite_store, make_config(tmp_path))
    acct = add_user(api.store)
    assert sign_in(api.client).status_code == 303
    key = api.new_key("acme")
    assert acct
    r = api.post("/api/v1/emails", {"from": "ops@acme.test", "to": ["a@example.test"], "subject": "Plain",
                                    "text": "Hello"}, key=key)
    html = api.client.get(f"/emails/{r.json()['id']}").text
    facts = re.sub(r"<[^>]+>", "", html.split('class="facts"')[1].split("</dl>")[0])
    assert "tracked · text-only email" in re.sub(r"\s+", " ", facts)  # the words are apart
    assert html.count(">n/a</span>") == 2 and "no image to load and no link to rewrite" in html


@pytest.fixture
def web_app(tmp_path: Path, sqlite_store: Store) -> Api:
    api = Api(sqlite_store, make_config(tmp_path))
    add_user(api.store)
    return api


def test_browsers_get_html_errors_api_keeps_json(web_app: Api) -> None:
    c = web_app.client
    html = {"accept": "text/html,application/xhtml+xml,*/*;q=0.8"}
    r = c.get("/no-such-page", headers=html)
    assert r.status_code == 404 and r.headers["content-type"].startswith("text/html")
    assert "Page not found" in r.text and "default-src 'self'" in r.headers["content-security-policy"]
    r = c.get("/no-such-page")  # a script, no Accept: JSON as before
    assert r.status_code == 404 and r.json()["error"]["message"] == "Not Found"
    r = c.get("/api/v1/nope", headers=html)
    assert r.status_code == 404 and r.json()["error"]["message"] == "Not Found"
    r = c.get("/api/v1/emails", headers=html)  # the API's own errors stay JSON in a browser too
    assert r.status_code == 401 and "error" in r.json()
    assert sign_in(c).status_code == 303
    seed_every_status(web_app.store, 1)
    r = c.get("/emails/nope", headers=html)
    assert r.status_code == 404 and "Email not found" in r.text


def test_server_error_is_an_html_page_for_browsers(web_app: Api) -> None:
    app: FastAPI = web_app.app

    @app.get("/boom-for-test")
    def boom() -> None:
        raise RuntimeError("boom")

    @app.get("/api/v1/boom-for-test")
    def api_boom() -> None:
        raise RuntimeError("boom")

    c = TestClient(app, raise_server_exceptions=False)
    r = c.get("/boom-for-test", headers={"accept": "text/html"})
    assert r.status_code == 500 and "Something went wrong" in r.text and "boom" not in r.text
    r = c.get("/api/v1/boom-for-test", headers={"accept": "text/html"})
    assert r.status_code == 500 and r.json()["error"]["message"] == "internal error; it has been logged"
