"""The list's search box and its pages: partial, case-insensitive, over subjects, addresses and references;
total count, page numbers and keyset paging; on SQLite and PostgreSQL."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import update

from mailtrack.store import web as web_q
from mailtrack.store.schema import emails
from mailtrack.store.submit import NewRecipient
from tests.conftest import Api
from tests.test_web import sign_in
from tests.test_web_seed import add_user, submit_simple

ROW = re.compile(r'<a href="/emails/(\w+)">')


@pytest.fixture
def signed(api: Api) -> Api:
    api.acct = add_user(api.store)  # type: ignore[attr-defined]
    assert sign_in(api.client).status_code == 303
    return api


def _ids(html: str) -> list[str]:
    return ROW.findall(html.split('<div id="live">', 1)[1].split("</table>", 1)[0])


def _search(api: Api, q: str) -> tuple[int, list[str]]:
    r = api.client.get("/emails", params={"q": q})
    assert r.status_code == 200, r.text
    return int(re.search(r"(\d+) emails? match", r.text).group(1)), _ids(r.text)  # type: ignore[union-attr]


def test_search_subject_address_and_reference_partial_any_case(signed: Api) -> None:
    acct = signed.acct  # type: ignore[attr-defined]
    [task] = submit_simple(signed.store, acct, 1, subject="Boiler service", source_reference="T-1042",
                           recipients=[NewRecipient("", "Bob.Builder@Example.test", "to")])
    [inv] = submit_simple(signed.store, acct, 1, subject="Invoice for March", source_reference="INV-77",
                          recipients=[NewRecipient("", "anna@example.test", "to"),
                                      NewRecipient("", "bob.accounts@other.test", "cc")])
    [pct] = submit_simple(signed.store, acct, 1, subject="100% done_ok", source_reference="X-1",
                          recipients=[NewRecipient("", "carl@example.test", "to")])
    assert _search(signed, "t-104") == (1, [task])  # reference, partial, other case
    assert _search(signed, "T-1042") == (1, [task])
    assert _search(signed, "BOB")[0] == 2 and set(_search(signed, "bob")[1]) == {task, inv}  # addresses, any case
    assert _search(signed, "@other.TEST") == (1, [inv])  # a CC address counts too
    assert _search(signed, "march") == (1, [inv])  # subject
    assert _search(signed, "100%") == (1, [pct])  # LIKE wildcards are plain characters
    assert _search(signed, "e_o") == (1, [pct])
    assert _search(signed, "%")[0] == 1
    assert _search(signed, "nobody-has-this")[0] == 0
    # another account's emails never show
    other = add_user(signed.store, account="other", email="ops@other.test")
    submit_simple(signed.store, other, 1, subject="Boiler service elsewhere")
    assert _search(signed, "boiler") == (1, [task])


def test_keyset_pages_cover_every_email_once_even_with_equal_times(signed: Api) -> None:
    acct = signed.acct  # type: ignore[attr-defined]
    ids = submit_simple(signed.store, acct, 130)
    with signed.store.write() as conn:  # many emails in the same instant: the id breaks the tie
        conn.execute(update(emails).where(emails.c.id.in_(ids[40:90])).values(created_at=1_700_000_000.5))
    c = signed.client
    html = c.get("/emails").text
    assert "130 emails" in html and "page 1 of 3" in html
    assert re.search(r'aria-current="page" class="current" href="\?page=1">1</a>', html)
    seen: list[str] = []
    pages = 0
    while True:
        pages += 1
        seen += _ids(html)
        m = re.search(r'rel="next" href="\?at=([^&"]+)&amp;page=(\d+)"', html)
        if not m:
            break
        assert int(m.group(2)) == pages + 1
        html = c.get(f"/emails?at={m.group(1)}&page={m.group(2)}").text
        assert f"page {pages + 1} of 3" in html
    assert pages == 3 and len(seen) == 130 and set(seen) == set(ids)
    # and back: "Newer" from the last page gives exactly page 2 again
    newer = re.search(r'rel="prev" href="\?at=([^&"]+)&amp;page=(\d+)"', html)
    assert newer and newer.group(2) == "2"
    back = c.get(f"/emails?at={newer.group(1)}&page=2").text
    assert _ids(back) == seen[50:100]
    # the numbered links (offset) agree with the keyset pages
    assert _ids(c.get("/emails?page=2").text) == seen[50:100]


def test_keyset_with_filters_keeps_the_filter(signed: Api) -> None:
    acct = signed.acct  # type: ignore[attr-defined]
    submit_simple(signed.store, acct, 60, subject="Alpha report")
    submit_simple(signed.store, acct, 10, subject="Beta report")
    html = signed.client.get("/emails", params={"q": "alpha"}).text
    assert "60 emails match" in html
    m = re.search(r'rel="next" href="\?([^"]+)"', html)
    assert m and "q=alpha" in m.group(1)
    page2 = signed.client.get("/emails?" + m.group(1).replace("&amp;", "&")).text
    assert len(_ids(page2)) == 10 and "Beta" not in page2


@pytest.mark.parametrize("at", ["x", "o", "o1.5", "o1.5_", "onan_abc", "o1e999_abc", "o1.5_a/b", "n" + "9" * 400,
                                "o1.5_" + "a" * 40, "o\x00_1"])
def test_bad_page_position_is_a_message_not_a_500(signed: Api, at: str) -> None:
    r = signed.client.get("/emails", params={"at": at})
    assert r.status_code in (200, 400), r.text
    if r.status_code == 400:
        assert "page position" in r.text and 'role="alert"' in r.text


def test_cursor_round_trip() -> None:
    c = web_q.Cursor(1_717_000_000.123456, "abc123", newer=True)
    assert web_q.Cursor.parse(c.token()) == c
    with pytest.raises(ValueError, match="start again from the first page"):
        web_q.Cursor.parse("z1_abc")


def test_page_numbers_links(signed: Api) -> None:
    from mailtrack.web.pages import _pager

    assert _pager(1, 1) == [1]
    assert _pager(1, 10) == [1, 2, 3, None, 10]
    assert _pager(6, 10) == [1, None, 4, 5, 6, 7, 8, None, 10]
    assert _pager(10, 10) == [1, None, 8, 9, 10]
    submit_simple(signed.store, signed.acct, 51)  # type: ignore[attr-defined]
    html = signed.client.get("/emails?page=2").text
    assert "page 2 of 2" in html and 'aria-label="Page 1"' in html


def test_filters_unchanged(signed: Api) -> None:
    """The exact reference filter (used by the task notes' "as a table" link) stays exact."""
    acct = signed.acct  # type: ignore[attr-defined]
    submit_simple(signed.store, acct, 1, source_reference="T-104")
    submit_simple(signed.store, acct, 1, source_reference="T-1042")
    html = signed.client.get("/emails?reference=T-104").text
    assert len(_ids(html)) == 1 and "show all references" in html
