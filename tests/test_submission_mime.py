"""A submitted message's MIME structure goes out as sent: only mailtrack's headers and the tracked HTML change."""

from __future__ import annotations

import email
import email.policy
from email.message import EmailMessage

import pytest

from mailtrack.compose import Composer, EmailSource
from mailtrack.store import accounts, submit
from mailtrack.store import delivery as dstore
from mailtrack.store.db import Store
from mailtrack.submission.message import Refused, to_new_email
from mailtrack.submission.mime import html_span
from tests.test_submission import PDF, PNG, SIM, rich_message

CRLF = email.policy.default.clone(linesep="\r\n")


def store_and_compose(store: Store, raw: bytes, rcpts: list[str]) -> dict[str, bytes]:
    """What the worker would send to each recipient: submit, load the row back, compose."""
    with store.write() as conn:
        acct = accounts.get_or_create_account(conn, "acme")
        [(email_id, _)] = submit.submit(conn, acct, [to_new_email(raw, rcpts)])
    with store.read() as conn:
        row, atts = dstore.load_emails(conn, {email_id})[email_id]
        ids = {r["address"]: r["id"] for r in dstore_recipients(conn, email_id)}
    composer = Composer(secret="s", bounce_domain="bounces.test", public_url="http://track.test")
    src = EmailSource.from_row(row, atts)
    return {addr: composer.compose(src, rid, addr).data for addr, rid in ids.items()}


def dstore_recipients(conn: object, email_id: str) -> list[dict[str, str]]:
    from sqlalchemy import select

    from mailtrack.store.schema import recipients

    rows = conn.execute(select(recipients.c.id, recipients.c.address).where(recipients.c.email_id == email_id))  # type: ignore[attr-defined]
    return [{"id": r.id, "address": r.address} for r in rows]


def leaves(raw: bytes) -> list[tuple[str, bytes]]:
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    return [(p.get_content_type(), p.get_payload(decode=True)) for p in msg.walk() if not p.is_multipart()]


def test_structure_attachments_and_inline_images_are_kept(sqlite_store: Store) -> None:
    raw = rich_message().as_bytes(policy=CRLF)
    out = store_and_compose(sqlite_store, raw, [f"success@{SIM}", f"archive@{SIM}"])
    sent = out[f"success@{SIM}"]
    got, want = leaves(sent), leaves(raw)
    assert [c for c, _ in got] == [c for c, _ in want] == ["text/plain", "text/html", "image/png", "application/pdf"]
    assert got[0] == want[0]  # the text part, byte for byte after decoding
    assert got[2] == ("image/png", PNG) and got[3] == ("application/pdf", PDF)
    html = got[1][1].decode()
    assert "/o/" in html and "http://track.test/c/" in html and "https://portal.acme.test" not in html
    assert 'src="cid:logo"' in html and "Grüße" in html
    msg = email.message_from_bytes(sent, policy=email.policy.default)
    assert msg["Bcc"] is None and msg["X-Mailtrack-Source-Type"] is None and msg["X-Mailtrack-Metadata-Order"] is None
    assert msg["Subject"] == "Invoice 1001 — Überweisung" and msg["X-Custom"] == "kept"
    assert msg["Message-ID"].endswith("@bounces.test>") and msg["X-Mailtrack-ID"]
    # the body outside the HTML part is the client's bytes: the PDF's base64 lines are in the output unchanged
    pdf_b64 = raw[raw.index(b"JVBERi0x"):raw.index(b"JVBERi0x") + 300]
    assert pdf_b64 in sent
    # each recipient's HTML is their own
    assert out[f"archive@{SIM}"] != sent


def test_untracked_message_body_goes_out_byte_for_byte(sqlite_store: Store) -> None:
    msg = rich_message()
    msg["X-Mailtrack-Tracking"] = "off"
    raw = msg.as_bytes(policy=CRLF)
    sent = store_and_compose(sqlite_store, raw, [f"success@{SIM}"])[f"success@{SIM}"]
    body = raw[raw.index(b"\r\n\r\n"):]
    assert sent.endswith(body)


def test_single_part_html_and_8bit_text(sqlite_store: Store) -> None:
    raw = (b"From: ops@acme.test\r\nTo: success@sim.mailtrack.test\r\nSubject: hi\r\nMIME-Version: 1.0\r\n"
           b"Content-Type: text/html; charset=iso-8859-1\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
           b'<p>Gr\xfc\xdfe <a href="https://x.example/a">a</a></p>\r\n')
    sent = store_and_compose(sqlite_store, raw, [f"success@{SIM}"])[f"success@{SIM}"]
    msg = email.message_from_bytes(sent, policy=email.policy.default)
    assert msg.get_content_type() == "text/html" and msg.get_content_charset() == "utf-8"
    assert "Grüße" in msg.get_content() and "/c/" in msg.get_content()
    assert msg["Date"]  # added when the client sent none


def test_html_span_skips_html_attachments_and_finds_nested_parts() -> None:
    msg = EmailMessage()
    msg["From"] = "a@b.test"
    msg.set_content("text")
    msg.add_attachment("<p>attached</p>", subtype="html", filename="page.html")
    raw = msg.as_bytes(policy=CRLF)
    assert html_span(raw) is None
    raw = rich_message().as_bytes(policy=CRLF)
    span = html_span(raw)
    assert span is not None and raw[span[0]:span[1]].lower().startswith(b"content-type: text/html")


@pytest.mark.parametrize(("header", "value", "named"), [
    ("X-Mailtrack-Source-Type", "memo", "X-Mailtrack-Source-Type"),
    ("X-Mailtrack-Tracking", "maybe", "X-Mailtrack-Tracking"),
    ("X-Mailtrack-Colour", "blue", "X-Mailtrack-Colour"),
    ("X-Mailtrack-Metadata-" + "n" * 101, "x", "X-Mailtrack-Metadata-nnn"),
    ("X-Mailtrack-Source-Reference", "r" * 201, "X-Mailtrack-Source-Reference"),
])
def test_a_bad_metadata_header_is_refused_naming_it(header: str, value: str, named: str) -> None:
    raw = f"From: ops@acme.test\r\nTo: a@b.test\r\n{header}: {value}\r\nSubject: x\r\n\r\nhi\r\n".encode()
    with pytest.raises(Refused) as e:
        to_new_email(raw, ["a@b.test"])
    assert e.value.reply.startswith("554 5.6.0") and named in e.value.reply


def test_metadata_and_kinds_from_headers() -> None:
    raw = (b"From: Ops <ops@acme.test>\r\nTo: A <a@b.test>, c@b.test\r\nCc: c@b.test, d@b.test\r\n"
           b"X-Mailtrack-Source-Type: event_message\r\nX-Mailtrack-Source-Event: task.created\r\n"
           b"X-Mailtrack-Metadata-Task: T-9\r\nX-Mailtrack-Tracking: on\r\nSubject: x\r\n\r\nhi\n")
    new = to_new_email(raw, ["a@b.test", "C@b.test", "d@b.test", "e@b.test", "a@b.test"])
    assert [(r.address, r.kind) for r in new.recipients] == [
        ("a@b.test", "to"), ("C@b.test", "to"), ("d@b.test", "cc"), ("e@b.test", "bcc")]
    assert (new.source_type, new.source_event, new.tracking, new.metadata) == (
        "event_message", "task.created", True, {"Task": "T-9"})
    assert new.attachments[0][2].endswith(b"hi\r\n")  # bare LF normalised


@pytest.mark.parametrize("raw", [
    b"From: a@b.test\r\n\r\nhi\n.\nMAIL FROM:<x@y.test>\r\n",
    b"From: a@b.test\r\n\r\nhi\r\n.\nRCPT TO:<x@y.test>\r\n",
    b"From: a@b.test\r\n\r\nhi\n.\r\nDATA\r\n",
])
def test_smuggling_sequences_are_refused(raw: bytes) -> None:
    with pytest.raises(Refused) as e:
        to_new_email(raw, ["a@b.test"])
    assert e.value.reply.startswith("554 5.6.0") and "smuggling" in e.value.reply


def test_missing_from_is_refused() -> None:
    with pytest.raises(Refused) as e:
        to_new_email(b"To: a@b.test\r\nSubject: x\r\n\r\nhi\r\n", ["a@b.test"])
    assert e.value.reply.startswith("554 5.6.0 From")




def test_an_attached_email_is_left_alone(sqlite_store: Store) -> None:
    inner = EmailMessage()
    inner["From"], inner["Subject"] = "x@y.test", "forwarded"
    inner.set_content('<p><a href="https://inner.example/">inner</a></p>', subtype="html")
    outer = EmailMessage()
    outer["From"], outer["To"], outer["Subject"] = "ops@acme.test", f"success@{SIM}", "Fwd"
    outer.set_content("see attached")
    outer.add_attachment(inner)
    raw = outer.as_bytes(policy=CRLF)
    new = to_new_email(raw, [f"success@{SIM}"])
    assert new.html is None and new.text == "see attached\r\n"
    sent = store_and_compose(sqlite_store, raw, [f"success@{SIM}"])[f"success@{SIM}"]
    assert b"https://inner.example/" in sent and sent.endswith(raw[raw.index(b"\r\n\r\n"):])
