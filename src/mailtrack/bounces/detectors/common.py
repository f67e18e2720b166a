"""Helpers shared by the plain-text bounce detectors."""

from __future__ import annotations

import re

from mailtrack.bounces.addresses import find_addresses, is_system_address
from mailtrack.bounces.message import MAX_RECIPIENTS, Returned
from mailtrack.bounces.model import Kind, RecipientResult, Report
from mailtrack.bounces.results import result, text_near

# A line quoting a header of the original message (its addresses are not failed recipients).
QUOTED_HEADER = re.compile(
    r"(?i)^[ \t]*(?:>[ \t]*)?(?:from|to|cc|bcc|sender|reply-to|return-path|subject|date|message-id|received|"
    r"envelope-from|x-[\w-]{1,40}|in-reply-to|references|sent|an|von|de|para|a|objet|betreff)\s*:"
)
_DELAY_PHRASES = (
    "has not yet been delivered", "not yet been delivered", "will continue to try", "will keep trying",
    "will try again", "delivery attempts will continue", "still trying", "will be retried",
    "continue trying", "delivery delayed", "message delayed", "delivery status notification (delay)",
    "this is a warning", "warning: message", "warning message only", "still be retried",
    "will retry", "still in the queue", "retrying", "not been delivered yet", "temporarily deferred",
    "delivery is delayed", "is delayed", "has been delayed", "delayed mail", "no action is required",
    "will attempt delivery", "transient", "temporary problem", "will be attempted",
)  # fmt: skip
_FAILURE_SUBJECTS = (
    "undeliver", "failure", "failed", "returned mail", "returning message", "delivery status",
    "not delivered", "nondeliverable", "non-deliverable", "non remis", "unzustellbar", "no entregado",
    "rejected", "bounce", "delivery problem", "could not be delivered", "error", "delayed", "warning",
    "mail system", "undelivered", "delivery notification", "failure notice", "unable to deliver",
    # de, fr, es, pt, ru, zh, ja
    "nicht zugestellt", "unzustellbar", "non distribuable", "échec de la remise", "no se pudo entregar",
    "devuelto", "falha na entrega", "não entregue", "nao entregue", "не доставлено", "недоставлен",
    "退信", "投递失败", "发送失败", "無法投遞", "未送達", "配信エラー", "配信失敗", "送信エラー", "不達",
)  # fmt: skip
_DAEMON_WORDS = (
    "mailer-daemon", "postmaster", "post_master", "mail delivery", "mail-daemon", "maildaemon", "mailerdaemon",
    "mdaemon",
)  # fmt: skip


def is_delay(text: str, subject: str) -> bool:
    """True when a notice says delivery is still being retried."""
    low_subject = subject.lower()
    if any(w in low_subject for w in ("delayed", "delay", "warning", "still undelivered", "unsent")):
        if not any(w in low_subject for w in ("fail", "undeliverable", "unknown", "rejected", "returned")):
            return True
    low = text[:8000].lower()
    if "permanent" in low and "not a permanent" not in low:
        return False
    return any(phrase in low for phrase in _DELAY_PHRASES)


def looks_like_bounce(msg: Returned) -> bool:
    """Sender or subject of a delivery failure notice."""
    sender = msg.sender
    subject = msg.subject.lower()
    if any(w in sender for w in _DAEMON_WORDS) or msg.header("Return-Path").strip() in ("<>", ""):
        if any(w in subject for w in _FAILURE_SUBJECTS) or any(w in sender for w in _DAEMON_WORDS):
            return True
    return any(w in subject for w in _FAILURE_SUBJECTS)


def own_addresses(msg: Returned) -> set[str]:
    """Addresses that are never the failed recipient: the bounce's addressee, the original sender."""
    own: set[str] = set()
    own.update(a.lower() for a in find_addresses(msg.header("To")))
    for name in ("From", "Return-Path", "Sender", "Reply-To"):
        own.update(a.lower() for a in find_addresses(msg.original_header(name)))
    own.update(a.lower() for a in find_addresses(msg.header("From")))
    return own


def candidate(address: str, own: set[str]) -> bool:
    return not is_system_address(address) and address.lower() not in own


def build(
    msg: Returned,
    found: list[tuple[str | None, str]],
    text: str,
    kind: Kind | None = None,
) -> Report | None:
    """A report from (address, text about it) pairs; the kind is guessed from the text when not given."""
    if not found:
        return None
    if kind is None:
        kind = "delay" if is_delay(text, msg.subject) else "bounce"
    unique: dict[str, tuple[str | None, str]] = {}
    for address, diagnostic in found[: MAX_RECIPIENTS * 4]:
        unique.setdefault((address or "").lower(), (address, diagnostic))
    unique = dict(list(unique.items())[:MAX_RECIPIENTS])
    # The whole text explains a failure only when it is about one recipient.
    context = text[:3000] if len(unique) == 1 else ""
    recipients: list[RecipientResult] = []
    for address, block in unique.values():
        block = block or (text_near(text, address) if address else "")
        recipients.append(
            result(address, reply_line(block), detail=block, context=context, kind=kind, action=_ACTION.get(kind))
        )
    return Report(kind=kind, recipients=recipients)


_ACTION: dict[str, str] = {"bounce": "failed", "delay": "delayed", "delivered": "delivered"}


# A line led by an address: "  a@b", "<a@b>:", ">>> a@b", "* a@b", "RCPT TO: a@b", "a@b: 550 ...".
_LEAD = re.compile(
    r"(?i)^[ \t]*(?:>>>[ \t]*|\*[ \t]*|-[ \t]+|\d{1,3}[.)][ \t]*|rcpt to:[ \t]*|"
    r"(?:original|recipient|final)[ -]?(?:address|recipient)?[ \t]*:[ \t]*)?[\"<(]?"
    r"(\"[^\"\n<>]{1,62}\"@[A-Za-z0-9._-]{1,255}|[^\s<>\"()@,;:]{1,64}@[A-Za-z0-9._-]{1,255})"
)
_SEPARATOR = re.compile(r"^\s*(?:[-=*_]{5,}|-{2,}\s.{0,60}\s-{2,})\s*$")
_REPLY = re.compile(r"(?<![\d.])[45]\d\d[ -]|(?<![\d.])[45]\.\d{1,3}\.\d{1,3}(?![\d.])")


def lead_address(line: str) -> str | None:
    """The address a line starts with, if it starts with one (quoted header lines excluded)."""
    if len(line) > 1000 or (QUOTED_HEADER.match(line) and not line.lstrip().lower().startswith("rcpt")):
        return None
    match = _LEAD.match(line)
    if not match:
        return None
    found = find_addresses(match.group(1), limit=1)
    return found[0] if found else None


def address_blocks(
    lines: list[str], start: int = 0, stop: int | None = None, max_lines: int = 20
) -> list[tuple[str, str]]:
    """(address, its block of text) for each address-led line between start and stop."""
    stop = len(lines) if stop is None else stop
    leads: list[tuple[int, str]] = []
    for index in range(start, stop):
        address = lead_address(lines[index])
        if address and not (leads and _continues(lines, leads[-1], index, address)):
            leads.append((index, address))
    blocks: list[tuple[str, str]] = []
    for number, (index, address) in enumerate(leads):
        end = leads[number + 1][0] if number + 1 < len(leads) else stop
        end = min(end, index + max_lines)
        body: list[str] = []
        for line in lines[index:end]:
            if body and _SEPARATOR.match(line):
                break
            body.append(line)
        blocks.append((address, "\n".join(body).strip()))
    return blocks


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" \t"))


def _continues(lines: list[str], lead: tuple[int, str], index: int, address: str) -> bool:
    """An address-led line inside the current block's reply, not a new recipient.

    Exim folds "SMTP error from remote mail server after RCPT TO:" and puts "<a@b>: 550 ..." on
    the next, deeper-indented line; a repeat of the block's own address is never a new block.
    """
    if address.lower() == lead[1].lower() and index - lead[0] < 20:
        return True
    previous = lines[index - 1].rstrip() if index > lead[0] else ""
    return _indent(lines[index]) > _indent(lines[lead[0]]) and previous.endswith(":") and index - lead[0] < 20


def reply_line(block: str) -> str:
    """The part of a block that quotes a server reply (from its first reply code), else the block."""
    match = _REPLY.search(block)
    if not match:
        return block
    start = block.rfind("\n", 0, match.start()) + 1
    return block[start:]


def marker_line(msg: Returned, markers: tuple[str, ...]) -> int | None:
    """Index of the line where one of a detector's markers starts, or None when the message has none."""
    if not msg.mentions(*markers):
        return None
    start = find_line(msg.lines, *markers)
    return None if start == -1 else start


def find_line(lines: list[str], *phrases: str, start: int = 0) -> int:
    """Index of the first line (from start) where one of the phrases starts, even if it wraps."""
    for index in range(start, len(lines)):
        low = lines[index].lower()
        if any(p in low for p in phrases):
            return index
        if index + 1 < len(lines) and low.strip():
            following = lines[index + 1].strip().lower()
            joined = " ".join((low.strip(), following))
            if any(p in joined and p not in following for p in phrases):
                return index
    return -1


def failed_recipients_header(msg: Returned) -> list[str]:
    """Addresses of an X-Failed-Recipients header (Exim and Gmail set it)."""
    return find_addresses(msg.header("X-Failed-Recipients"))


def blocks_report(
    msg: Returned, lines: list[str], start: int, stop: int | None = None, kind: Kind | None = None
) -> Report | None:
    """A report from the address-led blocks of a region, X-Failed-Recipients preferred."""
    blocks = address_blocks(lines, start, stop)
    listed = failed_recipients_header(msg)
    text = "\n".join(lines)
    found: list[tuple[str | None, str]] = []
    if blocks:
        found = list(blocks)
    else:
        # Addresses only in the header: the text after the marker is about them.
        region = "\n".join(line for line in lines[start : start + 20] if line.strip())
        found = [(a, text_near(text, a) or region) for a in listed]
    return build(msg, found, text, kind)
