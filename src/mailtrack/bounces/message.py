"""The returned message as detectors see it: parsed once, texts decoded and capped."""

from __future__ import annotations

import email
import email.header
import re
from collections.abc import Callable
from email.message import Message
from functools import cached_property

import ahocorasick

from mailtrack.bounces.sanitize import parse_bytes, split_lowered

MAX_TEXT = 64 * 1024  # decode at most this much of one text part
MAX_PARTS = 64  # walk at most this many MIME parts
MAX_LINES = 3000  # detectors read at most this many lines of the report text…
MAX_LINE = 2000  # …each cut to this length (no recipient line is longer)
MAX_RECIPIENTS = 500  # a report names at most this many recipients

_TAGS = re.compile(r"<[^<>]{0,2000}>")
_BR = re.compile(r"(?i)<\s*(?:br|/p|/div|/tr|p|div|tr)\b[^<>]{0,500}>")
_MAILTRACK_ID = re.compile(r"(?im)^[ \t>]*x-mailtrack-id:[ \t]*([^\s;<>]{1,200})")
_MESSAGE_ID = re.compile(r"(?im)^[ \t>]*message-id:[ \t]*(<[^<>\s]{1,500}>)")
_MESSAGE_ID_BYTES = re.compile(rb"(?im)^[ \t>]*message-id:[ \t]*(<[^<>\s]{1,500}>)")
_ANGLED = re.compile(r"<[^<>\s]{1,500}>")
_CHARSET = re.compile(rb'charset[ \t]*=[ \t]*"?([a-z0-9_.:+-]{1,40})')
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
    "copy of your message is below", "enclosed is a copy of the message",
)  # fmt: skip


_MARKERS = ahocorasick.Automaton()
for _marker in ORIGINAL_MARKERS:
    _MARKERS.add_word(_marker, len(_marker))
_MARKERS.make_automaton()


# Charset names mail software writes that Python's codecs do not know.
_CHARSET_ALIASES = {
    "x-sjis": "cp932", "windows-31j": "cp932", "shift_jis": "cp932", "shift-jis": "cp932", "sjis": "cp932",
    "x-euc-jp": "euc_jp", "x-gbk": "gbk", "gb2312": "gb18030", "gbk": "gb18030", "x-euc-kr": "euc_kr",
    "iso-2022-jp": "iso2022_jp_ext", "x-unknown": "utf-8", "unknown-8bit": "utf-8",
}  # fmt: skip


_SINGLE_BYTE = frozenset({
    "us-ascii", "ascii", "iso-8859-1", "latin-1", "latin1", "iso-8859-15", "windows-1252", "cp1252",
})  # fmt: skip


def part_text(part: Message, also: Callable[[], tuple[str, ...]] = tuple) -> str:
    """A text part's decoded content (charset errors replaced, length capped).

    ``also()`` gives the other charsets the message declares, tried when the part's own fails.
    """
    payload = part.get_payload(decode=True)
    if not isinstance(payload, bytes):
        return ""
    payload = payload[:MAX_TEXT]
    text = _decode(payload, part.get_content_charset() or "", also)
    if part.get_content_type() == "text/html":
        import html  # rare in bounces: not imported at start-up

        text = html.unescape(_TAGS.sub(" ", _BR.sub("\n", text)))
    return text.replace("\r\n", "\n").replace("\r", "\n")


def decode_bytes(payload: bytes, charsets: tuple[str, ...] = ()) -> str:
    """Bytes of no declared charset: JIS, UTF-8, one of the message's charsets, else with replacements."""
    return _decode(payload, "", lambda: charsets)


def _decode(payload: bytes, charset: str, also: Callable[[], tuple[str, ...]] = tuple) -> str:
    """Declared charset, else UTF-8, else another one the message declares, else replacements, else Latin-1.

    JIS escape sequences mean ISO-2022-JP whatever is (or is not) declared: Japanese MTAs often
    send it 7bit with no charset at all.
    """
    if b"\x1b$B" in payload or b"\x1b$@" in payload or b"\x1b(J" in payload:
        charset = "iso-2022-jp"
    charset = _CHARSET_ALIASES.get(charset.lower(), charset) if charset else "utf-8"
    order = (charset, "utf-8")
    if charset.lower() in _SINGLE_BYTE and not payload.isascii():
        # Valid UTF-8 under a Latin-1 label is UTF-8 (Latin-1 text is almost never valid UTF-8),
        # and Latin-1 decodes anything, so it cannot come first.
        order = ("utf-8", charset)
    for name in order:
        try:
            return payload.decode(name)
        except (LookupError, ValueError):
            continue
    tries = [(_CHARSET_ALIASES.get(c, c), "strict") for c in also() if c != charset]
    for name, errors in [*tries, (charset, "replace")]:
        try:
            return payload.decode(name, errors=errors)
        except (LookupError, ValueError):
            continue
    return payload.decode("latin-1")


def _is_text_type(part: Message, ctype: str) -> bool:
    """A text part, or a multipart whose boundary was lost (its body is plain text then)."""
    if ctype.startswith("text/"):
        return ctype != "text/rfc822-headers"
    return ctype.startswith("multipart/") and isinstance(part.get_payload(), str)


def cut_at_original(text: str) -> tuple[str, str]:
    """Split a bounce body into (report text, copy of the original) at the first marker line."""
    best = -1
    for end, length in _MARKERS.iter(text.lower()):
        at = end - length + 1
        if best == -1 or at < best:
            best = at
    if best == -1:
        return text, ""
    line_start = text.rfind("\n", 0, best) + 1
    return text[:line_start], text[line_start:]


class Returned:
    """One returned message with the views detectors need, each computed once."""

    def __init__(self, raw: bytes) -> None:
        self.raw, self.raw_lower = split_lowered(raw)
        self.msg: Message = parse_bytes(self.raw)
        self._texts: dict[int, str] = {}

    def text_of(self, part: Message) -> str:
        """A text part's decoded content, decoded once."""
        key = id(part)
        if key not in self._texts:
            self._texts[key] = part_text(part, lambda: self.charsets)
        return self._texts[key]

    def header(self, name: str) -> str:
        """A top-level header as text ("" when absent)."""
        return self._headers.get(name.lower(), "")

    @cached_property
    def _headers(self) -> dict[str, str]:
        return _first_values(self.msg)

    @cached_property
    def charsets(self) -> tuple[str, ...]:
        """Every charset the message declares, in its headers or its parts' (lower case, in order)."""
        found: list[str] = []
        for match in _CHARSET.finditer(self.raw_lower):
            charset = match.group(1).decode("ascii")
            if charset not in found:
                found.append(charset)
                if len(found) >= 8:
                    break
        return tuple(found)

    @cached_property
    def subject(self) -> str:
        return _decode_header(self.header("Subject"))

    @cached_property
    def sender(self) -> str:
        return self.header("From").lower()

    @cached_property
    def _walk(self) -> tuple[list[Message], list[str]]:
        """MIME parts in order (not inside attached messages, capped in number) and their types."""
        parts: list[Message] = []
        types: list[str] = []
        stack: list[Message] = [self.msg]
        while stack and len(parts) < MAX_PARTS:
            part = stack.pop(0)
            ctype = part.get_content_type()
            parts.append(part)
            types.append(ctype)
            if ctype.startswith("multipart/"):
                payload = part.get_payload()
                if isinstance(payload, list):
                    stack[0:0] = [p for p in payload if isinstance(p, Message)]
        return parts, types

    @property
    def parts(self) -> list[Message]:
        return self._walk[0]

    @cached_property
    def nested_parts(self) -> list[Message]:
        """Parts of the messages attached to this one (one level down), capped in number."""
        out: list[Message] = []
        for part in self.parts_of("message/rfc822"):
            inner = part.get_payload(0) if part.is_multipart() else None
            if isinstance(inner, Message):
                out.extend(p for p in inner.walk())
            if len(out) > MAX_PARTS:
                break
        return out[:MAX_PARTS]

    def parts_of(self, *content_types: str) -> list[Message]:
        parts, types = self._walk
        return [p for p, t in zip(parts, types, strict=True) if t in content_types]

    @cached_property
    def text_parts(self) -> list[Message]:
        parts, types = self._walk
        return [p for p, t in zip(parts, types, strict=True) if _is_text_type(p, t)]

    @cached_property
    def lines(self) -> list[str]:
        """The report text's lines, bounded in number and length."""
        return [line[:MAX_LINE] for line in self.report_text.split("\n", MAX_LINES)[:MAX_LINES]]

    @cached_property
    def flat(self) -> str:
        """The report text lower-cased with whitespace collapsed, for quick phrase checks."""
        return " ".join(self.report_text[:65536].lower().split())

    def mentions(self, *phrases: str) -> bool:
        """True when the report text contains one of the phrases (line breaks ignored)."""
        flat = self.flat
        return any(p in flat for p in phrases)

    @cached_property
    def report_text(self) -> str:
        """The human-readable bounce text: text parts before the original, cut at a marker."""
        chunks: list[str] = []
        for part in self.text_parts:
            if _is_attachment(part) and chunks:
                continue
            text, rest = cut_at_original(self.text_of(part))
            chunks.append(text)
            if rest:
                break
        return "\n".join(chunks)

    @cached_property
    def full_text(self) -> str:
        """All decoded text parts, the original's copy included (for hints and markers)."""
        return "\n".join(self.text_of(p) for p in self.text_parts)

    @cached_property
    def _original_headers(self) -> dict[str, str]:
        """The headers of the returned original message, wherever they are (first value per name)."""
        for part, ctype in zip(*self._walk, strict=True):
            if ctype in ("message/rfc822", "message/global") and part.is_multipart():
                inner = part.get_payload(0)
                if isinstance(inner, Message):
                    return _first_values(inner)
            if ctype in ("text/rfc822-headers", "message/rfc822-headers") or (
                ctype in ("message/rfc822", "message/global") and not part.is_multipart()
            ):
                return header_block(part_text(part).lstrip())
        _, rest = cut_at_original(self.full_text)
        if rest:
            body = rest.split("\n", 1)[1] if "\n" in rest else ""
            return header_block(body.lstrip("\n -"))
        return {}

    @cached_property
    def searchable(self) -> str:
        """Raw text plus the decoded text of encoded parts, for header-line searches."""
        encoded = [self.text_of(p) for p in self._encoded_parts]
        return "\n".join([self.raw.decode("latin-1"), *encoded])

    def anywhere(self, needle: str) -> bool:
        """True when a lower-case ASCII word is in the raw message or a decoded encoded text part."""
        return needle.encode() in self.raw_lower or needle in self._encoded_lower

    @cached_property
    def _encoded_lower(self) -> str:
        return "\n".join(self.text_of(p) for p in self._encoded_parts).lower()

    @cached_property
    def _encoded_parts(self) -> list[Message]:
        return [
            p
            for p in self.text_parts
            if str(p.get("Content-Transfer-Encoding", "")).strip().lower() in ("base64", "quoted-printable")
        ]

    def original_header(self, name: str) -> str:
        """A header of the returned original message ("" when absent)."""
        return self._original_headers.get(name.lower(), "")

    @cached_property
    def original_message_id(self) -> str | None:
        value = self.original_header("Message-ID")
        if value:
            found = _ANGLED.search(value)
            return found.group(0) if found else value.split()[0]
        own = self.header("Message-ID").encode("latin-1", "replace")
        for match in _MESSAGE_ID_BYTES.finditer(self.raw, 0, MAX_TEXT * 4):
            if match.group(1) != own:
                return match.group(1).decode("latin-1")
        for found in _MESSAGE_ID.findall("\n".join(self.text_of(p) for p in self._encoded_parts)[: MAX_TEXT * 4]):
            if found != self.header("Message-ID"):
                return str(found)
        in_reply_to = _ANGLED.search(self.header("In-Reply-To"))
        return in_reply_to.group(0) if in_reply_to else None

    @cached_property
    def mailtrack_id(self) -> str | None:
        if not self.anywhere("x-mailtrack-id"):
            return None
        found = _MAILTRACK_ID.search(self.searchable)
        return found.group(1) if found else None

    @cached_property
    def envelope_hints(self) -> list[str]:
        hints: list[str] = []
        if not self.anywhere("bounces+"):
            return hints
        seen: set[str] = set()
        for match in _VERP.finditer(self.searchable, 0, MAX_TEXT * 4):
            hint = match.group(0)
            if hint.lower() not in seen:
                seen.add(hint.lower())
                hints.append(hint)
            if len(hints) >= 20:
                break
        return hints


_HEADER_NAME = re.compile(r"[!-9;-~]{1,76}")


def header_block(text: str, max_lines: int = 500) -> dict[str, str]:
    """A header block's fields (names lower-cased, first value wins), up to its first non-header line.

    A light reader for quoted original headers: the stdlib parser would build a whole message.
    """
    values: dict[str, str] = {}
    name = ""
    for line in text.split("\n", max_lines)[:max_lines]:
        if line[:1] in (" ", "\t"):
            if name:
                values[name] += "\n" + line.rstrip("\r")
            continue
        field, sep, value = line.partition(":")
        if not sep or not _HEADER_NAME.fullmatch(field):
            break
        key = field.lower()
        name = "" if key in values else key
        if name:
            values[name] = value.strip()
    return {k: v.strip() for k, v in values.items()}


def _first_values(msg: Message) -> dict[str, str]:
    """Header names (lower-cased) to their first value, stripped."""
    values: dict[str, str] = {}
    # raw_items: the policy's fetch step only matters for 8-bit values (then applied, as items() would)
    for name, value in msg.raw_items():
        key = name.lower()
        if key not in values:
            if not value.isascii():
                value = str(msg.policy.header_fetch_parse(name, value))
            values[key] = value.strip()
    return values


def _is_attachment(part: Message) -> bool:
    return str(part.get("Content-Disposition", "")).lower().startswith("attachment")


def _decode_header(value: str) -> str:
    if "=?" not in value:
        return value  # no encoded words: nothing to decode
    try:
        pieces = email.header.decode_header(value)
    except (ValueError, LookupError, TypeError):  # pragma: no cover - defensive
        return value
    out: list[str] = []
    for chunk, charset in pieces:
        if isinstance(chunk, bytes):
            name = _CHARSET_ALIASES.get((charset or "").lower(), charset) or "latin-1"
            try:
                out.append(chunk.decode(name, errors="replace"))
            except LookupError:
                out.append(chunk.decode("latin-1"))
        else:
            out.append(chunk)
    return "".join(out)
