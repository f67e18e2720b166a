"""Resend to one recipient, unsuppress and resend, bulk unsuppress, and the filtered list as CSV."""

from __future__ import annotations

import csv
import io
import re

import pytest

from mailtrack.store import queries, suppressions
from tests.conftest import Api
from tests.test_web import csrf_of, sign_in
from tests.test_web_seed import add_user, seed_every_status, submit_simple


@pytest.fixture
def signed(api: Api) -> Api:
    api.acct = add_user(api.store)  # type: ignore[attr-defined]
    assert sign_in(api.client).status_code == 303
    return api


def _csrf(api: Api) -> str:
    return csrf_of(api.client.get("/emails").text)


def test_unsuppress_and_resend_one_recipient(signed: Api) -> None:
    acct = signed.acct  # type: ignore[attr-defined]
    eid, ids = seed_every_status(signed.store, acct)
    with signed.store.write() as conn:  # as delivery does for a hard bounce
        suppressions.add(conn, acct, "hard-bounce@example.test", "hard bounce: 550 5.1.1", "hard_bounce")
    page = signed.client.get(f"/emails/{eid}").text
    assert page.count("Unsuppress and resend") == 3  # the hard bounce, the complaint (suppressed by the core) and the rejected address
    assert f'/recipients/{ids["sent"]}/resend' in page and f'/recipients/{ids["spooled"]}/resend' not in page
    r = signed.client.post(f"/emails/{eid}/recipients/{ids['hard_bounce']}/resend",
                           data={"csrf": _csrf(signed), "unsuppress": "1"}, follow_redirects=False)
    assert r.status_code == 303
    new_id = re.match(r"/emails/(\w+)\?notice=resent", r.headers["location"]).group(1)  # type: ignore[union-attr]
    with signed.store.read() as conn:
        new = queries.get_email(conn, acct, new_id)
        still = suppressions.suppressed_among(conn, acct, {"hard-bounce@example.test", "rejected@example.test"})
        original = queries.get_email(conn, acct, eid)
    assert [(x["address"], x["kind"], x["status"]) for x in new["recipients"]] == [
        ("hard-bounce@example.test", "bcc", "spooled")]
    assert new["metadata"]["resent_from"] == eid and new["subject"] == original["subject"]
    assert new["source"] == original["source"]
    assert list(still) == ["rejected@example.test"]  # only the one asked for left the list
    assert len(original["recipients"]) == 7  # the original is untouched
    html = signed.client.get(r.headers["location"]).text
    assert "Sent again" in html and f'href="/emails/{eid}">the original email' in html


def test_resend_to_a_suppressed_address_without_unsuppress_is_rejected(signed: Api) -> None:
    acct = signed.acct  # type: ignore[attr-defined]
    eid, ids = seed_every_status(signed.store, acct)
    r = signed.client.post(f"/emails/{eid}/recipients/{ids['rejected']}/resend", data={"csrf": _csrf(signed)},
                           follow_redirects=False)
    new_id = r.headers["location"].split("/")[2].split("?")[0]
    with signed.store.read() as conn:
        assert queries.get_email(conn, acct, new_id)["recipients"][0]["status"] == "rejected"


def test_resend_needs_csrf_and_the_accounts_own_recipient(signed: Api) -> None:
    acct = signed.acct  # type: ignore[attr-defined]
    eid, ids = seed_every_status(signed.store, acct)
    r = signed.client.post(f"/emails/{eid}/recipients/{ids['sent']}/resend", data={}, follow_redirects=False)
    assert r.status_code == 403
    other = add_user(signed.store, account="other", email="ops@other.test")
    oid, oids = seed_every_status(signed.store, other, reference="T-9")
    r = signed.client.post(f"/emails/{oid}/recipients/{oids['sent']}/resend", data={"csrf": _csrf(signed)})
    assert r.status_code == 404
    with signed.store.read() as conn:
        assert len(queries.list_emails(conn, other)[0]) == 1


def test_bulk_unsuppress(signed: Api) -> None:
    acct = signed.acct  # type: ignore[attr-defined]
    with signed.store.write() as conn:
        for a in ("a@x.test", "b@x.test", "c@x.test"):
            suppressions.add(conn, acct, a, "test", "manual")
    page = signed.client.get("/suppressions").text
    assert page.count('form="bulk"') == 3
    r = signed.client.post("/suppressions/remove-many", data={"csrf": csrf_of(page),
                                                              "address": ["a@x.test", "C@x.test", "nobody@x.test"]})
    assert r.status_code == 200 and "2 address(es) removed" in r.text
    with signed.store.read() as conn:
        assert list(suppressions.suppressed_among(conn, acct, {"a@x.test", "b@x.test", "c@x.test"})) == ["b@x.test"]


def test_filtered_list_as_csv(signed: Api) -> None:
    acct = signed.acct  # type: ignore[attr-defined]
    submit_simple(signed.store, acct, 520, subject="Bulk run")  # more than one keyset batch
    submit_simple(signed.store, acct, 1, subject="=HYPERLINK(\"http://evil.test\")")
    seed_every_status(signed.store, acct)
    r = signed.client.get("/emails.csv", params={"q": "bulk run"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert len(rows) == 520 and len({x["email_id"] for x in rows}) == 520
    rows = list(csv.DictReader(io.StringIO(signed.client.get("/emails.csv?q=hyperlink").text)))
    assert rows[0]["subject"].startswith("'=")  # a spreadsheet shows it, never runs it
    rows = list(csv.DictReader(io.StringIO(signed.client.get("/emails.csv?status=hard_bounce").text)))
    assert len(rows) == 7  # one row per recipient of the matching email
    hard = next(x for x in rows if x["status"] == "hard_bounce")
    assert hard["reason_summary"] == "The mailbox does not exist" and hard["kind"] == "bcc"
    assert signed.client.get("/emails.csv?since=nope").status_code == 400
    assert 'href="/emails.csv?q=bulk+run"' in signed.client.get("/emails?q=bulk+run").text
