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
import logging
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.header import Header
from email.utils import format_datetime

from . import tokens
from .submission.mime import raw_template, submitted_raw
from .template import CRLF, HTML, MSGID, RID, UNSUB, Chunk, EmailSource, Template, feedback_id, message_id

__all__ = ["HTML", "MSGID", "RID", "UNSUB", "Chunk", "Composer", "EmailSource", "Outgoing", "Template",
           "build_template", "feedback_id", "message_id"]

log = logging.getLogger(__name__)


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


def build_template(email: EmailSource, *, date: float | None = None) -> Template:
    """Encode everything the recipients of ``email`` share."""
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
