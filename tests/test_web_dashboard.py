"""The dashboard: charts and tables of the last 24 h / 30 days, per source type, on both engines."""

from __future__ import annotations

import re
import time

import pytest

from mailtrack.store import web as web_q
from mailtrack.store.transitions import Change, record
from tests.conftest import Api
from tests.test_web import sign_in
from tests.test_web_seed import add_user, seed_every_status, submit_simple


@pytest.fixture
def signed(api: Api) -> Api:
    api.acct = add_user(api.store)  # type: ignore[attr-defined]
    assert sign_in(api.client).status_code == 303
    return api


def test_buckets_count_events_per_type_and_people(signed: Api) -> None:
    acct = signed.acct  # type: ignore[attr-defined]
    _eid, ids = seed_every_status(signed.store, acct)  # 1 sent, 1 deferred, bounces, 1 human open (of 3), 1 complaint
    with signed.store.write() as conn:
        record(conn, Change(ids["sent"], "opened", data={"class": "apple_privacy"}))
    submit_simple(signed.store, acct, 3, source_type="invoice")
    now = time.time()
    with signed.store.read() as conn:
        b = web_q.event_buckets(conn, acct, now - 3600, 3600, 2)
        inv = web_q.event_buckets(conn, acct, now - 3600, 3600, 2, "invoice")
        old = web_q.event_buckets(conn, acct, now - 7200, 60, 10)
    assert b["creating"] == [10, 0] and b["sent"] == [1, 0] and b["complained"] == [1, 0]
    assert b["opened"] == [2, 0] and b["opened_human"] == [1, 0] and b["clicked_human"] == [1, 0]
    assert b["soft_bounce"] == [1, 0] and b["hard_bounce"] == [1, 0] and b["deferred"] == [1, 0]
    assert inv["creating"] == [3, 0] and inv["sent"] == [0, 0]
    assert sum(old["creating"]) == 0  # outside the window


def test_dashboard_page_charts_and_table(signed: Api) -> None:
    seed_every_status(signed.store, signed.acct)  # type: ignore[attr-defined]
    html = signed.client.get("/dashboard").text
    assert html.count('<svg class="chart"') == 3 and "0.3%: Gmail&#39;s limit" in html
    assert "complaint rate 100.0%" in html and "above Gmail" in html  # 1 complaint of 1 sent
    rows = re.findall(r'<tr><th scope="row">', html)
    assert len(rows) == 24
    month = signed.client.get("/dashboard?range=30d&source_type=invoice").text
    assert len(re.findall(r'<tr><th scope="row">', month)) == 30 and "invoices only" in month
    assert "<script" not in html.split("</head>")[1]
    for bad in ("range=1y", "source_type=fax"):
        r = signed.client.get(f"/dashboard?{bad}")
        assert r.status_code == 400 and 'role="alert"' in r.text
