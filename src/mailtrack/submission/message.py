"""A submitted message → store.NewEmail: recipient kinds from the headers, metadata from X-Mailtrack-* headers.

    envelope recipient in To   → to
    envelope recipient in Cc   → cc       (To wins when an address is in both)
    envelope recipient in none → bcc      (the Bcc header itself is dropped at compose)

The message itself is kept whole (as a hidden ``SUBMITTED_MIME`` part, see ``mime.py``); the text and
HTML bodies are copied out only for the views and for the click-tracking link table.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from email.errors import HeaderParseError
from email.header import decode_header, make_header
from email.message import Message
from email.parser import BytesHeaderParser, BytesParser
from email.policy import compat32
from email.utils import getaddresses

from ..domain.addresses import AddressError, check_header_value, format_address, parse_address
from ..store.submit import NewEmail, NewRecipient
from .mime import SUBMITTED_FILENAME, SUBMITTED_MIME

SOURCE_TYPES = ("task_sheet", "invoice", "purchase_order", "event_message")
MAX_METADATA = 50
_BARE = re.compile(rb"\r?\n|\r")
# a '.' line next to a bare LF or CR: what SMTP smuggling uses to end DATA early at a laxer server
_SMUGGLE = re.compile(rb"(?:(?<!\r)\n|\r(?!\n))\.(?:\r?\n|\r)|\r\n\.(?:\n|\r(?!\n))")
_FOLD = re.compile(r"\r?\n(?=[ \t])")
_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
# one plain address, bracketed or not: what most applications write, read without the RFC 5322 parser
_PLAIN = re.compile(rf"[ \t]*(?:<({_ATOM}(?:\.{_ATOM})*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*)>"
                    rf"|({_ATOM}(?:\.{_ATOM})*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*))[ \t]*")
_HEADER_NAME = re.compile(r"[\041-\071\073-\176]+:")  # the feed parser's header line: printable name, colon
_METADATA_NAME = re.compile(r"[A-Za-z0-9_.-]{1,100}")
_KNOWN = ("x-mailtrack-source-type", "x-mailtrack-source-reference", "x-mailtrack-source-event",
          "x-mailtrack-client", "x-mailtrack-tracking")
_ON = {"on": True, "true": True, "yes": True, "1": True, "off": False, "false": False, "no": False, "0": False}


class Refused(Exception):
    """The message cannot be accepted; ``reply`` is the SMTP reply that says why."""

    def __init__(self, reply: str) -> None:
        super().__init__(reply)
        self.reply = reply


def _bad(header: str, why: str) -> Refused:
    return Refused(f"554 5.6.0 {header}: {why}")


def _decoded(value: str) -> str:
    """A raw header value unfolded, with RFC 2047 encoded-words decoded (left as they are when broken)."""
    value = _FOLD.sub("", value).strip()
    if "=?" not in value:
        return value
    try:
        return str(make_header(decode_header(value)))
    except (HeaderParseError, LookupError, UnicodeError, ValueError):
        return value


class _Headers:
    """The message's headers by lower-case name, read once: ``get_all`` walks (and lower-cases) every header
    for each name asked for, a dozen times per message here."""

    __slots__ = ("by_name",)

    def __init__(self, msg: Message) -> None:
        self.by_name: dict[str, list[tuple[str, object]]] = {}
        fetch = msg.policy.header_fetch_parse
        for name, value in msg._headers:  # type: ignore[attr-defined]  # what get_all reads
            self.by_name.setdefault(name.lower(), []).append((name, fetch(name, value)))

    def get_all(self, name: str) -> list[object]:
        return [v for _, v in self.by_name.get(name.lower(), ())]


def _one(msg: _Headers, name: str) -> str | None:
    values = msg.get_all(name)
    if len(values) > 1:
        raise _bad(name, "given more than once")
    if not values:
        return None
    value = _decoded(str(values[0]))
    try:
        check_header_value(value, name)
    except AddressError as e:
        raise _bad(name, str(e)) from e
    return value


def _addresses(msg: _Headers, name: str) -> list[tuple[str, str]]:
    """(display name, normalised address) for each address in the header(s) ``name``."""
    out: list[tuple[str, str]] = []
    values = [_FOLD.sub("", str(v)) for v in msg.get_all(name)]
    if not values:  # getaddresses parses even nothing
        return out
    plain = _PLAIN.fullmatch(values[0]) if len(values) == 1 else None
    found = [("", plain.group(1) or plain.group(2))] if plain is not None else getaddresses(values)
    for dn, addr in found:
        if not addr:
            continue
        try:
            out.append(parse_address(format_address(_decoded(dn), addr), name))
        except AddressError as e:
            raise _bad(name, str(e)) from e
    return out


def _metadata(msg: _Headers) -> dict[str, object]:
    meta: dict[str, str] = {}
    out: dict[str, object] = {"metadata": meta}
    for name in [k for k in msg.by_name if k.startswith("x-mailtrack-")]:
        shown = msg.by_name[name][0][0]  # as first written
        value = _one(msg, shown) or ""
        if name.startswith("x-mailtrack-metadata-"):
            key = shown[len("x-mailtrack-metadata-"):]
            if not _METADATA_NAME.fullmatch(key) or len(value) > 1000:
                raise _bad(shown, "metadata names are letters, digits, '_', '.', '-' (≤ 100); values ≤ 1000")
            meta[key] = value
        elif name == "x-mailtrack-source-type":
            if value not in SOURCE_TYPES:
                raise _bad(shown, f"{value!r} is not one of {', '.join(SOURCE_TYPES)}")
            out["source_type"] = value
        elif name == "x-mailtrack-source-reference":
            if not value or len(value) > 200:
                raise _bad(shown, "give 1 to 200 characters")
            out["source_reference"] = value
        elif name == "x-mailtrack-source-event":
            if not value or len(value) > 64:
                raise _bad(shown, "give 1 to 64 characters")
            out["source_event"] = value
        elif name == "x-mailtrack-client":
            if not value or len(value) > 200:
                raise _bad(shown, "give the client's id or external reference")
            out["client"] = value
        elif name == "x-mailtrack-tracking":
            if value.lower() not in _ON:
                raise _bad(shown, f"{value!r} is not on or off")
            out["tracking"] = _ON[value.lower()]
        else:
            known = ", ".join(k.title() for k in _KNOWN)
            raise _bad(shown, f"unknown mailtrack header (known: {known}, X-Mailtrack-Metadata-NAME)")
    if len(meta) > MAX_METADATA:
        raise _bad("X-Mailtrack-Metadata-*", f"at most {MAX_METADATA} metadata headers")
    return out


def _leaves(part: Message) -> Iterator[Message]:
    """Leaf parts in document order, not descending into attached messages (their bodies are not ours)."""
    if part.get_content_maintype() == "multipart" and isinstance(part.get_payload(), list):
        for sub in part.get_payload():
            if isinstance(sub, Message):
                yield from _leaves(sub)
    elif not part.is_multipart():
        yield part


def _bodies(msg: Message) -> tuple[str | None, str | None]:
    """The first inline text/plain and text/html parts (in the order ``mime.html_span`` walks them)."""
    # an attached message/rfc822 is a leaf here, as it is for html_span
    text = html = None
    for part in _leaves(msg):
        if part.get_content_disposition() == "attachment":
            continue
        ctype = part.get_content_type()
        if ctype not in ("text/plain", "text/html") or (text if ctype == "text/plain" else html) is not None:
            continue
        payload = part.get_payload(decode=True)
        data = payload if isinstance(payload, bytes) else b""
        try:
            content = data.decode(part.get_content_charset() or "us-ascii")
        except (LookupError, UnicodeError):  # a wrong or unknown charset: show what can be shown
            content = data.decode("utf-8", "replace")
        if ctype == "text/plain":
            text = content
        else:
            html = content
    return text, html


def _header_lines(block: str) -> list[tuple[str, str]] | None:
    """(name, value) of each header as compat32's feed parser stores them, or None to let it parse the block.

    Only for the plain case: CRLF-ended lines, each a ``name:`` line or a continuation of one. Anything else (a
    'From ' line, a line without a name, a continuation first) is left to the parser and its defects.
    """
    out: list[tuple[str, str]] = []
    for line in block.split("\r\n"):
        if line[:1] in (" ", "\t"):
            if not out:
                return None
            name, value = out[-1]
            out[-1] = (name, value + "\r\n" + line)  # compat32 keeps the folds
        else:
            m = _HEADER_NAME.match(line)
            if m is None:
                return None
            out.append((line[:m.end() - 1], line[m.end():].lstrip(" \t")))
    return [(name, value.rstrip("\r\n")) for name, value in out]


def _parse(raw: bytes) -> Message:
    """The message as compat32 parses it, parsing only the header block when the body is a single part."""
    # The feed parser walks the body line by line; a single-part body is its payload unchanged, so it is set
    # directly. Multipart and message/* bodies, and header blocks the parser finds defects in, go the full way.
    # A plain header block (every line CRLF-ended here) is split without the feed parser (_header_lines).
    blank = raw.find(b"\r\n\r\n")
    if blank != -1:
        lines = _header_lines(raw[:blank].decode("ascii", "surrogateescape"))
        if lines is not None:
            msg = Message(policy=compat32)
            msg._headers = lines  # type: ignore[attr-defined]  # what the feed parser's set_raw() fills
        else:
            msg = BytesHeaderParser(policy=compat32).parsebytes(raw[:blank + 2])
        if not msg.defects and not msg.get_payload() and msg.get_content_maintype() not in ("multipart", "message"):
            msg.set_payload(raw[blank + 4:].decode("ascii", "surrogateescape"))  # as BytesParser decodes it
            return msg
    return BytesParser(policy=compat32).parsebytes(raw)  # compat32: several times cheaper than policy.default


def to_new_email(raw: bytes, rcpt_tos: Sequence[str]) -> NewEmail:
    """Build the API's NewEmail from a submitted message; raises Refused with the reply naming the problem."""
    crlf = raw.count(b"\r\n")
    if raw.count(b"\n") != crlf or raw.count(b"\r") != crlf:  # the regexes cost ~1 ms per 4 KB: only when needed
        if _SMUGGLE.search(raw):
            raise Refused("554 5.6.0 a '.' line next to a bare LF or CR (SMTP smuggling) is refused; "
                          "end lines with CRLF")
        raw = _BARE.sub(b"\r\n", raw)  # other bare LFs (legacy clients) become CRLF, as Postfix normalises them
    msg = _parse(raw)
    headers = _Headers(msg)
    senders = _addresses(headers, "From")
    if len(senders) != 1:
        raise _bad("From", "the message needs exactly one From address")
    for name in ("Subject", "Reply-To", "To", "Cc", "Date", "Message-ID"):
        _one(headers, name)
    visible = {"to": _addresses(headers, "To"), "cc": _addresses(headers, "Cc")}
    kind_of: dict[str, tuple[str, str]] = {}  # address → (kind, display name)
    for kind in ("cc", "to"):  # To wins over Cc
        kind_of.update({addr.lower(): (kind, name) for name, addr in visible[kind]})
    recipients, seen = [], set()
    for rcpt in rcpt_tos:
        if rcpt.lower() in seen:
            continue
        seen.add(rcpt.lower())
        kind, name = kind_of.get(rcpt.lower(), ("bcc", ""))
        recipients.append(NewRecipient(name, rcpt, kind))
    reply_to = _addresses(headers, "Reply-To")
    text, html = _bodies(msg)
    meta = _metadata(headers)
    return NewEmail(
        from_addr=format_address(*senders[0]), recipients=recipients,
        subject=" ".join((_one(headers, "Subject") or "").split()),
        text=text, html=html, reply_to=format_address(*reply_to[0]) if reply_to else None,
        to_header=", ".join(format_address(*a) for a in visible["to"]),
        cc_header=", ".join(format_address(*a) for a in visible["cc"]),
        attachments=[(SUBMITTED_FILENAME, SUBMITTED_MIME, raw)], size=len(raw),
        **meta,  # type: ignore[arg-type]
    )
