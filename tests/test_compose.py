"""Per-recipient MIME composition: headers, encodings, structure, the template cache, tracking."""

from __future__ import annotations

import email
import random
import time
from email import policy
from email.message import EmailMessage
from email.utils import getaddresses

from mailtrack import tokens
from mailtrack.compose import Composer, EmailSource, build_template, message_id

SECRET = "s3cret"
BOUNCE = "bounces.example.test"


def composer() -> Composer:
    return Composer(secret=SECRET, bounce_domain=BOUNCE, public_url="https://t.example.test/")


def parse(raw: bytes) -> EmailMessage:
    msg = email.message_from_bytes(raw, policy=policy.default)
    assert isinstance(msg, EmailMessage)
    return msg


def text_of(part: EmailMessage | None) -> str:
    assert part is not None
    return str(part.get_content()).replace("\r\n", "\n")


def check_wire(raw: bytes) -> None:
    assert raw.isascii()
    assert b"\n" not in raw.replace(b"\r\n", b"")  # CRLF only
    assert max(len(line) for line in raw.split(b"\r\n")) <= 998


def src(**over: object) -> EmailSource:
    base: dict[str, object] = {
        "id": "e0001", "from_addr": "Acme Ops <ops@acme.test>", "subject": "Task sheet T-42",
        "to_header": "Alice <alice@x.test>, bob@x.test", "cc_header": "carol@x.test", "text": "Hello\nthere",
    }
    base.update(over)
    return EmailSource(**base)  # type: ignore[arg-type]


def test_headers_same_for_every_recipient_but_ids() -> None:
    c = composer()
    e = src(reply_to="desk@acme.test", headers={"X-Entity-Ref-ID": "T-42", "List-Unsubscribe": "<mailto:u@acme.test>"})
    one = c.compose(e, "r1", "alice@x.test")
    two = c.compose(e, "r2", "secret-bcc@y.test")
    for out, rid in ((one, "r1"), (two, "r2")):
        check_wire(out.data)
        m = parse(out.data)
        assert m["From"] == "Acme Ops <ops@acme.test>"
        assert m["To"] == "Alice <alice@x.test>, bob@x.test" and m["Cc"] == "carol@x.test"
        assert m["Reply-To"] == "desk@acme.test" and m["Subject"] == "Task sheet T-42"
        assert m["X-Entity-Ref-ID"] == "T-42" and m["List-Unsubscribe"] == "<mailto:u@acme.test>"
        assert m["MIME-Version"] == "1.0" and m["Date"] is not None
        assert m["Message-ID"] == message_id(rid, "e0001", BOUNCE, SECRET) == tokens.message_id(SECRET, rid, "e0001",
                                                                                              BOUNCE)
        assert tokens.parse_message_id(SECRET, m["Message-ID"], BOUNCE) == (rid, "e0001")
        assert tokens.recipient_from_mailtrack_id(SECRET, m["X-Mailtrack-ID"]) == rid
        assert "Bcc" not in m
        assert out.mail_from == tokens.verp_address(SECRET, rid, BOUNCE)
        assert tokens.recipient_from_verp(SECRET, out.mail_from) == rid
    assert b"secret-bcc" not in two.data
    assert two.rcpt_to == "secret-bcc@y.test"
    # everything but the two per-recipient headers is byte-identical
    strip = [line for line in one.data.split(b"\r\n") if b"r1" not in line]
    assert strip == [line for line in two.data.split(b"\r\n") if b"r2" not in line]


def test_plain_ascii_text_is_7bit_and_non_ascii_is_quoted_printable() -> None:
    c = composer()
    m = parse(c.compose(src(text="Hello\r\nworld"), "r1", "a@x.test").data)
    assert m.get_content_type() == "text/plain" and m["Content-Transfer-Encoding"] == "7bit"
    assert text_of(m) == "Hello\nworld\n"
    raw = c.compose(src(id="e2", text="Grüße, Straße\n" + "é" * 3000), "r1", "a@x.test").data
    check_wire(raw)
    m = parse(raw)
    assert m["Content-Transfer-Encoding"] == "quoted-printable"
    assert text_of(m) == "Grüße, Straße\n" + "é" * 3000 + "\n"


def test_long_ascii_line_is_wrapped_by_quoted_printable() -> None:
    text = "x" * 5000 + "\nend"
    raw = composer().compose(src(text=text), "r1", "a@x.test").data
    check_wire(raw)
    m = parse(raw)
    assert m["Content-Transfer-Encoding"] == "quoted-printable"
    assert text_of(m).rstrip("\n") == text


def test_non_ascii_subject_and_header_are_rfc2047() -> None:
    subject = "Rechnung Nr. 42 – Grüße aus Köln " * 4
    raw = composer().compose(src(subject=subject, headers={"X-Note": "naïve ☃"}), "r1", "a@x.test").data
    check_wire(raw)
    assert b"=?utf-8?" in raw
    m = parse(raw)
    assert m["Subject"] == subject and m["X-Note"] == "naïve ☃"


def test_long_to_header_is_folded_and_parses_back() -> None:
    addrs = [f"person{i}@example{i % 7}.test" for i in range(300)]
    raw = composer().compose(src(to_header=", ".join(addrs)), "r1", "a@x.test").data
    check_wire(raw)
    head = raw.split(b"\r\n\r\n", 1)[0]
    assert max(len(line) for line in head.split(b"\r\n")) <= 78
    assert [a for _, a in getaddresses([str(parse(raw)["To"])])] == addrs


def test_text_html_and_attachments_structure() -> None:
    pdf = bytes(random.Random(1).randrange(256) for _ in range(5000))
    e = src(html="<p>Hello <b>there</b></p>", attachments=[("invoice 42.pdf", "application/pdf", pdf),
                                                          ("notes.txt", "text/plain", b"a\nb\n")])
    raw = composer().compose(e, "r1", "a@x.test").data
    check_wire(raw)
    m = parse(raw)
    assert m.get_content_type() == "multipart/mixed"
    body, *atts = list(m.iter_parts())
    assert body.get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in body.iter_parts()] == ["text/plain", "text/html"]
    assert [a.get_filename() for a in atts] == ["invoice 42.pdf", "notes.txt"]
    assert atts[0].get_content() == pdf
    assert atts[1].get_payload(decode=True) == b"a\nb\n"


def test_html_only() -> None:
    m = parse(composer().compose(src(text=None, html="<p>hi</p>"), "r1", "a@x.test").data)
    assert m.get_content_type() == "text/html" and text_of(m).strip() == "<p>hi</p>"


def test_tracking_personalises_html_per_recipient_only_when_tracked() -> None:
    html = '<html><body><a href="https://acme.test/i/42">Invoice</a></body></html>'
    c = composer()
    tracked = src(html=html, tracking=True)
    h1 = parse(c.compose(tracked, "r1", "a@x.test").data).get_body(("html",))
    h2 = parse(c.compose(tracked, "r2", "b@x.test").data).get_body(("html",))
    c1, c2 = text_of(h1), text_of(h2)
    assert f"https://t.example.test/o/{tokens.open_token(SECRET, 'r1')}.gif" in c1
    assert f"https://t.example.test/c/{tokens.click_url_token(SECRET, 'r2', 0, 'https://acme.test/i/42')}" in c2
    assert "https://acme.test/i/42" not in c1
    plain = parse(c.compose(src(id="e9", html=html, tracking=False), "r1", "a@x.test").data).get_body(("html",))
    assert text_of(plain).strip() == html


def test_template_is_cached_per_email_and_rendering_is_cheap() -> None:
    c = composer()
    e = src(html="<p>" + "word " * 800 + "</p>", text="word " * 800)
    assert c.template(e) is c.template(e)
    assert c.cached("e0001") and not c.cached("other")
    n = 2000
    t0 = time.perf_counter()
    for i in range(n):
        c.compose(e, f"r{i}", "a@x.test")
    per = (time.perf_counter() - t0) / n
    t0 = time.perf_counter()
    for _ in range(50):
        build_template(e)
    build = (time.perf_counter() - t0) / 50
    assert per < build  # rendering from the cache beats building, whatever the machine's speed


def test_unbreakable_long_header_value_stays_under_998() -> None:
    value = "y" * 998  # the longest value the API accepts, with no space to fold at
    raw = composer().compose(src(headers={"X-Very-Long-Reference": value}), "r1", "a@x.test").data
    check_wire(raw)
    assert parse(raw)["X-Very-Long-Reference"] == value
