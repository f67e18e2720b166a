"""Last resort for unrecognised bounce texts: addresses after a failure marker."""

from __future__ import annotations

from mailtrack.bounces.addresses import find_addresses
from mailtrack.bounces.detectors.common import QUOTED_HEADER, build, candidate, looks_like_bounce, own_addresses
from mailtrack.bounces.message import MAX_RECIPIENTS, Returned
from mailtrack.bounces.model import Report

NAME = "text"

MARKERS: tuple[str, ...] = (
    "following address", "following recipient", "could not be delivered", "not delivered to",
    "did not reach", "undeliverable", "permanent error", "delivery failed", "delivery has failed",
    "error delivering", "following addresses had", "wasn't able to deliver", "could not deliver",
    "unable to deliver", "couldn't be delivered", "failed to deliver", "was not delivered",
    "delivery to the following", "user unknown", "unknown user", "no such user", "not be delivered",
    "has not yet been delivered", "delivery problems", "not reach", "error occurred", "rejected",
    "送信に失敗しました", "配信できません", "届きませんでした", "配信に失敗", "konnte nicht zugestellt werden",
    "n'a pas pu être remis", "no se pudo entregar", "não pôde ser entregue", "nao pode ser entregue",
    "не может быть доставлено", "не удалось доставить", "无法投递", "無法投遞", "投递失败",
)  # fmt: skip


def marker_line(lines: list[str]) -> int:
    """Index of the first line carrying a failure marker (0 when none does)."""
    for index, line in enumerate(lines):
        low = line.lower()
        if any(m in low for m in MARKERS):
            return index
    return 0


def diagnostic_after(lines: list[str], index: int, limit: int = 8) -> str:
    """The address line and the lines after it up to a blank line."""
    picked = [lines[index]]
    for line in lines[index + 1 : index + 1 + limit]:
        if not line.strip():
            if len(picked) > 1:
                break
            continue
        picked.append(line)
    return "\n".join(picked)


def _scan(lines: list[str], start: int, own: set[str]) -> list[tuple[str | None, str]]:
    found: list[tuple[str | None, str]] = []
    for index in range(start, len(lines)):
        line = lines[index]
        if "@" not in line or QUOTED_HEADER.match(line):
            continue
        if len(found) >= MAX_RECIPIENTS:
            break
        low = line.lower()
        for address in find_addresses(line):
            at = low.find(address.lower())
            if low[max(0, at - 7) : at].rstrip(" <:\t").endswith("from"):
                continue  # "mail from x@y" names the sender
            if candidate(address, own):
                found.append((address, diagnostic_after(lines, index)))
    return found


def _bare_local(msg: Returned, lines: list[str], start: int) -> list[tuple[str | None, str]]:
    """A local part alone under "...the following recipients:" means a mailbox of the reporting domain."""
    if not lines or not lines[start].rstrip().endswith(":"):
        return []
    domain = (find_addresses(msg.header("From"), limit=1) or ["@"])[0].split("@", 1)[1]
    for line in lines[start + 1 : start + 4]:
        token = line.strip()
        if not token:
            continue
        if domain and token.replace(".", "").replace("-", "").replace("_", "").isalnum() and len(token) < 65:
            return [(f"{token}@{domain}", lines[start])]
        break
    return []


def detect(msg: Returned) -> Report | None:
    if not looks_like_bounce(msg):
        return None
    lines = msg.lines
    text = "\n".join(lines)
    own = own_addresses(msg)
    start = marker_line(lines)
    found = _scan(lines, start, own)
    if not found and start:
        found = _scan(lines, 0, own)
    if not found:
        found = _bare_local(msg, lines, start)
    if not found:
        quoted_to = [a for line in lines if line.lower().startswith("to:") for a in find_addresses(line)]
        if len(quoted_to) == 1 and candidate(quoted_to[0], own):
            found.append((quoted_to[0], text[start:][:1000]))
    if not found:
        original_to = [a for a in find_addresses(msg.original_header("To")) if candidate(a, own)]
        if len(original_to) == 1:
            found.append((original_to[0], text[start:][:1000]))
    return build(msg, found, text)
