"""The pages in a real browser (Debian chromium, headless) against a real uvicorn server."""

from __future__ import annotations

import json
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from mailtrack.api.app import create_app
from mailtrack.store import accounts
from mailtrack.store.db import Store, open_store
from tests.conftest import email_body, make_config
from tests.test_web_seed import PASSWORD, XSS, add_user, seed_every_status, submit_simple

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
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
    """uvicorn on port 0 in a background thread; the bound port is read back."""

    def __init__(self, app: Any) -> None:
        import uvicorn

        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning",
                                                    lifespan="off", access_log=False))
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
    assert page.locator("table.list tbody tr").count() == 6
    page.select_option("select[name=status]", "hard_bounce")  # submits by itself (app.js)
    page.wait_for_url("**status=hard_bounce**")
    rows = page.locator("table.list tbody tr")
    assert rows.count() == 1 and "Task sheet T-7" in rows.inner_text()
    page.select_option("select[name=status]", "")
    page.wait_for_url(lambda u: "status=hard_bounce" not in u)
    page.fill("input[name=reference]", "INV-0002")
    page.click("form.filters button[type=submit]")
    page.wait_for_url("**reference=INV-0002**")
    assert page.locator("table.list tbody tr").count() == 1
    assert "Invoice INV-0002" in page.locator("table.list tbody").inner_text()
    page.select_option("select[name=source_type]", "task_sheet")
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
    page.click("details.legend summary")
    assert page.locator("details.legend dl.statuses dt").count() == 7
    page.wait_for_timeout(300)
    assert page.dialogs == [] and page.errors == []


def test_task_notes_symbols_have_tooltips(page: Any, live: Live) -> None:
    sign_in(page, live)
    page.goto(f"{live.url}/tasks/T-7")
    head = page.locator(".note-head .sym")
    assert [head.nth(i).get_attribute("data-symbol") for i in range(head.count())] == [
        "spooling", "sent", "opened", "clicked", "bounced", "rejected", "spam"]
    for i in range(head.count()):
        title = head.nth(i).get_attribute("title")
        assert title and head.nth(i).get_attribute("aria-label") == title
        assert head.nth(i).get_attribute("role") == "img"
        box = head.nth(i).bounding_box()
        assert box and 12 <= box["width"] <= 32  # small, visible symbols
    assert page.locator(".note-head .sym[data-symbol=opened]").get_attribute("title").startswith("Opened (1 of 7)")
    embed_url = page.locator("input.copy").input_value()
    page.goto(live.url + embed_url)
    assert page.locator(".note-head .sym").count() == 7 and page.locator("header.top").count() == 0
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
    assert page.locator(".facts .tag").inner_text() == "not tracked"
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
