"""What was sent to a recipient (headers, text, sandboxed HTML preview, .eml) and the raw reports that came back."""

from __future__ import annotations

import email
import email.policy
from pathlib import Path

import pytest

from mailtrack.store import inbound
from mailtrack.store.db import Store
from tests.conftest import Api, email_body, make_config
from tests.test_web import sign_in
from tests.test_web_seed import add_user

DSN = Path(__file__).resolve().parent / "bounce_samples" / "dsn-user-unknown.eml"


@pytest.fixture
def signed(sqlite_store: Store, tmp_path: Path) -> Api:
    api = Api(sqlite_store, make_config(tmp_path))
    add_user(api.store)
    assert sign_in(api.client).status_code == 303
    return api


def test_message_as_sent_without_tracking(signed: Api) -> None:
    html = '<p>Hi <b>Bob</b> <a href="https://portal.test/t/1">open</a></p><script>alert(1)</script>'
    sent = signed.post("/api/v1/emails", email_body(html=html, text="Hi Bob", tracking=True)).json()
    rid = sent["recipients"][1]["id"]  # the CC
    base = f"/emails/{sent['id']}/recipients/{rid}"
    page = signed.client.get(f"{base}/message")
    assert page.status_code == 200
    assert "bob@example.test" in page.text and "<dt>Subject</dt><dd>Task sheet T-42</dd>" in page.text
    assert "<dt>Bcc</dt>" not in page.text  # Bcc never appears in a message
    assert 'sandbox=""' in page.text and "srcdoc=\"&lt;p&gt;Hi &lt;b&gt;Bob" in page.text  # escaped, sandboxed
    assert "<script>alert(1)</script>" not in page.text
    assert '<pre class="body">Hi Bob' in page.text
    eml = signed.client.get(f"{base}/message.eml")
    assert eml.status_code == 200 and eml.headers["content-type"].startswith("message/rfc822")
    assert "attachment" in eml.headers["content-disposition"]
    msg = email.message_from_bytes(eml.content, policy=email.policy.default)
    assert msg["Subject"] == "Task sheet T-42" and rid in msg["Message-ID"]
    body = eml.content.decode()
    assert "https://portal.test/t/1" in body and "/o/" not in body and "/c/" not in body  # no pixel, no rewrite
    assert "No bounce, complaint or auto-reply report" in page.text
    email_page = signed.client.get(f"/emails/{sent['id']}").text
    assert f'href="{base}/message"' in email_page


def test_raw_report_shown_and_downloadable(signed: Api) -> None:
    sent = signed.post("/api/v1/emails", email_body()).json()
    rid = sent["recipients"][0]["id"]
    raw = DSN.read_bytes()
    with signed.store.write() as conn:
        mid = inbound.save(conn, "MAILER-DAEMON@mx.example.test", ["bounces@acme.test"], raw)
        inbound.mark(conn, mid, "applied", kind="bounce", recipient_id=rid)
    base = f"/emails/{sent['id']}/recipients/{rid}"
    page = signed.client.get(f"{base}/message").text
    assert "Bounce from" in page and f"reports/{mid}.eml" in page
    assert raw.decode("utf-8", "replace").splitlines()[0][:30] in page.replace("&lt;", "<").replace("&gt;", ">")
    got = signed.client.get(f"{base}/reports/{mid}.eml")
    assert got.status_code == 200 and got.content == raw


def test_other_accounts_and_unknown_ids_are_404(signed: Api) -> None:
    other_key = signed.new_key("other")
    sent = signed.post("/api/v1/emails", email_body(), key=other_key).json()
    rid = sent["recipients"][0]["id"]
    for path in (f"/emails/{sent['id']}/recipients/{rid}/message", f"/emails/{sent['id']}/recipients/{rid}/message.eml",
                 f"/emails/{sent['id']}/recipients/{rid}/reports/1.eml", "/emails/x/recipients/y/message"):
        r = signed.client.get(path)
        assert r.status_code == 404 and "bob@" not in r.text, path
    mine = signed.post("/api/v1/emails", email_body()).json()
    wrong = f"/emails/{mine['id']}/recipients/{rid}/message"  # a recipient of another email
    assert signed.client.get(wrong).status_code == 404
