"""The web pages through TestClient: sign-in, CSRF, security headers, escaping, every page."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from mailtrack.store import accounts
from mailtrack.store.db import Store
from tests.conftest import Api, email_body, make_config
from tests.test_web_seed import PASSWORD, XSS, add_user, seed_every_status, submit_simple

CSRF_RE = re.compile(r'name="csrf" value="([^"]+)"')


def csrf_of(html: str) -> str:
    m = CSRF_RE.search(html)
    assert m, "no CSRF field on the page"
    return m.group(1)


def sign_in(client: TestClient, email: str = "ops@acme.test", password: str = PASSWORD) -> Any:
    page = client.get("/login")
    return client.post("/login", data={"email": email, "password": password, "csrf": csrf_of(page.text),
                                       "next": "/emails"}, follow_redirects=False)


@pytest.fixture
def web(api: Api) -> Api:
    """Signed in, on SQLite and on PostgreSQL."""
    api.acct = add_user(api.store)  # type: ignore[attr-defined]
    assert sign_in(api.client).status_code == 303
    return api


@pytest.fixture
def lite(sqlite_store: Store, tmp_path: Path) -> Api:
    """An app on SQLite only, for what does not depend on the engine (sign-in, CSRF, headers)."""
    return Api(sqlite_store, make_config(tmp_path))


@pytest.fixture
def web_lite(lite: Api) -> Api:
    lite.acct = add_user(lite.store)  # type: ignore[attr-defined]
    assert sign_in(lite.client).status_code == 303
    return lite


def test_pages_require_sign_in(lite: Api) -> None:
    api = lite
    for path in ("/", "/emails", "/emails/abc", "/tasks/T-1", "/settings", "/suppressions", "/suppressions.csv"):
        r = api.client.get(path, follow_redirects=False)
        assert r.status_code == 303, path
        assert r.headers["location"].startswith("/login" if path != "/" else "/emails")
    r = api.client.get("/emails?status=sent", follow_redirects=False)
    assert r.headers["location"] == "/login?next=%2Femails%3Fstatus%3Dsent"
    r = api.client.post("/settings/tracking", data={"enabled": "on"}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"].startswith("/login")
    with api.store.read() as conn:
        assert accounts.get_account(conn, accounts.get_or_create_account(conn, "acme"))["track_default"]


def test_sign_in_wrong_then_right(lite: Api) -> None:
    api = lite
    add_user(api.store)
    r = sign_in(api.client, password="wrong password")
    assert r.status_code == 200 and "Wrong email address or password" in r.text
    assert "mt_session" not in api.client.cookies
    r = sign_in(api.client, email="nobody@acme.test")
    assert "Wrong email address or password" in r.text
    r = sign_in(api.client)
    assert r.status_code == 303 and r.headers["location"] == "/emails"
    cookie = r.headers["set-cookie"]
    assert "mt_session=" in cookie and "HttpOnly" in cookie and "SameSite=lax" in cookie.replace("Lax", "lax")
    assert api.client.get("/emails").status_code == 200


def test_sign_in_throttled_after_many_failures(lite: Api) -> None:
    api = lite
    from mailtrack.web.auth import Throttle

    add_user(api.store)
    api.app.state.web_throttle = Throttle(limit=3)
    for _ in range(3):
        sign_in(api.client, password="nope")
    r = sign_in(api.client)
    assert "Too many failed attempts" in r.text and "mt_session" not in api.client.cookies


def test_next_is_never_an_open_redirect(lite: Api) -> None:
    api = lite
    add_user(api.store)
    page = api.client.get("/login?next=//evil.test/x")
    r = api.client.post("/login", data={"email": "ops@acme.test", "password": PASSWORD, "csrf": csrf_of(page.text),
                                        "next": "https://evil.test/"}, follow_redirects=False)
    assert r.headers["location"] == "/emails"


def test_csrf_missing_or_invalid_is_403(web_lite: Api) -> None:
    web = web_lite
    c = web.client
    r = c.post("/settings/tracking", data={"enabled": ""})
    assert r.status_code == 403 and "CSRF" in r.text and "security token is missing" in r.text
    r = c.post("/settings/tracking", data={"enabled": "", "csrf": "forged"})
    assert r.status_code == 403 and "invalid" in r.text
    r = c.post("/suppressions", data={"address": "x@example.test", "csrf": ""})
    assert r.status_code == 403
    with web.store.read() as conn:
        assert accounts.get_account(conn, web.acct)["track_default"]  # type: ignore[attr-defined]
    # a token from another session does not work in this one
    other = TestClient(web.app)
    sign_in(other)
    foreign = csrf_of(other.get("/settings").text)
    r = c.post("/settings/tracking", data={"enabled": "", "csrf": foreign})
    assert r.status_code == 403
    r = c.post("/settings/tracking", data={"csrf": csrf_of(c.get("/settings").text)}, follow_redirects=False)
    assert r.status_code == 303
    with web.store.read() as conn:
        assert not accounts.get_account(conn, web.acct)["track_default"]  # type: ignore[attr-defined]


def test_login_form_needs_its_csrf_cookie(lite: Api) -> None:
    api = lite
    add_user(api.store)
    token = csrf_of(api.client.get("/login").text)
    api.client.cookies.clear()
    r = api.client.post("/login", data={"email": "ops@acme.test", "password": PASSWORD, "csrf": token})
    assert r.status_code == 403 and "cookie" in r.text
    assert "mt_session" not in api.client.cookies


def test_security_headers(web_lite: Api) -> None:
    web = web_lite
    for path in ("/login", "/emails", "/settings", "/suppressions", "/static/app.css"):
        r = web.client.get(path)
        assert r.headers["content-security-policy"] == "default-src 'self'", path
        assert r.headers["x-frame-options"] == "DENY"
        assert r.headers["x-content-type-options"] == "nosniff"
        assert r.headers["referrer-policy"] == "no-referrer"
    r = web.client.get("/embed/notes/T-1")
    assert r.headers["content-security-policy"] == "default-src 'self'; frame-ancestors 'self'"
    assert "x-frame-options" not in r.headers
    # no inline script or style anywhere: CSP would block them
    for path in ("/emails", "/settings", "/suppressions", "/tasks/T-1", "/embed/notes/T-1"):
        html = web.client.get(path).text
        assert not re.search(r"<script(?![^>]*\bsrc=)", html), path
        assert "style=" not in html and "<style" not in html and "onclick" not in html


def test_embed_frame_ancestors_setting(tmp_path: Path, sqlite_store: Store) -> None:
    api = Api(sqlite_store, make_config(tmp_path, embed_frame_ancestors="https://app.example.com"))
    embed = api.get("/api/v1/notes/T-1").json()["embed_url"]
    r = api.client.get(embed[embed.index("/embed/"):])
    assert r.status_code == 200
    assert r.headers["content-security-policy"] == "default-src 'self'; frame-ancestors https://app.example.com"


def test_forged_or_outdated_session_is_refused(web_lite: Api) -> None:
    web = web_lite
    good = web.client.cookies["mt_session"]
    for bad in (good[:-4] + ("AAAA" if not good.endswith("AAAA") else "BBBB"), "x" + good, "garbage"):
        c = TestClient(web.app, cookies={"mt_session": bad})
        assert c.get("/emails", follow_redirects=False).status_code == 303
    add_user(web.store, password="a new password")  # re-setting the password ends old sessions
    assert web.client.get("/emails", follow_redirects=False).status_code == 303


def test_logout(web_lite: Api) -> None:
    web = web_lite
    token = csrf_of(web.client.get("/emails").text)
    r = web.client.post("/logout", data={"csrf": token}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/login"
    assert web.client.get("/emails", follow_redirects=False).status_code == 303


def test_email_page_every_status_escaped(web: Api) -> None:
    eid, _ = seed_every_status(web.store, web.acct)  # type: ignore[attr-defined]
    html = web.client.get(f"/emails/{eid}").text
    for label in ("Creating", "Spooled", "Sent", "Deferred", "Soft Bounce", "Hard Bounce", "Rejected"):
        assert f">{label}</span>" in html, label
    assert "552 5.2.2 Mailbox full" in html and "451 4.7.1 Greylisted" in html
    assert "Listed because: unsubscribed" in html
    assert "Marked as Spam</span>" in html and ">tracked</span>" in html
    assert XSS not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<img src=x" not in html and "&lt;img src=x onerror=alert(2)&gt;" in html
    assert re.search(r"1 <span class=\"muted\">/ 2</span>", html)  # opens: 1 human / 2 machine
    for kind in ("to", "cc", "bcc"):
        assert f'<span class="kind">{kind}</span>' in html
    for t in ("opened", "clicked", "complained", "hard_bounce"):
        assert f'class="t-{t}"' in html  # in the timeline
    assert "does not mean a person has read it" in html  # the legend
    assert web.client.get("/emails/nope").status_code == 404


def test_text_only_and_untracked_emails(web: Api) -> None:
    r = web.post("/api/v1/emails", email_body(tracking=True))
    html = web.client.get(f"/emails/{r.json()['id']}").text
    assert ">tracked</span>" in html and "text-only email: opens and clicks can't be tracked" in html
    # opens and clicks: n/a for each recipient, with the reason in the tooltip
    assert html.count('<span class="na"') == 2 * len(r.json()["recipients"])
    assert re.search(r"per-email override:\s+on</span>", html)
    r = web.post("/api/v1/emails", email_body(tracking=False, html="<p>x</p>"))
    html = web.client.get(f"/emails/{r.json()['id']}").text
    assert ">not tracked</span>" in html and "text-only" not in html
    assert re.search(r"per-email override:\s+off</span>", html)


def _rows(html: str) -> int:
    """Email rows on a list page."""
    return html.count('data-label="Created"')


def test_list_filters_and_pages(web: Api) -> None:
    acct = web.acct  # type: ignore[attr-defined]
    seed_every_status(web.store, acct, reference="T-7")
    submit_simple(web.store, acct, 55)
    with web.store.write() as conn:
        accounts.create_client(conn, acct, "C-1", "Client One", None)
    web.post("/api/v1/emails", email_body(subject="For client one", client="C-1"))
    c = web.client
    html = c.get("/emails").text
    assert _rows(html) == 50 and "Older →" in html and "57 emails" in html and "page 1 of 2" in html
    assert "For client one" in html  # newest first
    page2 = c.get("/emails?page=2").text
    assert _rows(page2) == 7 and "← Newer" in page2 and "Older" not in page2
    assert _rows(c.get("/emails?source_type=task_sheet").text) == 2
    only = c.get("/emails?reference=T-7").text
    assert _rows(only) == 1 and "Task sheet T-7" in only
    assert _rows(c.get("/emails?client=C-1").text) == 1
    assert "Task sheet T-7" in c.get("/emails?status=hard_bounce").text
    assert _rows(c.get("/emails?status=hard_bounce").text) == 1
    assert _rows(c.get("/emails?since=2000-01-01&until=2000-01-02").text) == 0
    assert _rows(c.get("/emails?until=2999-01-01&q=INV-0003").text) == 1
    for bad in ("status=nope", "since=yesterday", "page=-1", "page=³", "source_type=fax"):
        r = c.get(f"/emails?{bad}")
        assert r.status_code == 400 and 'role="alert"' in r.text, bad


def test_task_notes_page_and_api_share_symbols(web: Api) -> None:
    eid, _ = seed_every_status(web.store, web.acct, reference="T-7")  # type: ignore[attr-defined]
    html = web.client.get("/tasks/T-7").text
    expected = ["spooling", "sent", "opened", "clicked", "soft_bounce", "hard_bounce", "rejected", "spam"]
    head = html.split('class="note-head"')[1].split("</div>")[0]
    assert re.findall(r'data-symbol="(\w+)"', head) == expected
    assert re.search(r'data-symbol="opened"[^>]*|title="Opened \(1 of 7\): sent@example.test', html)
    assert 'title="Soft bounce (1 of 7)' in html and 'title="Hard bounce (1 of 7)' in html and 'aria-label="Marked as spam (1 of 7)' in html
    data = web.get("/api/v1/notes/T-7").json()
    [note] = data["notes"]
    assert note["email_id"] == eid and note["symbols"] == expected
    by_addr = {r["address"]: r["symbols"] for r in note["recipients"]}
    assert by_addr["sent@example.test"] == ["sent", "opened", "clicked", "spam"]
    assert by_addr["deferred@example.test"] == ["spooling"]
    assert by_addr["hard-bounce@example.test"] == ["hard_bounce"]
    embed = web.client.get(data["embed_url"].split("8000", 1)[1])
    assert embed.status_code == 200
    assert re.findall(r'data-symbol="(\w+)"', embed.text.split('class="note-head"')[1].split("</div>")[0]) == expected
    assert web.get("/api/v1/notes/T-unknown").json()["notes"] == []
    assert web.client.get("/api/v1/notes/T-7").status_code == 401  # the API wants a key, not a session


def test_embed_authentication(web: Api) -> None:
    seed_every_status(web.store, web.acct, reference="T-7")  # type: ignore[attr-defined]
    anon = TestClient(web.app)
    assert anon.get("/embed/notes/T-7").status_code == 401
    assert anon.get("/embed/notes/T-7?key=mt_wrong").status_code == 401
    r = anon.get(f"/embed/notes/T-7?key={web.key}")  # a full API key in a URL is refused (issue 10 §13)
    assert r.status_code == 401 and "Task sheet T-7" not in r.text
    token = web.get("/api/v1/notes/T-7").json()["embed_url"].split("token=")[1]
    r = anon.get(f"/embed/notes/T-7?token={token}")
    assert r.status_code == 200 and "Task sheet T-7" in r.text and XSS not in r.text
    assert anon.get(f"/embed/notes/T-8?token={token}").status_code == 401  # a token shows one reference only


def test_settings_site_switch_and_client_overrides(web: Api) -> None:
    c = web.client
    tok = csrf_of(c.get("/settings").text)
    r = c.post("/settings/clients", data={"csrf": tok, "external_ref": "NORTH", "name": "Northwind",
                                          "tracking": "inherit"}, follow_redirects=False)
    assert r.status_code == 303
    html = c.get(r.headers["location"]).text
    assert "Client added." in html and "Print/Email Layout Defaults" in html
    assert "Track Delivery Status, Opens and Clicks" in html
    cid = re.search(r'action="/settings/clients/(\d+)/tracking"', html).group(1)  # type: ignore[union-attr]
    r = c.post(f"/settings/clients/{cid}/tracking", data={"csrf": tok, "tracking": "off"}, follow_redirects=False)
    assert r.status_code == 303
    sent = web.post("/api/v1/emails", email_body(client="NORTH", html="<p>x</p>")).json()
    assert sent["tracking"] is False
    assert ">not tracked</span>" in c.get(f"/emails/{sent['id']}").text
    r = c.post(f"/settings/clients/{cid}/tracking", data={"csrf": tok, "tracking": "maybe"})
    assert r.status_code == 400 and "inherit, on or off" in r.text
    assert c.post("/settings/clients/99999/tracking", data={"csrf": tok, "tracking": "on"}).status_code == 400
    r = c.post("/settings/clients", data={"csrf": tok, "external_ref": "NORTH", "tracking": "on"})
    assert r.status_code == 400 and "already exists" in r.text
    c.post("/settings/tracking", data={"csrf": tok})  # site switch off
    c.post(f"/settings/clients/{cid}/tracking", data={"csrf": tok, "tracking": "inherit"})
    assert web.post("/api/v1/emails", email_body(client="NORTH")).json()["tracking"] is False
    c.post("/settings/tracking", data={"csrf": tok, "enabled": "on"})
    assert web.post("/api/v1/emails", email_body(client="NORTH")).json()["tracking"] is True


def test_suppression_list_add_search_remove_export(web: Api) -> None:
    c = web.client
    tok = csrf_of(c.get("/suppressions").text)
    r = c.post("/suppressions", data={"csrf": tok, "address": "Mallory@Example.test", "reason": "=HYPERLINK(1)"},
               follow_redirects=False)
    assert r.status_code == 303
    html = c.get(r.headers["location"]).text
    assert "Address added to the suppression list." in html and "mallory@example.test" in html
    assert "already" in c.get(c.post("/suppressions", data={"csrf": tok, "address": "mallory@example.test"},
                                     follow_redirects=False).headers["location"]).text
    r = c.post("/suppressions", data={"csrf": tok, "address": "not an address"})
    assert r.status_code == 400 and 'role="alert"' in r.text
    c.post("/suppressions", data={"csrf": tok, "address": "bob@example.test", "reason": XSS})
    assert XSS not in c.get("/suppressions").text
    assert "bob@example.test" not in c.get("/suppressions?q=mallory").text
    assert c.get("/suppressions?page=³").status_code == 200  # a non-ASCII digit falls back to page 1
    csv_text = c.get("/suppressions.csv").text
    assert "mallory@example.test,'=HYPERLINK(1),manual," in csv_text
    r = c.post("/suppressions/remove", data={"csrf": tok, "address": "mallory@example.test"}, follow_redirects=False)
    assert r.status_code == 303
    assert "mallory@example.test" not in c.get("/suppressions").text
    r = c.post("/suppressions/remove", data={"csrf": tok, "address": "mallory@example.test"})
    assert r.status_code == 404 and "not on the suppression list" in r.text
    # the list is per account: the API key's account sees the same entries
    assert [s["address"] for s in web.get("/api/v1/suppressions").json()["suppressions"]] == ["bob@example.test"]


def test_user_add_command(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from mailtrack.cli import main

    env = {"MAILTRACK_DATABASE_URL": f"sqlite:///{tmp_path}/cli.db", "MAILTRACK_SECRET_KEY": "k"}
    runner = CliRunner()
    r = runner.invoke(main, ["user", "add", "--account", "acme", "--email", "Ann@Acme.test",
                             "--password", "s3cret-pass"], env=env)
    assert r.exit_code == 0, r.output
    assert "added user ann@acme.test" in r.output
    r = runner.invoke(main, ["user", "add", "--account", "acme", "--email", "ann@acme.test"], env=env,
                      input="another-pass\nanother-pass\n")
    assert r.exit_code == 0 and "updated user" in r.output
    r = runner.invoke(main, ["user", "add", "--account", "acme", "--email", "x@acme.test", "--password", "short"],
                      env=env)
    assert r.exit_code == 2 and "at least 8" in r.output
    r = runner.invoke(main, ["user", "add", "--account", "acme", "--email", "not-an-address", "--password",
                             "long enough"], env=env)
    assert r.exit_code == 2
    from mailtrack.store.db import open_store

    store = open_store(env["MAILTRACK_DATABASE_URL"])
    try:
        api = Api(store, make_config(tmp_path, database_url=env["MAILTRACK_DATABASE_URL"]))
        assert sign_in(api.client, "ann@acme.test", "s3cret-pass").status_code == 200  # old password
        assert sign_in(api.client, "ann@acme.test", "another-pass").status_code == 303
    finally:
        store.dispose()


def test_symbols_pure_derivation() -> None:
    from mailtrack.web.symbols import email_symbols, recipient_symbols

    def r(status: str, opens: tuple[int, int] = (0, 0), clicks: tuple[int, int] = (0, 0), spam: bool = False,
          addr: str = "a@x.test") -> dict[str, Any]:
        return {"address": addr, "status": status, "opens": {"total": opens[0], "human": opens[1]},
                "clicks": {"total": clicks[0], "human": clicks[1]}, "complained": spam}

    assert recipient_symbols(r("deferred")) == ["spooling"]
    assert recipient_symbols(r("soft_bounce")) == ["soft_bounce"]
    assert recipient_symbols(r("hard_bounce")) == ["hard_bounce"]
    assert recipient_symbols(r("sent", (2, 0), (1, 1), True)) == ["sent", "opened", "clicked", "spam"]
    syms = email_symbols([r("sent", (2, 0)), r("rejected", addr="b@x.test")])
    assert [s.name for s in syms] == ["sent", "opened", "rejected"]
    opened = syms[1]
    assert opened.machine_only and "Only automated hits" in opened.tooltip and opened.addresses == ("a@x.test",)
    assert not email_symbols([r("sent", (2, 1))])[1].machine_only
    assert email_symbols([]) == []


def test_demo_progress_line() -> None:
    from mailtrack.web.demo import progress_line

    line = progress_line({"statuses": {"sent": 3, "deferred": 1},
                          "events": {"creating": 4, "opened": 2, "clicked": 1, "sent": 3}})
    assert line == "demo: recipients now deferred 1, sent 3 | events: opened 2, clicked 1"
    assert progress_line({"statuses": {}, "events": {}}) == "demo: recipients now none"
