"""One MIME message per recipient, built cheaply from a per-email byte template.

Everything that is the same for every recipient of an email (visible To/Cc, Subject, bodies,
attachments, the MIME structure and its boundaries) is encoded once into a ``Template``: a list
of byte chunks with a few named slots. ``Template.render`` fills the slots for one recipient
(Message-ID, X-Mailtrack-ID and, when the email is tracked, the personalised HTML part), so a
recipient costs a join, not a MIME serialisation.

Output is 7-bit clean with CRLF line ends and no line over 998 octets: bodies are sent as 7bit
only when they already are, else quoted-printable; attachments are base64; non-ASCII header
values are RFC 2047 encoded. Bcc recipients never appear in any header.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.header import Header
from email.utils import format_datetime
from typing import Any

from . import tokens
from .inject import TrackedHtml, split_html

log = logging.getLogger(__name__)

CRLF = b"\r\n"
# Slot names inside a template.
MSGID, RID, HTML, UNSUB = "msgid", "rid", "html", "unsub"
Chunk = bytes | str


@dataclass(frozen=True)
class EmailSource:
    """The stored email, as compose needs it."""

    id: str
    from_addr: str
    subject: str
    to_header: str = ""
    cc_header: str = ""
    reply_to: str | None = None
    text: str | None = None
    html: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    tracking: bool = False
    attachments: Sequence[tuple[str, str, bytes]] = ()
    unsubscribe: bool = False  # List-Unsubscribe + List-Unsubscribe-Post (RFC 2369, RFC 8058)
    feedback_id: str | None = None  # "SOURCE_TYPE:ACCOUNT:mailtrack", no personal data
    account_id: int | None = None  # whose sending domains may sign it

    @classmethod
    def from_row(cls, row: Mapping[str, Any], attachments: Sequence[tuple[str, str, bytes]] = (),
                 unsubscribe_events: bool = True) -> EmailSource:
        """``unsubscribe_events``: whether event messages carry List-Unsubscribe unless the email says."""
        unsub = row.get("unsubscribe")
        if unsub is None:  # invoices, task sheets and purchase orders are transactional: never by default
            unsub = unsubscribe_events and row.get("source_type") == "event_message"
        return cls(
            id=row["id"], from_addr=row["from_addr"], subject=row["subject"], to_header=row["to_header"] or "",
            cc_header=row["cc_header"] or "", reply_to=row["reply_to"], text=row["text_body"],
            html=row["html_body"], headers=json.loads(row["headers_json"] or "{}"), tracking=bool(row["tracking"]),
            attachments=tuple(attachments), unsubscribe=bool(unsub),
            feedback_id=feedback_id(row.get("account_id"), row.get("source_type")), account_id=row.get("account_id"),
        )


def feedback_id(account_id: object, source_type: object) -> str | None:
    """Feedback-ID (Gmail's feedback loop): campaign-ish fields only, never a person."""
    if account_id is None:
        return None
    kind = "".join(ch for ch in str(source_type or "email") if ch.isalnum() or ch in "-_") or "email"
    return f"{kind}:{account_id}:mailtrack"


@dataclass(frozen=True)
class Outgoing:
    """One recipient's message, ready for SMTP."""

    recipient_id: str
    mail_from: str
    rcpt_to: str
    data: bytes


# --- encoding helpers ------------------------------------------------------------------------

def _fold(name: str, value: str) -> bytes:
    """``Name: value`` CRLF, folded at spaces (after commas when possible) to stay under 78 columns."""
    if not value.isascii():
        # Header() emits RFC 2047 encoded-words already folded with "\n "
        enc = Header(value, "utf-8", header_name=name).encode(linesep="\r\n")
        return f"{name}: {enc}".encode("ascii") + CRLF
    line = f"{name}: {value}"
    if len(line) <= 78:
        return line.encode("ascii") + CRLF
    out: list[str] = []
    cur = f"{name}:"
    for word in value.split(" "):
        if len(cur) + 1 + len(word) > 78 and cur.strip() and not cur.endswith(":"):
            out.append(cur)
            cur = " " + word
        else:
            cur = f"{cur} {word}"
    out.append(cur)
    if max(map(len, out)) > 998:
        # a word too long to fold at spaces: encoded-words can be split anywhere (RFC 2047)
        enc = Header(value, "utf-8", header_name=name).encode(linesep="\r\n")
        return f"{name}: {enc}".encode("ascii") + CRLF
    return "\r\n".join(out).encode("ascii") + CRLF


def _body_part(text: str, subtype: str, *, qp: bool = False) -> tuple[bytes, bytes]:
    """(part headers, encoded body) for a text part: 7bit when already safe, else quoted-printable."""
    lf = text.replace("\r\n", "\n").replace("\r", "\n")
    if not qp and lf.isascii() and "\x00" not in lf and max(map(len, lf.split("\n"))) <= 998:
        cte, body = "7bit", lf.encode("ascii")
    else:
        cte = "quoted-printable"
        body = binascii.b2a_qp(lf.encode("utf-8"), istext=True)
    body = body.replace(b"\n", CRLF)
    if not body.endswith(CRLF):
        body += CRLF
    head = f"Content-Type: text/{subtype}; charset=utf-8\r\nContent-Transfer-Encoding: {cte}\r\n".encode()
    return head, body


def _attachment_part(filename: str, content_type: str, data: bytes) -> tuple[bytes, bytes]:
    fn = filename if filename.isascii() else Header(filename, "utf-8").encode()
    fn = fn.replace("\\", "\\\\").replace('"', '\\"')
    head = (f'Content-Type: {content_type}; name="{fn}"\r\nContent-Transfer-Encoding: base64\r\n'
            f'Content-Disposition: attachment; filename="{fn}"\r\n').encode()
    return head, base64.encodebytes(data).replace(b"\n", CRLF)


def _new_boundary() -> str:
    # "=_" can never occur in quoted-printable or base64 output, so the boundary cannot collide
    return f"=_mt_{secrets.token_hex(12)}"


# --- templates ---------------------------------------------------------------------------------

class Template:
    """The byte template of one email; ``render`` makes one recipient's message."""

    def __init__(self, chunks: list[Chunk], email: EmailSource) -> None:
        self.chunks = chunks
        self.email = email
        self._qp: dict[tuple[str, tuple[str, ...]], _QpTemplate] = {}

    def render(self, recipient_id: str, *, public_url: str, secret: str, bounce_domain: str,
               exclude_domains: Sequence[str] = ()) -> bytes:
        slots: dict[str, bytes] = {
            MSGID: f"Message-ID: {message_id(recipient_id, self.email.id, bounce_domain, secret)}\r\n".encode(),
            RID: f"X-Mailtrack-ID: {tokens.mailtrack_id(secret, recipient_id)}\r\n".encode(),
        }
        if self.email.html is not None and self.email.tracking:
            slots[HTML] = self._tracked(public_url, tuple(exclude_domains)).render(secret, recipient_id)
        if UNSUB in self.chunks:
            slots[UNSUB] = _unsubscribe_headers(recipient_id, public_url, secret, bounce_domain)
        return b"".join(c if isinstance(c, bytes) else slots[c] for c in self.chunks)

    def _tracked(self, public_url: str, exclude_domains: tuple[str, ...]) -> _QpTemplate:
        key = (public_url, exclude_domains)
        qp = self._qp.get(key)
        if qp is None:
            html = (self.email.html or "").replace("\r\n", "\n").replace("\r", "\n")
            qp = self._qp[key] = _QpTemplate(split_html(html, public_url=public_url, exclude_domains=exclude_domains))
        return qp


class _QpTemplate:
    """A tracked HTML part encoded once as quoted-printable, with the recipient's tokens as slots.

    Each static piece is encoded on its own and ends in a soft line break, and each token (only
    ``[0-9a-f-]``, under 76 octets) sits alone on its line, so no per-recipient re-encoding is needed
    and the decoded part is exactly ``personalize_html``'s output.
    """

    def __init__(self, tracked: TrackedHtml) -> None:
        self.tracked = tracked
        *middle, last = tracked.parts
        self.pieces = [_qp_soft(p) for p in middle]
        tail = binascii.b2a_qp(last.encode("utf-8"), istext=True).replace(b"\n", CRLF)
        self.tail = tail if tail.endswith(CRLF) else tail + CRLF

    def render(self, secret: str, recipient_id: str) -> bytes:
        out: list[bytes] = []
        for piece, tok in zip(self.pieces, self.tracked.tokens(secret, recipient_id), strict=True):
            out += (piece, tok.encode("ascii"), b"=\r\n")
        out.append(self.tail)
        return b"".join(out)


def _qp_soft(text: str) -> bytes:
    """``text`` quoted-printable, ending in a soft line break (no octet of its own)."""
    if not text:
        return b""
    enc = binascii.b2a_qp(text.encode("utf-8"), istext=True).replace(b"\n", CRLF)
    head, _, last = enc.rpartition(CRLF)
    if len(last) > 75:  # room for the "=": cut before the last 8 octets, never inside an =XX escape
        cut = len(last) - 8
        while b"=" in last[cut - 2:cut]:
            cut -= 1
        last = last[:cut] + b"=\r\n" + last[cut:]
    return (head + CRLF if head or enc.startswith(CRLF) else b"") + last + b"=\r\n"


def _unsubscribe_headers(recipient_id: str, public_url: str, secret: str, bounce_domain: str) -> bytes:
    """RFC 2369 / RFC 8058 headers: an HTTPS one-click URL and a mailto, both naming the recipient."""
    tok = tokens.unsubscribe_token(secret, recipient_id)
    return (f"List-Unsubscribe: <{public_url.rstrip('/')}/u/{tok}>,\r\n <mailto:unsubscribe+{tok}@{bounce_domain}>\r\n"
            "List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n").encode()


def message_id(recipient_id: str, email_id: str, bounce_domain: str, secret: str) -> str:
    """The Message-ID of one recipient's message; inbound can map it back to the recipient (it carries a MAC)."""
    return tokens.message_id(secret, recipient_id, email_id, bounce_domain)


def build_template(email: EmailSource, *, date: float | None = None) -> Template:
    """Encode everything the recipients of ``email`` share."""
    from .submission.mime import raw_template, submitted_raw

    raw = submitted_raw(email)
    if raw is not None:  # submitted over SMTP: the client's own MIME structure, see submission/mime.py
        return raw_template(email, raw, date)
    head: list[Chunk] = [
        _fold("From", email.from_addr),
        f"Date: {format_datetime(datetime.fromtimestamp(date if date is not None else time.time(), UTC))}\r\n"
        .encode(),
        MSGID,
    ]
    if email.to_header:
        head.append(_fold("To", email.to_header))
    if email.cc_header:
        head.append(_fold("Cc", email.cc_header))
    if email.reply_to:
        head.append(_fold("Reply-To", email.reply_to))
    head.append(_fold("Subject", email.subject))
    for name, value in email.headers.items():
        head.append(_fold(name, value))
    if email.unsubscribe:
        head.append(UNSUB)
    if email.feedback_id:
        head.append(_fold("Feedback-ID", email.feedback_id))
    head += [RID, b"MIME-Version: 1.0\r\n"]

    alternatives: list[tuple[bytes, list[Chunk]]] = []
    if email.text is not None:
        h, b = _body_part(email.text, "plain")
        alternatives.append((h, [b]))
    if email.html is not None:
        # a tracked part differs per recipient, so its encoding must not depend on its content
        h, b = _body_part(email.html, "html", qp=email.tracking)
        alternatives.append((h, [HTML if email.tracking else b]))
    if not alternatives:
        h, b = _body_part("", "plain")
        alternatives.append((h, [b]))

    body_head, body = _multipart("alternative", alternatives) if len(alternatives) > 1 else alternatives[0]
    if email.attachments:
        parts = [(body_head, body)]
        for a in email.attachments:
            h, b = _attachment_part(*a)
            parts.append((h, [b]))
        body_head, body = _multipart("mixed", parts)
    return Template([*head, body_head, CRLF, *body], email)


def _multipart(subtype: str, parts: list[tuple[bytes, list[Chunk]]]) -> tuple[bytes, list[Chunk]]:
    boundary = _new_boundary()
    head = f'Content-Type: multipart/{subtype}; boundary="{boundary}"\r\n'.encode()
    body: list[Chunk] = []
    delim = f"--{boundary}\r\n".encode()
    for part_head, part_body in parts:
        body.append(delim)
        body += [part_head, CRLF, *part_body]
    body.append(f"--{boundary}--\r\n".encode())
    return head, body


class Composer:
    """Builds per-recipient messages, keeping templates of recent emails (thread-safe)."""

    def __init__(self, *, secret: str, bounce_domain: str, public_url: str, cache_size: int = 2000,
                 exclude_domains: Sequence[str] = ()) -> None:
        self.secret = secret
        self.exclude_domains = tuple(exclude_domains)
        self.bounce_domain = bounce_domain
        self.public_url = public_url
        self.cache_size = cache_size
        self._cache: OrderedDict[str, Template] = OrderedDict()
        self._lock = threading.Lock()

    def cached(self, email_id: str) -> bool:
        with self._lock:
            return email_id in self._cache

    def cached_template(self, email_id: str) -> Template | None:
        with self._lock:
            return self._cache.get(email_id)

    def template(self, email: EmailSource) -> Template:
        with self._lock:
            tpl = self._cache.get(email.id)
            if tpl is not None:
                self._cache.move_to_end(email.id)
                return tpl
        tpl = build_template(email)
        with self._lock:
            self._cache[email.id] = tpl
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        return tpl

    def forget(self, email_id: str) -> None:
        with self._lock:
            self._cache.pop(email_id, None)

    def compose(self, email: EmailSource, recipient_id: str, address: str, *,
                return_path_host: str | None = None) -> Outgoing:
        """``return_path_host``: the sending domain's aligned VERP host, else the bounce domain."""
        data = self.template(email).render(recipient_id, public_url=self.public_url, secret=self.secret,
                                           bounce_domain=self.bounce_domain, exclude_domains=self.exclude_domains)
        verp = tokens.verp_address(self.secret, recipient_id, return_path_host or self.bounce_domain)
        return Outgoing(recipient_id, verp, address, data)
