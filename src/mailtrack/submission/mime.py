"""Per-recipient copies of a message submitted over SMTP, keeping the client's MIME structure.

The submitted bytes are stored with the email as a hidden part of type ``SUBMITTED_MIME``;
``compose.build_template`` hands such an email to ``raw_template``, which makes a compose
``Template`` out of them. What changes, and nothing else:

    top-level headers   Bcc, Message-ID, Return-Path and every X-Mailtrack-* removed;
                        Message-ID and X-Mailtrack-ID added per recipient; Date added if missing
    first inline HTML   (tracked emails only) re-encoded as UTF-8 quoted-printable and
                        personalised per recipient (pixel, rewritten links), like an API email

Every other byte (other headers, alternatives, inline images, attachments, charsets, boundaries)
goes out as the client sent it. The parts are found by scanning boundaries in the bytes, so nothing
is re-serialised.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from email.message import Message
from email.parser import BytesHeaderParser
from email.policy import compat32
from email.utils import format_datetime

from ..template import HTML, MSGID, RID, Chunk, EmailSource, Template

SUBMITTED_MIME = "message/x-mailtrack-submitted"
SUBMITTED_FILENAME = "submitted.eml"
DROPPED = frozenset({"bcc", "message-id", "return-path"})
MAX_DEPTH = 30
_HTML_HEAD = b"Content-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n"


def submitted_raw(email: EmailSource) -> bytes | None:
    """The submitted message of an email that came in over SMTP, else None."""
    return next((data for _, ctype, data in email.attachments if ctype == SUBMITTED_MIME), None)


def split_entity(raw: bytes, start: int, end: int) -> tuple[int, int]:
    """(end of the header block including its last CRLF, start of the body) of the entity raw[start:end]."""
    if raw.startswith(b"\r\n", start):
        return start, start + 2
    blank = raw.find(b"\r\n\r\n", start, end)
    if blank == -1:
        return end, end
    return blank + 2, blank + 4


def fields(block: bytes) -> Iterator[tuple[str, bytes]]:
    """(lower-cased name, the whole field with its continuation lines) for each header field."""
    current: list[bytes] = []
    for line in block.splitlines(keepends=True):
        if line[:1] in (b" ", b"\t") and current:
            current.append(line)
            continue
        if current:
            yield _name(current[0]), b"".join(current)
        current = [line]
    if current:
        yield _name(current[0]), b"".join(current)


def _name(line: bytes) -> str:
    return line.partition(b":")[0].strip().decode("ascii", "replace").lower()


def _headers(raw: bytes, start: int, end: int) -> Message:
    return BytesHeaderParser(policy=compat32).parsebytes(raw[start:end])


def html_span(raw: bytes, start: int = 0, end: int | None = None, depth: int = 0) -> tuple[int, int, int, int] | None:
    """(headers start, headers end, body start, body end) of the first inline text/html leaf, or None.

    Walks the parts in document order, as ``email.message.Message.walk`` does, so it finds the same
    part whose HTML the email stored (and whose links were numbered) at submission.
    """
    end = len(raw) if end is None else end
    head_end, body_start = split_entity(raw, start, end)
    head = _headers(raw, start, head_end)
    ctype = head.get_content_type()
    if ctype == "text/html":
        if (head.get("Content-Disposition") or "").strip().lower().startswith("attachment"):
            return None
        return start, head_end, body_start, end
    boundary = head.get_boundary() if head.get_content_maintype() == "multipart" else None
    if not boundary or depth >= MAX_DEPTH:
        return None
    delim = re.compile(rb"(?m)^--" + re.escape(boundary.encode("ascii", "replace")) + rb"(--)?[ \t]*\r?$")
    part_start: int | None = None
    for m in delim.finditer(raw, body_start, end):
        if part_start is not None:
            # the part's end keeps the CRLF before the delimiter: the personalised HTML ends with one
            found = html_span(raw, part_start, m.start(), depth + 1)
            if found is not None:
                return found
        if m.group(1):
            return None
        part_start = min(m.end() + 1, end)  # past the delimiter line's LF (bare LFs are refused earlier)
    return None


def raw_template(email: EmailSource, raw: bytes, date: float | None = None) -> Template:
    """The compose template of a submitted message (see the module docstring)."""

    head_end, body_start = split_entity(raw, 0, len(raw))
    span = html_span(raw) if email.tracking and email.html is not None else None
    top_is_html = span is not None and span[0] == 0
    head: list[bytes] = []
    has_date = False
    for name, field in fields(raw[:head_end]):
        if name in DROPPED or name.startswith("x-mailtrack-"):
            continue
        if top_is_html and name in ("content-type", "content-transfer-encoding"):
            continue
        has_date = has_date or name == "date"
        head.append(field if field.endswith(b"\r\n") else field + b"\r\n")
    if not has_date:
        when = datetime.fromtimestamp(date if date is not None else time.time(), UTC)
        head.append(f"Date: {format_datetime(when)}\r\n".encode())
    if top_is_html:
        head.append(_HTML_HEAD)
    chunks: list[Chunk] = [b"".join(head), MSGID, RID, b"\r\n"]
    if span is None:
        chunks.append(raw[body_start:])
    elif top_is_html:
        chunks.append(HTML)
    else:
        h_start, h_end, _, b_end = span
        part_head = b"".join(f for n, f in fields(raw[h_start:h_end])
                             if n not in ("content-type", "content-transfer-encoding"))
        chunks += [raw[body_start:h_start], part_head, _HTML_HEAD, b"\r\n", HTML, raw[b_end:]]
    return Template(chunks, email)
