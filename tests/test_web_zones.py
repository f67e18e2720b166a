"""Times in the reader's zone with its label, and date filters counting that zone's days."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import update

from mailtrack.store.db import Store
from mailtrack.store.schema import emails
from mailtrack.web import zones
from tests.conftest import Api, make_config
from tests.test_web import csrf_of, sign_in
from tests.test_web_seed import add_user, submit_simple

# 2024-05-31 15:30 UTC is already 1 June 01:30 in Brisbane (UTC+10, no DST)
LATE_MAY_UTC = datetime(2024, 5, 31, 15, 30, tzinfo=UTC).timestamp()


@pytest.fixture
def signed(sqlite_store: Store, tmp_path: Path) -> Api:
    api = Api(sqlite_store, make_config(tmp_path))
    api.acct = add_user(api.store)  # type: ignore[attr-defined]
    assert sign_in(api.client).status_code == 303
    [eid] = submit_simple(api.store, api.acct, 1, subject="Late in May")  # type: ignore[attr-defined]
    with api.store.write() as conn:
        conn.execute(update(emails).where(emails.c.id == eid).values(created_at=LATE_MAY_UTC))
    return api


def _rows(html: str) -> int:
    return html.count('data-label="Created"')


def test_times_carry_the_zone_label(signed: Api) -> None:
    html = signed.client.get("/emails").text
    assert "2024-05-31 15:30:00 UTC" in html  # no cookie yet: UTC, said so
    signed.client.cookies.set(zones.TZ_COOKIE, "Australia/Brisbane")
    html = signed.client.get("/emails").text
    assert re.findall(r"<time[^>]*>([^<]*)", html) == ["2024-06-01 01:30:00 AEST"]
    signed.client.cookies.set(zones.TZ_COOKIE, "Not/A_Zone")
    assert "2024-05-31 15:30:00 UTC" in signed.client.get("/emails").text


def test_day_filters_use_the_readers_zone(signed: Api) -> None:
    c = signed.client
    assert _rows(c.get("/emails?since=2024-06-01&until=2024-06-01").text) == 0  # UTC: it is 31 May
    assert _rows(c.get("/emails?since=2024-05-31&until=2024-05-31").text) == 1
    c.cookies.set(zones.TZ_COOKIE, "Australia/Brisbane")
    assert _rows(c.get("/emails?since=2024-06-01&until=2024-06-01").text) == 1  # Brisbane: 1 June
    assert _rows(c.get("/emails?since=2024-05-31&until=2024-05-31").text) == 0


def test_filter_errors_use_the_labels_words(signed: Api) -> None:
    r = signed.client.get("/emails?since=yesterday&until=9999-12-31")
    assert r.status_code == 400
    assert "From must be a date like 2024-05-31" in r.text and "since" not in re.sub(r"<[^>]+>", "", r.text).split(
        "From must")[0].split("</form>")[-1]
    assert "To is out of range" in r.text


def test_choose_a_zone_in_settings(signed: Api) -> None:
    c = signed.client
    page = c.get("/settings")
    assert "This browser's zone (now UTC)" in page.text
    r = c.post("/settings/timezone", data={"tz": "America/New_York", "csrf": csrf_of(page.text)},
               follow_redirects=False)
    assert r.status_code == 303 and "notice=tz-saved" in r.headers["location"]
    assert c.cookies.get(zones.TZ_CHOSEN_COOKIE) == "1"
    assert "2024-05-31 11:30:00 EDT" in c.get("/emails").text
    page = c.get("/settings")
    assert '<option value="America/New_York" selected>' in page.text
    bad = c.post("/settings/timezone", data={"tz": "Mars/Olympus", "csrf": csrf_of(page.text)})
    assert bad.status_code == 400 and "unknown time zone" in bad.text
    r = c.post("/settings/timezone", data={"tz": "browser", "csrf": csrf_of(page.text)}, follow_redirects=False)
    assert r.status_code == 303 and c.cookies.get(zones.TZ_CHOSEN_COOKIE) is None  # follows the browser again


def test_a_chosen_zone_belongs_to_the_user_in_every_browser(signed: Api) -> None:
    from fastapi.testclient import TestClient

    page = signed.client.get("/settings")
    r = signed.client.post("/settings/timezone", data={"tz": "Australia/Brisbane", "csrf": csrf_of(page.text)},
                           follow_redirects=False)
    assert r.status_code == 303 and "Time zone saved for your account" in signed.client.get(r.headers["location"]).text
    other = TestClient(signed.app)  # another browser: no zone cookie of its own
    other.cookies.set(zones.TZ_COOKIE, "Europe/London")  # what app.js would set from that browser's zone
    assert sign_in(other).status_code == 303
    assert "2024-06-01 01:30:00 AEST" in other.get("/emails").text
    assert '<option value="Australia/Brisbane" selected>' in other.get("/settings").text
    page = other.get("/settings")
    other.post("/settings/timezone", data={"tz": "browser", "csrf": csrf_of(page.text)})
    assert "2024-05-31 16:30:00 BST" in other.get("/emails").text  # back to each browser's own zone
