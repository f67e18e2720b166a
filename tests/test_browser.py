"""The pages in a real browser (Debian chromium, headless) against a real uvicorn server."""

from __future__ import annotations

import json
import re
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from mailtrack.app import create_app
from mailtrack.store import accounts
from mailtrack.store.db import Store, open_store
from mailtrack.store.submit import NewRecipient
from tests.conftest import email_body, make_config
from tests.test_web_seed import PASSWORD, XSS, add_user, seed_every_status, submit_simple

CHROMIUM = Path("/usr/bin/chromium")
AXE = Path(__file__).resolve().parent / "assets" / "axe.min.js"  # axe-core 4.14.1 (MPL-2.0), vendored
LONG_ADDR = "accounts.payable.department.north-west-region@" + "very-long-subsidiary-name-" * 3 + "example.test"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"]
pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian chromium is missing at /usr/bin/chromium "
                       "(sudo apt-get install chromium); browser tests skipped"),
]


@dataclass
class Live:
    url: str
    store: Store
    key: str
    acct: int
    email_id: str


class ServerThread:
    """uvicorn on port 0 in a background thread, as ``mailtrack serve`` runs it; the bound port is read back."""

    def __init__(self, app: Any) -> None:
        from mailtrack.serve import http_server

        self.server = http_server(app, "127.0.0.1", 0)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def start(self) -> int:
        self.thread.start()
        deadline = time.monotonic() + 15
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)
        return int(self.server.servers[0].sockets[0].getsockname()[1])

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)


def start_live(tmp: Path) -> tuple[Live, ServerThread]:
    store = open_store(f"sqlite:///{tmp}/browser.db")
    config = make_config(tmp)
    acct = add_user(store)
    with store.write() as conn:
        key = accounts.create_api_key(conn, acct)
        accounts.create_client(conn, acct, "NORTH", "Northwind Logistics", None)
        accounts.create_client(conn, acct, "ACME", "Acme Facilities", None)
    submit_simple(store, acct, 5)
    # the widest things a phone must show without scrolling sideways
    submit_simple(store, acct, 1, subject="Quarterly maintenance report for building " + "Nordwestlichehauptstrasse" * 3,
                  recipients=[NewRecipient("", LONG_ADDR, "to")], source_reference="REF-" + "9" * 60)
    eid, _ = seed_every_status(store, acct, reference="T-7")
    srv = ServerThread(create_app(config.replace(public_url="http://127.0.0.1:0"), store))
    port = srv.start()
    return Live(f"http://127.0.0.1:{port}", store, key, acct, eid), srv


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    lv, srv = start_live(tmp_path_factory.mktemp("browser"))
    yield lv
    srv.stop()
    lv.store.dispose()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS, headless=True)
        yield b
        b.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    ctx = browser.new_context(viewport={"width": 1360, "height": 900})
    pg = ctx.new_page()
    pg.set_default_timeout(10_000)
    pg.dialogs = []  # every alert/confirm that fires
    pg.errors = []  # uncaught page errors and CSP violations reported on the console

    def on_dialog(d: Any) -> None:
        pg.dialogs.append((d.type, d.message))
        d.accept()

    pg.on("dialog", on_dialog)
    pg.on("pageerror", lambda e: pg.errors.append(str(e)))
    pg.on("console", lambda m: pg.errors.append(m.text) if m.type == "error" else None)
    yield pg
    ctx.close()


def sign_in(page: Any, live: Live, password: str = PASSWORD) -> None:
    page.goto(f"{live.url}/emails")
    assert "/login" in page.url
    page.fill("input[name=email]", "ops@acme.test")
    page.fill("input[name=password]", password)
    page.click("button[type=submit]")


def test_sign_in_wrong_then_right(page: Any, live: Live) -> None:
    sign_in(page, live, password="not the password")
    assert page.locator(".alert.error").inner_text() == "Wrong email address or password."
    assert "/login" in page.url
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url("**/emails")
    assert page.locator("h1").inner_text() == "Email Delivery Status"
    assert page.locator(".who").inner_text() == "ops@acme.test"
    assert page.errors == []


def test_list_with_filters(page: Any, live: Live) -> None:
    sign_in(page, live)
    page.wait_for_url("**/emails")
    assert page.locator("table.list tbody tr").count() == 7
    page.select_option("select[name=status]", "hard_bounce")
    page.wait_for_timeout(200)
    assert "status=" not in page.url  # choosing does not submit (arrow keys must not jump pages)
    page.click("form.filters button[type=submit]")
    page.wait_for_url("**status=hard_bounce**")
    rows = page.locator("table.list tbody tr")
    assert rows.count() == 1 and "Task sheet T-7" in rows.inner_text()
    page.select_option("select[name=status]", "")
    page.fill("input[name=q]", "inv-0002")
    page.click("form.filters button[type=submit]")
    page.wait_for_url("**q=inv-0002**")
    assert page.locator("table.list tbody tr").count() == 1
    assert "Invoice INV-0002" in page.locator("table.list tbody").inner_text()
    page.select_option("select[name=source_type]", "task_sheet")
    page.click("form.filters button[type=submit]")
    page.wait_for_url("**source_type=task_sheet**")
    assert "No emails match" in page.locator("table.list tbody").inner_text()
    assert page.errors == []


def test_email_page_every_status_and_script_shown_as_text(page: Any, live: Live) -> None:
    sign_in(page, live)
    page.wait_for_url("**/emails")
    page.click("text=Task sheet T-7")
    page.wait_for_url(f"**/emails/{live.email_id}")
    badges = page.locator(".rcpt-table tbody .badge").all_inner_texts()
    for label in ("Creating", "Spooled", "Sent", "Deferred", "Soft Bounce", "Hard Bounce", "Rejected",
                  "Marked as Spam"):
        assert label in badges, label
    hard = page.locator("tr[data-recipient='hard-bounce@example.test'] td.reason").inner_text()
    assert XSS in hard  # the markup arrives as visible text, not as a script
    assert XSS in page.locator("h1.subject").inner_text()
    assert page.locator("script:not([src])").count() == 0
    assert page.dialogs == []
    assert page.locator(".facts").inner_text().count("tracked") >= 1
    tip = page.locator(".badge.b-sent").first.get_attribute("title")
    assert tip is not None and "does not mean a person has read it" in tip
    assert page.locator("details.legend dl.statuses dt").count() == 7  # the legend is open from the start
    assert page.locator("details.legend dl.statuses dt").first.is_visible()
    page.wait_for_timeout(300)
    assert page.dialogs == [] and page.errors == []


def test_task_notes_symbols_have_tooltips(page: Any, live: Live) -> None:
    sign_in(page, live)
    page.goto(f"{live.url}/tasks/T-7")
    head = page.locator(".note-head .sym")
    assert [head.nth(i).get_attribute("data-symbol") for i in range(head.count())] == [
        "spooling", "sent", "opened", "clicked", "soft_bounce", "hard_bounce", "rejected", "spam"]
    for i in range(head.count()):
        title = head.nth(i).get_attribute("title")
        assert title and head.nth(i).get_attribute("aria-label") == title
        assert head.nth(i).get_attribute("role") == "img"
        box = head.nth(i).bounding_box()
        assert box and 12 <= box["width"] <= 32  # small, visible symbols
    assert page.locator(".note-head .sym[data-symbol=opened]").get_attribute("title").startswith("Opened (1 of 7)")
    embed_url = page.locator("input.copy").input_value()
    page.goto(live.url + embed_url)
    assert page.locator(".note-head .sym").count() == 8 and page.locator("header.top").count() == 0
    assert page.locator(".legend-mini li").count() == 8  # the legend is in the embed too
    assert page.errors == []


def _api_post(live: Live, body: dict[str, Any]) -> dict[str, Any]:
    req = urllib.request.Request(f"{live.url}/api/v1/emails", data=json.dumps(body).encode(), method="POST",  # noqa: S310
                                 headers={"Authorization": f"Bearer {live.key}", "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as r:  # noqa: S310 - loopback test server
        return dict(json.loads(r.read()))


def test_client_tracking_off_makes_next_email_not_tracked(page: Any, live: Live) -> None:
    sign_in(page, live)
    page.goto(f"{live.url}/settings")
    assert page.locator("h1").inner_text() == "Print/Email Layout Defaults"
    assert page.locator("label.switch").inner_text().strip() == "Track Delivery Status, Opens and Clicks"
    row = page.locator("tr[data-client='NORTH']")
    row.locator("select[name=tracking]").select_option("off")
    row.locator("button[type=submit]").click()
    page.wait_for_url("**notice=client-saved**")
    assert page.locator(".alert.ok").inner_text() == "Client tracking saved."
    assert page.locator("tr[data-client='NORTH'] .tag").inner_text() == "not tracked"
    sent = _api_post(live, email_body(client="NORTH", subject="Invoice for Northwind", html="<p>Hi</p>"))
    page.goto(f"{live.url}/emails/{sent['id']}")
    assert page.locator(".facts .tag").first.inner_text() == "not tracked"  # the tracking fact comes first
    page.goto(f"{live.url}/emails?client=NORTH")
    assert "not tracked" in page.locator("table.list tbody tr").first.inner_text()
    assert page.errors == []


def test_add_and_remove_suppression(page: Any, live: Live) -> None:
    sign_in(page, live)
    page.goto(f"{live.url}/suppressions")
    page.fill("input[name=address]", "Former.Tenant@example.test")
    page.fill("input[name=reason]", f"moved out {XSS}")
    page.click("button:text-is('Add')")
    page.wait_for_url("**notice=suppressed**")
    row = page.locator("tr[data-address='former.tenant@example.test']")
    assert XSS in row.locator(".reason").inner_text()
    assert page.dialogs == []
    sent = _api_post(live, email_body(to=["former.tenant@example.test"], cc=[], bcc=[]))
    assert sent["recipients"][0]["status"] == "rejected"
    page.goto(f"{live.url}/suppressions?q=former")
    page.locator("tr[data-address='former.tenant@example.test'] button").click()  # app.js asks to confirm
    page.wait_for_url("**notice=unsuppressed**")
    assert page.dialogs == [("confirm", "Remove former.tenant@example.test from the suppression list? "
                                        "mailtrack will send to it again.")]
    assert page.locator("tr[data-address='former.tenant@example.test']").count() == 0
    assert page.errors == []


# --- round 2: phones, accessibility, search, reasons, error pages --------------------------------


def _signed_in_context(browser: Any, live: Live, **kw: Any) -> tuple[Any, Any]:
    ctx = browser.new_context(**kw)
    pg = ctx.new_page()
    pg.set_default_timeout(10_000)
    sign_in(pg, live)
    pg.wait_for_url("**/emails")
    return ctx, pg


def _every_page(live: Live, pg: Any) -> list[str]:
    pg.goto(f"{live.url}/tasks/T-7")
    embed = pg.locator("input.copy").input_value()
    pg.goto(f"{live.url}/emails/{live.email_id}")
    message = pg.locator("tr[data-recipient='hard-bounce@example.test'] a[href$='/message']").get_attribute("href")
    return ["/emails", "/emails?q=example.test", f"/emails/{live.email_id}", "/tasks/T-7", "/settings",
            "/suppressions", embed, "/no-such-page", "/emails?status=nope", message, "/dashboard",
            "/dashboard?range=30d", "/webhooks", "/sending-domains"]


def test_phone_width_nothing_scrolls_sideways(browser: Any, live: Live) -> None:
    ctx, pg = _signed_in_context(browser, live, viewport={"width": 390, "height": 844}, is_mobile=True,
                                 has_touch=True, device_scale_factor=2)
    try:
        long_email = pg.locator("table.list tbody tr", has_text=LONG_ADDR).locator("td.subject a")
        long_email.click()
        pg.wait_for_url("**/emails/*")
        pages = [pg.url.replace(live.url, ""), *_every_page(live, pg)]
        for path in pages:
            pg.goto(live.url + path)
            width = pg.evaluate("document.documentElement.scrollWidth")
            assert width <= 390, f"{path} is {width} px wide at 390 px"
        pg.goto(f"{live.url}/emails/{live.email_id}")
        cards = pg.locator(".rcpt-table tbody tr")
        assert cards.count() == 7
        for i in range(cards.count()):
            box = cards.nth(i).bounding_box()
            assert box and box["width"] <= 390
            assert cards.nth(i).evaluate("el => getComputedStyle(el).display") == "block"  # a stacked card
        reason = pg.locator("tr[data-recipient='soft-bounce@example.test'] td.reason")
        assert (reason.bounding_box() or {}).get("width", 0) > 250  # no longer squeezed to a few characters
        pg.goto(f"{live.url}/emails")
        sign_out = pg.locator("header .signout button")
        assert sign_out.is_visible() and (sign_out.bounding_box() or {}).get("x", 999) + 10 < 390
    finally:
        ctx.close()


def test_axe_no_serious_or_critical_violations(browser: Any, live: Live) -> None:
    # bypass_csp: axe is injected as a script, which the pages' CSP (rightly) refuses
    ctx, pg = _signed_in_context(browser, live, viewport={"width": 1366, "height": 900}, bypass_csp=True)
    source = AXE.read_text(encoding="utf-8")
    try:
        found: dict[str, list[str]] = {}
        for width in (1366, 390):
            pg.set_viewport_size({"width": width, "height": 900})
            for path in [*_every_page(live, pg), "/login"]:
                if path == "/login":
                    ctx.clear_cookies()
                pg.goto(live.url + path)
                pg.evaluate(source)
                result = pg.evaluate("axe.run(document, {resultTypes: ['violations']})")
                assert len(result["passes"]) > 10, path  # axe really ran its rules on this page
                bad = [f"{v['id']} ({v['impact']}): {v['nodes'][0]['target']}" for v in result["violations"]
                       if v["impact"] in ("serious", "critical")]
                if bad:
                    found[f"{path} @{width}"] = bad
            sign_in(pg, live)
            pg.wait_for_url("**/emails")
        assert found == {}
    finally:
        ctx.close()


def test_symbol_tooltips_by_keyboard_and_touch(browser: Any, live: Live) -> None:
    ctx, pg = _signed_in_context(browser, live, viewport={"width": 390, "height": 844}, is_mobile=True,
                                 has_touch=True)
    try:
        pg.goto(f"{live.url}/tasks/T-7")
        syms = pg.locator(".note-head .syms")
        syms.focus()
        tip = pg.locator("#tip")
        tip.wait_for(state="visible")
        assert "Hard bounce (1 of 7)" in tip.inner_text() and "Marked as spam" in tip.inner_text()
        box = tip.bounding_box()
        assert box and box["x"] >= 0 and box["x"] + box["width"] <= 390
        pg.keyboard.press("Escape")
        tip.wait_for(state="detached")
        pg.locator(".note-rcpts .syms[data-tip]").first.tap()
        tip.wait_for(state="visible")
        assert "Opened" in tip.inner_text()
        assert pg.evaluate("document.documentElement.scrollWidth") <= 390
    finally:
        ctx.close()


def test_search_reasons_and_timeline_words(page: Any, live: Live) -> None:
    sign_in(page, live)
    page.wait_for_url("**/emails")
    for q, want in (("t-7", "Task sheet T-7"), ("HARD-BOUNCE@", "Task sheet T-7"), ("inv-000", "Invoice INV-0004")):
        page.fill("input[name=q]", q)
        page.click("form.filters button[type=submit]")
        page.wait_for_url(f"**q={q.replace('@', '%40')}**")
        assert want in page.locator("table.list tbody").inner_text(), q
    assert page.locator(".count").inner_text().startswith("5 emails")  # INV-0000 … INV-0004
    row = page.locator("table.list tbody tr", has_text="INV-0004")
    assert row.count() == 1
    page.goto(f"{live.url}/emails?q=t-7")
    # the reason in the list, in words
    assert "Delayed: the receiving server asked us to try again later" in page.locator("table.list tbody").inner_text()
    page.goto(f"{live.url}/emails/{live.email_id}")
    hard = page.locator("tr[data-recipient='hard-bounce@example.test'] td.reason")
    assert "The mailbox does not exist" in hard.inner_text() and "What to do:" in hard.inner_text()
    sent = page.locator("tr[data-recipient='sent@example.test'] td.reason").inner_text()
    assert "queued as" not in sent
    page.locator("tr[data-recipient='rejected@example.test'] .supp-link a").click()
    page.wait_for_url("**/suppressions?q=rejected%40example.test")
    assert page.locator("tr[data-address='rejected@example.test']").count() == 1
    page.goto(f"{live.url}/emails/{live.email_id}")
    events = page.locator("details.all-events ol.timeline").inner_text()
    assert "inbound_id" not in events and "delivered" not in events.lower().split("technical details")[0]
    deferred = page.locator("details.all-events li.t-deferred")
    assert "Delayed, mailtrack will retry" in deferred.inner_text() and "rejected" not in deferred.inner_text()
    history = page.locator("details.rcpt-history[data-keep^=h-]").nth(2)  # recipients in order: the third is sent@
    assert "sent@example.test" in history.locator("> summary").inner_text()
    assert not history.locator("li.t-opened").is_visible()
    history.locator("> summary").click()
    assert "Opened by a person" in history.locator("li.t-opened").inner_text()
    tech = history.locator("li.t-opened details.data")
    assert not tech.locator("dl").is_visible()
    tech.locator("summary").click()
    assert "User agent" in tech.locator("dl").inner_text()  # technical fields only behind the toggle
    assert page.errors == []


def test_browsers_get_html_error_pages_api_keeps_json(page: Any, live: Live) -> None:
    resp = page.goto(f"{live.url}/no-such-page")
    assert resp is not None and resp.status == 404
    assert page.locator("h1").inner_text() == "Page not found"
    resp = page.goto(f"{live.url}/api/v1/no-such-thing")
    assert resp is not None and resp.status == 404
    assert json.loads(page.locator("body").inner_text())["error"]["message"] == "Not Found"


def test_live_updates_swap_only_the_changed_rows(page: Any, live: Live) -> None:
    from playwright.sync_api import expect

    from mailtrack.store.schema import recipients
    from mailtrack.store.transitions import Change, record

    [eid] = submit_simple(live.store, live.acct, 1, subject="Live update", source_reference="T-LIVE",
                          recipients=[NewRecipient("", "live-a@example.test", "to"),
                                      NewRecipient("", "live-b@example.test", "cc")])
    with live.store.read() as conn:
        ids = {r.address: r.id for r in conn.execute(recipients.select().where(recipients.c.email_id == eid))}
    moving, still = ids["live-a@example.test"], ids["live-b@example.test"]
    sign_in(page, live)
    page.wait_for_url("**/emails")
    page.goto(f"{live.url}/emails/{eid}")
    # expect() polls from Playwright's own world: a wait_for_function string is eval'd in the page,
    # which the pages' CSP (no 'unsafe-eval') refuses
    expect(page.locator(".live-note")).to_have_text(re.compile(r"^updated"), timeout=20_000)  # stream open
    page.evaluate("""(rid) => {
        window.stillHere = true;
        window.keptRow = document.querySelector(`tr[data-key='${rid}']`);
    }""", still)
    history = page.locator(f"details[data-keep='h-{moving}']")
    history.locator("> summary").click()
    with live.store.write() as conn:
        assert record(conn, Change(moving, "sent", data={"host": "mx.live.test"})).value == "applied"
    expect(page.locator(f"tr[data-key='{moving}'] .badge").first).to_have_text("Sent", timeout=20_000)
    assert page.evaluate("window.stillHere === true")  # no reload
    assert page.evaluate("document.contains(window.keptRow)")  # the unchanged row was not rebuilt
    assert history.evaluate("d => d.open")  # what the reader opened stays open
    assert "Accepted by the receiving server (mx.live.test)" in history.inner_text()
    assert page.errors == []
