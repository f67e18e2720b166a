"""Bounding hostile input before the stdlib parser sees it, and repairing what anonymisers broke."""

from __future__ import annotations

import email
import itertools
import re
from email.message import Message

MAX_RAW = 256 * 1024  # parse at most this much of a message (the report comes first; the tail is the original)
MAX_NESTING = 12  # "multipart/" types beyond this are cut off (real bounces nest three or four deep)
MAX_RAW_LINES = 20_000  # the stdlib parser tests every line against every open boundary: cap both
MAX_CONTENT_TYPE = 2048  # its parameter parsing is slow on long values; real ones are < 300 bytes

_LINE_END = re.compile(rb"\r\n?|\n")
_BLANK_LINE = re.compile(rb"\r?\n\r?\n")
_HEADER_LINE = re.compile(rb"[!-9;-~]{1,76}:")


def split_messages(raw: bytes) -> bytes:
    """The first message of the input: mbox "From " line dropped, a second mbox message cut off, capped.

    The body of the returned original (after its headers) is dropped too: nothing reads it.
    """
    return split_lowered(raw)[0]


def split_lowered(raw: bytes) -> tuple[bytes, bytes]:
    """``split_messages`` and the result lower-cased (computed once, for every quick word check)."""
    raw, low = _first_message(raw)
    return _skip_original_body(raw, low)


def _first_message(raw: bytes) -> tuple[bytes, bytes]:
    raw = _cap_lines(raw[:MAX_RAW])
    low = raw.lower()
    raw, low = _cap_nesting(raw, low)
    raw, low = _cap_content_types(raw, low)
    if raw.startswith(b"From "):
        skip = raw.find(b"\n") + 1 if b"\n" in raw else len(raw)
        raw, low = raw[skip:], low[skip:]
    cut = raw.find(b"\nFrom ")
    for _ in range(100):
        if cut == -1:
            break
        before = raw[max(0, cut - 2) : cut]
        after = raw[cut + 1 : cut + 400].split(b"\n", 2)
        if before.endswith((b"\n", b"\n\r")) and len(after) > 1 and _HEADER_LINE.match(after[1]):
            return raw[:cut], low[:cut]
        cut = raw.find(b"\nFrom ", cut + 1)
    return raw, low


_REPORTS = (b"delivery-status", b"feedback-report", b"multipart/report", b"message/rfc822", b"message/global")


def _skip_original_body(raw: bytes, low: bytes) -> tuple[bytes, bytes]:
    """Cut the input after the headers of an attached original (message/rfc822), when nothing follows.

    Detectors read the original's headers only; its body (often the largest part, attachments
    and all) would be parsed for nothing. Kept whole when a report part follows the original or
    the original is itself a report (a bounce forwarded as an attachment).
    """
    at = low.find(b"message/rfc822")
    if at == -1:
        at = low.find(b"message/global")
    if at == -1 or b"content-type:" not in low[max(0, low.rfind(b"\n", 0, at)) : at]:
        return raw, low
    part_head = _BLANK_LINE.search(raw, at)
    if part_head is None:
        return raw, low
    inner_head = _BLANK_LINE.search(raw, part_head.end())
    if inner_head is None or any(word in low[at + 14 :] for word in _REPORTS[:2]):
        return raw, low
    if any(word in low[part_head.end() : inner_head.start()] for word in _REPORTS):
        return raw, low
    return raw[: inner_head.end()], low[: inner_head.end()]


def _cap_lines(raw: bytes) -> bytes:
    """Cut the input after MAX_RAW_LINES lines (CR, LF or CRLF endings, as the parser counts them)."""
    if raw.count(b"\n") + raw.count(b"\r") <= MAX_RAW_LINES:
        return raw
    ends = itertools.islice(_LINE_END.finditer(raw), MAX_RAW_LINES - 1, None)
    last = next(ends, None)
    return raw[: last.end()] if last else raw


def _cap_content_types(raw: bytes, low: bytes) -> tuple[bytes, bytes]:
    """Shorten any Content-Type field (folded lines included) longer than MAX_CONTENT_TYPE."""
    pieces: list[bytes] = []
    done = 0
    at = low.find(b"content-type:")
    for _ in range(1000):
        if at == -1:
            break
        end = at
        for line_end in _LINE_END.finditer(raw, at):
            end = line_end.end()
            if raw[end : end + 1] not in (b" ", b"\t") or end - at > MAX_CONTENT_TYPE:
                break
        else:
            end = len(raw)
        if end - at > MAX_CONTENT_TYPE:
            pieces.append(raw[done : at + MAX_CONTENT_TYPE] + b"\n")
            # skip the rest of the over-long field
            while end < len(raw) and raw[end : end + 1] in (b" ", b"\t"):
                nxt = _LINE_END.search(raw, end)
                end = nxt.end() if nxt else len(raw)
            done = end
        at = low.find(b"content-type:", max(end, at + 1))
    if not done:
        return raw, low
    pieces.append(raw[done:])
    capped = b"".join(pieces)
    return capped, capped.lower()


def _cap_nesting(raw: bytes, low: bytes) -> tuple[bytes, bytes]:
    """Cut the input before its MAX_NESTING-th multipart header: the stdlib parser recurses per level."""
    at = -1
    for _ in range(MAX_NESTING):
        at = low.find(b"multipart/", at + 1)
        if at == -1:
            return raw, low
    cut = raw.rfind(b"\n", 0, at) + 1
    return raw[:cut], low[:cut]


_BOUNDARY_LINE = re.compile(rb"(?m)^--([^\s]{1,200}?)\r?$")


def parse_bytes(raw: bytes) -> Message:
    """Parse; when a multipart's declared boundary never occurs (anonymised copies), use the body's."""
    msg = email.message_from_bytes(raw)  # compat32, the default: fast and lenient
    if msg.get_content_maintype() != "multipart" or isinstance(msg.get_payload(), list):
        return msg
    declared = msg.get_boundary()
    blank = _BLANK_LINE.search(raw)
    head_end = blank.start() if blank else len(raw)
    body = raw[head_end:]
    found = _BOUNDARY_LINE.search(body[:65536])
    if not declared or not found:
        return msg
    actual = found.group(1)
    if actual.endswith(b"--"):
        actual = actual[:-2]
    fixed = raw[:head_end].replace(declared.encode("latin-1", "replace"), actual, 1) + body
    return email.message_from_bytes(fixed)  # compat32, the default: fast and lenient
