"""The header block split without the feed parser (message._header_lines) reads as compat32's BytesParser."""

from __future__ import annotations

from email.parser import BytesParser
from email.policy import compat32

from hypothesis import given, settings
from hypothesis import strategies as st

from mailtrack.submission import message
from mailtrack.submission.message import _parse

NAMES = ["Subject", "To", "X-Mailtrack-Metadata-a", "from", "Content-Type", "Bad Name", "", "From ", "Ünï"]
VALUES = ["", " ", "plain", "  leading", "trailing  ", "a:b: c", "=?utf-8?q?caf=C3=A9?=", "\xe9t\xe9", "\t",
          "multipart/mixed; boundary=x", "message/rfc822"]


def line() -> st.SearchStrategy[str]:
    header = st.builds(lambda n, sep, v: f"{n}{sep}{v}", st.sampled_from(NAMES), st.sampled_from([":", ": ", ":\t"]),
                       st.sampled_from(VALUES))
    fold = st.builds(lambda ws, v: ws + v, st.sampled_from([" ", "\t", "  "]), st.sampled_from(VALUES))
    odd = st.sampled_from(["From sender@x Thu Dec  3 06:22:07 2026", "no colon here", ":empty name", " "])
    return st.one_of(header, header, fold, odd)


def same(raw: bytes) -> None:
    ours, theirs = _parse(raw), BytesParser(policy=compat32).parsebytes(raw)
    assert ours._headers == theirs._headers  # type: ignore[attr-defined]
    assert ours.get_payload() == theirs.get_payload() or ours.is_multipart()
    assert [type(d) for d in ours.defects] == [type(d) for d in theirs.defects]
    assert ours.get_unixfrom() == theirs.get_unixfrom()


@settings(max_examples=400, deadline=None)
@given(st.lists(line(), min_size=1, max_size=8), st.sampled_from(["hello\r\n", "", ".\r\nx\r\n"]))
def test_any_header_block_reads_as_the_feed_parser_reads_it(lines: list[str], body: str) -> None:
    raw = ("\r\n".join(lines) + "\r\n\r\n" + body).encode("utf-8", "surrogateescape")
    same(raw)


def test_the_plain_block_skips_the_feed_parser_and_the_odd_one_does_not() -> None:
    plain = "From: a@b.test\r\nSubject: one\r\n two\r\n\tthree\r\nTo:x@y.test\r\n"
    assert message._header_lines(plain.removesuffix("\r\n")) == [
        ("From", "a@b.test"), ("Subject", "one\r\n two\r\n\tthree"), ("To", "x@y.test")]
    for odd in ("From a@b Thu Dec  3 2026", " starts folded", "No colon", ":x", "Bad Name: x"):
        assert message._header_lines(odd + "\r\nSubject: s") is None
        same(f"{odd}\r\nSubject: s\r\n\r\nbody\r\n".encode())
