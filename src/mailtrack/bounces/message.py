"""The returned message as detectors see it: parsed once, texts decoded and capped."""

from __future__ import annotations

import email
import email.header
import email.policy
import html
import re
from email.message import Message
from email.parser import HeaderParser
from functools import cached_property

MAX_RAW = 1024 * 1024  # parse at most this much of a message
MAX_TEXT = 64 * 1024  # decode at most this much of one text part
MAX_PARTS = 64  # walk at most this many MIME parts

_HEADER_LINE = re.compile(rb"[!-9;-~]{1,76}:")
_TAGS = re.compile(r"<[^<>]{0,2000}>")
_BR = re.compile(r"(?i)<\s*(?:br|/p|/div|/tr|p|div|tr)\b[^<>]{0,500}>")
_MAILTRACK_ID = re.compile(r"(?im)^[ \t>]*x-mailtrack-id:[ \t]*([^\s;<>]{1,200})")
_MESSAGE_ID = re.compile(r"(?im)^[ \t>]*message-id:[ \t]*(<[^<>\s]{1,500}>)")
_ANGLED = re.compile(r"<[^<>\s]{1,500}>")
_VERP = re.compile(r"(?i)(?<![\w.+-])bounces\+[\w.=+-]{1,200}@[\w.-]{1,255}\w")

# Lines that introduce the copy of the original message inside a plain-text bounce.
ORIGINAL_MARKERS: tuple[str, ...] = (
    "this is a copy of the message", "below this line is a copy", "copy of the first part of the message",
    "original message follows", "message headers follow", "original message header", "unsent message below",
    "unsent message follows", "returned message follows", "--- returned message", "start of returned message",
    "headers of the original message", "the header of the original message", "original message ---",
    "original message -----", "--- original message", "message header follows", "returned mail follows",
    "message is included below", "text of the message follows", "original message:", "message text follows",
    "-------original mail info", "-------original message", "original message details",
    "original message as received", "copy of the message header", "copy of your message follows",
    "copy of your message is below",
)  # fmt: skip


def split_messages(raw: bytes) -> bytes:
    """The first message of the input: mbox "From " line dropped, a second mbox message cut off."""
    raw = raw[:MAX_RAW]
    if raw.startswith(b"From "):
        raw = raw.split(b"\n", 1)[1] if b"\n" in raw else b""
    cut = raw.find(b"\nFrom ")
    while cut != -1:
        before = raw[max(0, cut - 2) : cut]
        after = raw[cut + 1 : cut + 400].split(b"\n", 2)
        if before.endswith((b"\n", b"\n\r")) and len(after) > 1 and _HEADER_LINE.match(after[1]):
            return raw[:cut]
        cut = raw.find(b"\nFrom ", cut + 1)
    return raw


def part_text(part: Message) -> str:
    """A text part's decoded content (charset errors replaced, length capped)."""
    payload = part.get_payload(decode=True)
    if not isinstance(payload, bytes):
        return ""
    payload = payload[:MAX_TEXT]
    text = _decode(payload, part.get_content_charset() or "utf-8")
    if part.get_content_subtype() == "html":
        text = html.unescape(_TAGS.sub(" ", _BR.sub("\n", text)))
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _decode(payload: bytes, charset: str) -> str:
    """Declared charset, else UTF-8, else the declared one with replacements, else Latin-1."""
    for name, errors in ((charset, "strict"), ("utf-8", "strict"), (charset, "replace")):
        try:
            return payload.decode(name, errors=errors)
        except (LookupError, ValueError):
            continue
    return payload.decode("latin-1")


def is_text(part: Message) -> bool:
    """A text part, or a multipart whose boundary was lost (its body is plain text then)."""
    maintype = part.get_content_maintype()
    if maintype == "text":
        return part.get_content_type() != "text/rfc822-headers"
    return maintype == "multipart" and isinstance(part.get_payload(), str)


def cut_at_original(text: str) -> tuple[str, str]:
    """Split a bounce body into (report text, copy of the original) at the first marker line."""
    low = text.lower()
    best = -1
    for marker in ORIGINAL_MARKERS:
        at = low.find(marker)
        if at != -1 and (best == -1 or at < best):
            best = at
    if best == -1:
        return text, ""
    line_start = text.rfind("\n", 0, best) + 1
    return text[:line_start], text[line_start:]


class Returned:
    """One returned message with the views detectors need, each computed once."""

    def __init__(self, raw: bytes) -> None:
        self.raw = split_messages(raw)
        self.msg: Message = _parse_bytes(self.raw)

    def header(self, name: str) -> str:
        """A top-level header as text ("" when absent or undecodable)."""
        value = self.msg.get(name)
        if value is None:
            return ""
        return str(value).strip()

    @cached_property
    def subject(self) -> str:
        return _decode_header(self.header("Subject"))

    @cached_property
    def sender(self) -> str:
        return self.header("From").lower()

    @cached_property
    def parts(self) -> list[Message]:
        """MIME parts in order, not descending into attached messages, capped in number."""
        out: list[Message] = []
        stack: list[Message] = [self.msg]
        while stack and len(out) < MAX_PARTS:
            part = stack.pop(0)
            out.append(part)
            if part.is_multipart() and part.get_content_maintype() == "multipart":
                payload = part.get_payload()
                if isinstance(payload, list):
                    stack[0:0] = [p for p in payload if isinstance(p, Message)]
        return out

    @cached_property
    def nested_parts(self) -> list[Message]:
        """Parts of the messages attached to this one (one level down), capped in number."""
        out: list[Message] = []
        for part in self.parts:
            if part.get_content_type() == "message/rfc822" and part.is_multipart():
                inner = part.get_payload(0)
                if isinstance(inner, Message):
                    out.extend(p for p in inner.walk())
            if len(out) > MAX_PARTS:
                break
        return out[:MAX_PARTS]

    def parts_of(self, *content_types: str) -> list[Message]:
        return [p for p in self.parts if p.get_content_type() in content_types]

    @cached_property
    def report_text(self) -> str:
        """The human-readable bounce text: text parts before the original, cut at a marker."""
        chunks: list[str] = []
        for part in self.parts:
            if not is_text(part):
                continue
            if _is_attachment(part) and chunks:
                continue
            text, rest = cut_at_original(part_text(part))
            chunks.append(text)
            if rest:
                break
        return "\n".join(chunks)

    @cached_property
    def full_text(self) -> str:
        """All decoded text parts, the original's copy included (for hints and markers)."""
        chunks = [part_text(p) for p in self.parts if is_text(p)]
        return "\n".join(chunks)

    @cached_property
    def original_headers(self) -> Message | None:
        """The headers of the returned original message, wherever they are."""
        for part in self.parts:
            ctype = part.get_content_type()
            if ctype in ("message/rfc822", "message/global") and part.is_multipart():
                inner = part.get_payload(0)
                if isinstance(inner, Message):
                    return inner
            if ctype in ("text/rfc822-headers", "message/rfc822-headers") or (
                ctype in ("message/rfc822", "message/global") and not part.is_multipart()
            ):
                return HeaderParser(policy=email.policy.compat32).parsestr(part_text(part).lstrip())
        _, rest = cut_at_original(self.full_text)
        if rest:
            body = rest.split("\n", 1)[1] if "\n" in rest else ""
            return HeaderParser(policy=email.policy.compat32).parsestr(body.lstrip("\n -"))
        return None

    @cached_property
    def searchable(self) -> str:
        """Raw text and decoded parts together, for header-line searches."""
        return self.raw[:MAX_RAW].decode("latin-1") + "\n" + self.full_text

    def original_header(self, name: str) -> str:
        headers = self.original_headers
        if headers is None:
            return ""
        value = headers.get(name)
        return str(value).strip() if value is not None else ""

    @cached_property
    def original_message_id(self) -> str | None:
        value = self.original_header("Message-ID")
        if value:
            found = _ANGLED.search(value)
            return found.group(0) if found else value.split()[0]
        own = self.header("Message-ID")
        for match in _MESSAGE_ID.finditer(self.searchable[: MAX_TEXT * 4]):
            if match.group(1) != own:
                return match.group(1)
        in_reply_to = _ANGLED.search(self.header("In-Reply-To"))
        return in_reply_to.group(0) if in_reply_to else None

    @cached_property
    def mailtrack_id(self) -> str | None:
        found = _MAILTRACK_ID.search(self.searchable)
        return found.group(1) if found else None

    @cached_property
    def envelope_hints(self) -> list[str]:
        hints: list[str] = []
        for match in _VERP.finditer(self.searchable):
            hint = match.group(0)
            if hint.lower() not in (h.lower() for h in hints):
                hints.append(hint)
        return hints


_BOUNDARY_LINE = re.compile(rb"(?m)^--([^\s]{1,200}?)\r?$")


def _parse_bytes(raw: bytes) -> Message:
    """Parse; when a multipart's declared boundary never occurs (anonymised copies), use the body's."""
    msg = email.message_from_bytes(raw, policy=email.policy.compat32)
    if msg.get_content_maintype() != "multipart" or isinstance(msg.get_payload(), list):
        return msg
    declared = msg.get_boundary()
    head_end = raw.find(b"\n\n")
    body = raw[head_end:] if head_end != -1 else b""
    found = _BOUNDARY_LINE.search(body[:65536])
    if not declared or not found:
        return msg
    actual = found.group(1)
    if actual.endswith(b"--"):
        actual = actual[:-2]
    fixed = raw[:head_end].replace(declared.encode("latin-1", "replace"), actual, 1) + body
    return email.message_from_bytes(fixed, policy=email.policy.compat32)


def _is_attachment(part: Message) -> bool:
    return str(part.get("Content-Disposition", "")).lower().startswith("attachment")


def _decode_header(value: str) -> str:
    try:
        pieces = email.header.decode_header(value)
    except (ValueError, LookupError, TypeError):  # pragma: no cover - defensive
        return value
    out: list[str] = []
    for chunk, charset in pieces:
        if isinstance(chunk, bytes):
            try:
                out.append(chunk.decode(charset or "latin-1", errors="replace"))
            except LookupError:
                out.append(chunk.decode("latin-1"))
        else:
            out.append(chunk)
    return "".join(out)
