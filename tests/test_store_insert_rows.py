"""insert_rows: multi-row INSERTs by the driver, as SQLAlchemy's insert() would store the same rows."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from mailtrack.store import chunked
from mailtrack.store.chunked import insert_rows
from mailtrack.store.db import Store
from mailtrack.store.schema import accounts, attachments, emails


def test_rows_of_any_shape_and_count_are_stored_with_their_types(any_store: Store,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(chunked, "_ROWS_PER_INSERT", 9)  # 4 columns: two rows per statement, so 7 statements
    rows = [{"name": f"a{i}", "track_default": i % 2 == 0, "created_at": i + 0.25} for i in range(5)]
    rows += [{"id": 1000 + i, "name": f"b{i}", "track_default": False, "created_at": 1.5} for i in range(7)]
    with any_store.write() as conn:
        insert_rows(conn, accounts, rows)
        insert_rows(conn, accounts, [])
    with any_store.read() as conn:
        got = {r.name: r for r in conn.execute(select(accounts))}
    assert set(got) == {r["name"] for r in rows}
    for r in rows:
        assert got[r["name"]].track_default is r["track_default"]
        assert got[r["name"]].created_at == r["created_at"]
    assert {got[f"b{i}"].id for i in range(7)} == set(range(1000, 1007))


def test_bytes_none_and_text_round_trip(any_store: Store) -> None:
    with any_store.write() as conn:
        (account,) = conn.execute(accounts.insert().values(name="x", track_default=True, created_at=0.0)
                                  .returning(accounts.c.id)).one()
        insert_rows(conn, emails, [{
            "id": "e1", "account_id": account, "client_id": None, "idempotency_key": None, "from_addr": "a@b.test",
            "reply_to": None, "to_header": "", "cc_header": "", "subject": "it's 100% \"quoted\" ?", "text_body": "é",
            "html_body": None, "headers_json": "{}", "metadata_json": "{}", "source_type": None,
            "source_reference": None, "source_event": None, "tracking": True, "tracking_override": None, "size": 3,
            "created_at": 1.0, "unsubscribe": None}])
        insert_rows(conn, attachments, [{"email_id": "e1", "filename": "m.eml", "content_type": "message/rfc822",
                                         "content": b"\x00\xff raw"}])
    with any_store.read() as conn:
        email = conn.execute(select(emails)).one()
        att = conn.execute(select(attachments)).one()
    assert email.subject == "it's 100% \"quoted\" ?" and email.text_body == "é" and email.html_body is None
    assert email.tracking is True and email.tracking_override is None and email.unsubscribe is None
    assert bytes(att.content) == b"\x00\xff raw"
