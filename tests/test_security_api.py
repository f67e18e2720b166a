"""Issue 10, API findings: idempotency keys (§9), header controls (§11), strict types (§15),
encoded size (§6), huge batches (§7), CSV injection (§10)."""

from __future__ import annotations

import base64
import csv
import io
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from sqlalchemy import select

from mailtrack.compose import Composer, EmailSource
from mailtrack.store.schema import attachments, emails, recipients
from tests.conftest import Api, email_body, make_config


def _count(api: Api, key: str | None = None) -> int:
    return int(api.get("/api/v1/emails", key=key).json()["total"])


# --- §9 Idempotency-Key ----------------------------------------------------------------------------

def test_same_key_same_body_is_a_replay(api: Api) -> None:
    a = api.post("/api/v1/emails", email_body(), headers={"Idempotency-Key": "inv-1"})
    b = api.post("/api/v1/emails", email_body(), headers={"Idempotency-Key": '"inv-1"'})  # RFC 8941 sf-string
    assert (a.status_code, b.status_code) == (202, 202) and a.json()["id"] == b.json()["id"]
    assert _count(api) == 1


def test_same_key_different_body_is_422_naming_the_key(api: Api) -> None:
    first = api.post("/api/v1/emails", email_body(), headers={"Idempotency-Key": "inv-2"})
    assert first.status_code == 202
    r = api.post("/api/v1/emails", email_body(subject="Another invoice"), headers={"Idempotency-Key": "inv-2"})
    assert r.status_code == 422
    err = r.json()["error"]
    assert err["field"] == "Idempotency-Key" and "'inv-2'" in err["message"] and "different" in err["message"]
    assert _count(api) == 1


def test_replayed_batch_with_one_more_email_creates_nothing(api: Api) -> None:
    emails = [email_body(to=[f"u{i}@example.test"], cc=[], bcc=[]) for i in range(2)]
    a = api.post("/api/v1/emails/batch", {"emails": emails}, headers={"Idempotency-Key": "B"})
    assert a.status_code == 202
    again = api.post("/api/v1/emails/batch", {"emails": emails}, headers={"Idempotency-Key": "B"})
    assert [e["id"] for e in again.json()["emails"]] == [e["id"] for e in a.json()["emails"]]
    more = [*emails, email_body(to=["u9@example.test"], cc=[], bcc=[])]
    r = api.post("/api/v1/emails/batch", {"emails": more}, headers={"Idempotency-Key": "B"})
    assert r.status_code == 422 and r.json()["error"]["field"] == "Idempotency-Key"
    assert _count(api) == 2


def test_keys_are_scoped_per_endpoint_and_account(api: Api) -> None:
    batch = api.post("/api/v1/emails/batch", {"emails": [email_body(), email_body(subject="second")]},
                     headers={"Idempotency-Key": "K"}).json()["emails"]
    single = api.post("/api/v1/emails", email_body(subject="second"), headers={"Idempotency-Key": "K:1"})
    assert single.status_code == 202 and single.json()["id"] not in {e["id"] for e in batch}
    same_key = api.post("/api/v1/emails", email_body(subject="third"), headers={"Idempotency-Key": "K"})
    assert same_key.status_code == 202 and same_key.json()["id"] not in {e["id"] for e in batch}
    other = api.new_key("globex")
    theirs = api.post("/api/v1/emails", email_body(subject="third"), key=other, headers={"Idempotency-Key": "K"})
    assert theirs.status_code == 202 and theirs.json()["id"] != same_key.json()["id"]
    assert (_count(api), _count(api, other)) == (4, 1)


def test_concurrent_requests_with_one_key_create_one_email(api: Api) -> None:
    def send(_: int) -> tuple[int, str]:
        r = api.post("/api/v1/emails", email_body(), headers={"Idempotency-Key": "race"})
        return r.status_code, r.json().get("id", "")

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(send, range(16)))
    assert {code for code, _ in results} == {202}
    assert len({eid for _, eid in results}) == 1
    assert _count(api) == 1


def test_bad_idempotency_keys_are_422(api: Api) -> None:
    for key in ('""', "  ", "x" * 256):
        r = api.post("/api/v1/emails", email_body(), headers={"Idempotency-Key": key})
        assert r.status_code == 422, key
    assert _count(api) == 0


# --- §11 control characters and repeated header names -------------------------------------------

def test_control_characters_in_any_header_value_are_refused(api: Api) -> None:
    cases = [
        ({"subject": "Invoice\x0b1001"}, "subject"),
        ({"subject": "Invoice\x0c1001"}, "subject"),
        ({"subject": "bell\x07"}, "subject"),
        ({"subject": "del\x7f"}, "subject"),
        ({"headers": {"X-Note": "a\x1bb"}}, "headers.X-Note"),
        ({"from": "Acme\x0b Ops <ops@acme.test>"}, "from"),
        ({"to": ["Al\x0cice <alice@example.test>"]}, "to[0]"),
        ({"source": {"type": "task_sheet", "reference": "T\x0b42"}}, "source.reference"),
        ({"attachments": [{"filename": "a\x0b.pdf", "content": "aGk="}]}, "attachments[0]"),
    ]
    for over, field in cases:
        r = api.post("/api/v1/emails", email_body(**over))
        assert r.status_code == 422, over
        err = r.json()["error"]
        assert err["field"] == field and "control characters" in err["message"], (over, err)
    ok = api.post("/api/v1/emails", email_body(subject="Invoice\t1001"))  # TAB is allowed
    assert ok.status_code == 202
    assert _count(api) == 1


def test_header_names_repeating_case_insensitively_are_refused(api: Api) -> None:
    r = api.post("/api/v1/emails", email_body(headers={"X-Priority": "1", "x-priority": "5"}))
    assert r.status_code == 422
    err = r.json()["error"]
    assert err["field"] == "headers.x-priority" and "X-Priority" in err["message"]
    assert api.post("/api/v1/emails", email_body(headers={"X-Priority": "1"})).status_code == 202


# --- §15 strict types --------------------------------------------------------------------------------

def test_loose_types_are_refused_naming_the_field(api: Api) -> None:
    cases = [({"tracking": "yes"}, "tracking"), ({"tracking": 1}, "tracking"), ({"tracking": "true"}, "tracking"),
             ({"client": True}, "client"), ({"client": 1.5}, "client"), ({"client": [1]}, "client"),
             ({"to": "alice@example.test"}, "to"), ({"subject": 5}, "subject"),
             ({"metadata": {"n": 1}}, "metadata.n")]
    for over, field in cases:
        r = api.post("/api/v1/emails", email_body(**over))
        assert r.status_code == 422, over
        assert r.json()["error"]["field"] == field, (over, r.json())
    r = api.client.put("/api/v1/settings/tracking", json={"enabled": "no"}, headers=api.h())
    assert r.status_code == 422 and r.json()["error"]["field"] == "enabled"
    assert _count(api) == 0
    assert api.post("/api/v1/emails", email_body(tracking=False)).status_code == 202


# --- §6 the size limit counts the message as encoded for SMTP ------------------------------------

def _sized_api(any_store: Any, tmp_path: Path, limit: str = "1MB") -> Api:
    return Api(any_store, make_config(tmp_path, max_message_size=limit))


def _wire_size(api: Api, email_id: str) -> int:
    """Compose the stored email as delivery does and measure the bytes that would go out."""
    with api.store.read() as conn:
        row = conn.execute(select(emails).where(emails.c.id == email_id)).mappings().one()
        files = [(a.filename, a.content_type, bytes(a.content))
                 for a in conn.execute(select(attachments).where(attachments.c.email_id == email_id))]
        rid = conn.execute(select(recipients.c.id).where(recipients.c.email_id == email_id)).scalars().first()
    composer = Composer(secret="s" * 64, bounce_domain="bounces." + "x" * 60 + ".test", public_url=api.config.public_url)
    return len(composer.compose(EmailSource.from_row(row, files), str(rid), "alice@example.test").data)


def test_multibyte_text_counts_in_encoded_bytes(any_store: Any, tmp_path: Path) -> None:
    api = _sized_api(any_store, tmp_path)
    limit = 1024 * 1024
    r = api.post("/api/v1/emails", email_body(text="€" * 400_000))  # 400k characters, ~3.6 MB quoted-printable
    assert r.status_code == 422
    err = r.json()["error"]
    assert err["field"] == "message" and "as encoded for SMTP" in err["message"] and "1.0 MB" in err["message"]
    attach = base64.b64encode(b"\xff" * (770 * 1024)).decode()  # 770 KB: 1.03 MB once in base64 with line breaks
    r = api.post("/api/v1/emails", email_body(text="see attached", attachments=[{"filename": "a.bin",
                                                                                  "content": attach}]))
    assert r.status_code == 422 and r.json()["error"]["field"] == "message"
    html = "<p>" + ("<a href='https://portal.test/x'>x</a> " * 20_000) + "</p>"
    r = api.post("/api/v1/emails", email_body(text=None, html=html, tracking=True))  # 0.76 MB; tracked links grow it
    assert r.status_code == 422
    # what is accepted really goes out under the limit
    for body in (email_body(text="€" * 100_000), email_body(text="a" * 900_000),
                 email_body(text="x", attachments=[{"filename": "b.bin",
                                                    "content": base64.b64encode(b"\x00" * 700_000).decode()}]),
                 email_body(text=None, html="<p>" + "<a href='https://portal.test/x'>x</a> " * 2000, tracking=True)):
        r = api.post("/api/v1/emails", body)
        assert r.status_code == 202, r.json()
        assert _wire_size(api, r.json()["id"]) <= limit


# --- §10 CSV injection -------------------------------------------------------------------------------

def test_suppression_csv_escapes_formula_cells(api: Api) -> None:
    from mailtrack.store import accounts, suppressions

    hostile = ['=HYPERLINK("http://evil.test","click")', "+1+1", "-2", "@SUM(A1)", "\tx", "plain reason"]
    with api.store.write() as conn:
        acct = accounts.get_or_create_account(conn, "acme")
        for i, reason in enumerate(hostile):
            suppressions.add(conn, acct, f"u{i}@example.test", reason, "hard_bounce")
    for path in ("/api/v1/suppressions.csv", "/api/v1/suppressions?format=csv"):
        r = api.get(path)
        assert r.status_code == 200
        rows = list(csv.DictReader(io.StringIO(r.text)))
        reasons = {row["reason"] for row in rows}
        assert reasons == {"'" + h for h in hostile[:-1]} | {"plain reason"}, path
        assert all(row["reason"][:1] not in "=+-@\t" for row in rows)
    # JSON keeps the stored text as it is
    assert {s["reason"] for s in api.get("/api/v1/suppressions").json()["suppressions"]} == set(hostile)


# --- §7 huge batches -----------------------------------------------------------------------------------

def test_too_many_recipients_in_one_request_is_422_stating_the_limit(api: Api) -> None:
    many = [f"u{i}@example.test" for i in range(3000)]
    body = {"emails": [email_body(to=many[:1000], cc=many[1000:2000], bcc=many[2000:]) for _ in range(100)]}
    r = api.post("/api/v1/emails/batch", body)
    assert r.status_code == 422
    err = r.json()["error"]
    assert err["field"] == "emails" and "at most 1000 recipients" in err["message"] and "300000" in err["message"]
    assert _count(api) == 0


def test_suppression_check_of_a_huge_batch_is_chunked(any_store: Any) -> None:
    from mailtrack.store import accounts, suppressions

    with any_store.write() as conn:
        acct = accounts.get_or_create_account(conn, "acme")
        suppressions.add(conn, acct, "u39999@example.test", "manual", "manual")
        suppressions.add(conn, acct, "u7@example.test", "manual", "manual")
        found = suppressions.suppressed_among(conn, acct, {f"u{i}@example.test" for i in range(70_000)})
    assert set(found) == {"u39999@example.test", "u7@example.test"}


def test_a_batch_at_the_limit_is_accepted(api: Api) -> None:
    many = [f"u{i}@example.test" for i in range(500)]
    body = {"emails": [email_body(to=many[:200], cc=many[200:400], bcc=many[400:]) for _ in range(2)]}
    r = api.post("/api/v1/emails/batch", body)
    assert r.status_code == 202 and sum(len(e["recipients"]) for e in r.json()["emails"]) == 1000
    over = {"emails": [*body["emails"], email_body(to=["one.more@example.test"], cc=[], bcc=[])]}
    assert api.post("/api/v1/emails/batch", over).status_code == 422


def test_group_writer_takes_accounts_round_robin_within_a_budget(sqlite_store: Any) -> None:
    from mailtrack.store.writer import GroupWriter

    gate = threading.Event()
    ran: list[list[str]] = []

    def work(_conn: Any, names: list[str]) -> list[str]:
        if names == ["gate"]:
            assert gate.wait(10)
        ran.append(names)
        return names

    writer = GroupWriter(sqlite_store, max_weight=100)
    first = writer.enqueue("a", work, "gate")
    heavy = [writer.enqueue("a", work, f"a{i}", weight=100) for i in range(5)]
    light = writer.enqueue("b", work, "b0", weight=1)
    gate.set()
    for fut in (first, *heavy, light):
        fut.result(10)
    writer.close()
    order = [n for names in ran for n in names]
    # b0 went in right after the first of a's heavy requests, not after all five
    assert order.index("b0") <= order.index("a1")
    assert all(len(names) == 1 for names in ran if names[0].startswith("a"))


def test_a_single_email_over_the_recipient_limit_is_422(api: Api) -> None:
    many = [f"u{i}@example.test" for i in range(1001)]
    r = api.post("/api/v1/emails", email_body(to=many[:600], cc=many[600:], bcc=[]))
    assert r.status_code == 422 and "at most 1000 recipients" in r.json()["error"]["message"]


# --- §8 disk full / read-only database -------------------------------------------------------------

def _pragma_on_every_connection(store: Any, pragma: str) -> None:
    """Apply a PRAGMA to every pooled and future SQLite connection of the store."""
    from sqlalchemy import event

    store.engine.dispose()
    event.listen(store.engine, "connect", lambda dbapi_conn, _rec: dbapi_conn.execute(pragma))


def test_disk_full_is_503_with_retry_after_and_recovers(sqlite_store: Any, tmp_path: Path) -> None:
    from sqlalchemy import event, text

    api = Api(sqlite_store, make_config(tmp_path))
    before = api.post("/api/v1/emails", email_body(subject="acknowledged before"))
    assert before.status_code == 202
    with sqlite_store.read() as conn:
        pages = int(conn.execute(text("PRAGMA page_count")).scalar_one())
    limit = {"pages": pages}  # SQLite refuses to grow the file past this: SQLITE_FULL, as on a full disk

    def cap(dbapi_conn: Any, _rec: Any) -> None:
        dbapi_conn.execute(f"PRAGMA max_page_count={limit['pages']}")

    sqlite_store.engine.dispose()
    event.listen(sqlite_store.engine, "connect", cap)
    big = "x" * 200_000  # needs new pages
    for _ in range(3):
        r = api.post("/api/v1/emails", email_body(text=big))
        assert r.status_code == 503, r.text
        assert r.headers["retry-after"] == "30"
        assert "disk is full" in r.json()["error"]["message"] and "Traceback" not in r.text
    assert api.get(f"/api/v1/emails/{before.json()['id']}").status_code == 200  # reads still work
    limit["pages"] = 1_000_000  # space is back
    sqlite_store.engine.dispose()
    r = api.post("/api/v1/emails", email_body(text=big))
    assert r.status_code == 202
    assert _count(api) == 2  # the acknowledged one and the new one; nothing half-stored


def test_read_only_database_is_503(sqlite_store: Any, tmp_path: Path) -> None:
    api = Api(sqlite_store, make_config(tmp_path))
    _pragma_on_every_connection(sqlite_store, "PRAGMA query_only=ON")
    r = api.post("/api/v1/emails", email_body())
    assert r.status_code == 503 and r.headers["retry-after"] == "30"
    assert "read-only" in r.json()["error"]["message"]
    r = api.client.post("/api/v1/suppressions", json={"address": "x@example.test"}, headers=api.h())
    assert r.status_code == 503
