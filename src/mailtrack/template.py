"""A per-email byte template and what fills it per recipient (slots), shared by compose and submission.

``Template`` is a list of byte chunks with a few named slots (Message-ID, X-Mailtrack-ID, the
tracked HTML part, List-Unsubscribe); ``render`` fills them for one recipient. ``compose.py``
builds templates for API emails, ``submission/mime.py`` for messages submitted over SMTP; both
import this module, and neither imports the other at import time.
"""

from __future__ import annotations

import binascii
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from . import tokens
from .inject import TrackedHtml, split_html

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
