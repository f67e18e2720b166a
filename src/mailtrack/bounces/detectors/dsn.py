"""RFC 3464 delivery status notifications (message/delivery-status, or its fields in text)."""

from __future__ import annotations

import re
from email.message import Message

from mailtrack.bounces.addresses import clean_address, find_addresses, is_system_address
from mailtrack.bounces.detectors.common import candidate, failed_recipients_header, own_addresses
from mailtrack.bounces.message import MAX_RECIPIENTS, Returned, decode_bytes, part_text
from mailtrack.bounces.model import Kind, RecipientResult, Report
from mailtrack.bounces.results import result, status_of, text_near, tidy

NAME = "dsn"

_FIELD = re.compile(r"([A-Za-z][A-Za-z0-9-]{0,60})[ \t]*:[ \t]*(.*)")
_RECIPIENT_FIELDS = ("final-recipient", "original-recipient", "x-actual-recipient")
_ACTIONS: dict[str, Kind] = {
    "failed": "bounce", "failure": "bounce", "error": "bounce", "expired": "bounce",
    "delayed": "delay", "delay": "delay",
    "delivered": "delivered", "relayed": "delivered", "expanded": "delivered", "deliverable": "delivered",
}  # fmt: skip
_DELAY_WORDS = ("delayed", "delay", "warning", "still being retried", "will be retried", "not yet been delivered")


def parse_fields(text: str) -> list[dict[str, str]]:
    """Blocks of "Name: value" fields separated by blank lines (names lower-cased, first wins)."""
    blocks: list[dict[str, str]] = []
    block: dict[str, str] = {}
    last = ""
    for line in text.replace("\r\n", "\n").split("\n")[:2000]:
        if not line.strip():
            if block:
                blocks.append(block)
            block, last = {}, ""
            continue
        if line[0] in " \t" and last:
            block[last] += " " + line.strip()
            continue
        match = _FIELD.match(line)
        if match:
            last = match.group(1).lower()
            if last in _RECIPIENT_FIELDS and _is_recipient_block(block):
                blocks.append(block)  # a new recipient without the blank line between
                block = {}
            if last in block:
                last = ""  # keep the first value; ignore a repeated field's continuation too
                continue
            block[last] = match.group(2).strip()
    if block:
        blocks.append(block)
    return blocks


def _blocks_of(part: Message, charsets: tuple[str, ...] = ()) -> list[dict[str, str]]:
    payload = part.get_payload()
    if isinstance(payload, list):
        text = "\n\n".join(
            "\n".join(f"{k}: {field_text(v, charsets)}" for k, v in sub.raw_items())
            for sub in payload
            if isinstance(sub, Message)
        )
        return parse_fields(text)
    return parse_fields(part_text(part, lambda: charsets))


def field_text(value: object, charsets: tuple[str, ...] = ()) -> str:
    """A DSN field as text: 8-bit bytes (UTF-8, or a charset the message declares) and JIS decoded."""
    text = str(value)
    if text.isascii() and "\x1b" not in text:
        return text
    return decode_bytes(text.encode("ascii", "surrogateescape") if not text.isascii() else text.encode(), charsets)


def _is_recipient_block(block: dict[str, str]) -> bool:
    return any(name in block for name in _RECIPIENT_FIELDS) and ("action" in block or "status" in block)


def usable(address: str | None) -> bool:
    """An address with a local part and a dotted domain (not a file path, not a bare local part)."""
    if not address or "@" not in address:
        return False
    local, _, domain = address.rpartition("@")
    return bool(local) and "." in domain and "@" not in local.strip('"')


def _address(block: dict[str, str]) -> str | None:
    """Final-Recipient when usable, else Original-Recipient, else X-Actual-Recipient, else what there is."""
    named = [clean_address(block.get(f)) for f in ("final-recipient", "original-recipient", "x-actual-recipient")]
    for address in named:
        if usable(address):
            return address
    return named[1] or named[0] or named[2]


def _kind(block: dict[str, str], status: str | None) -> Kind:
    action = block.get("action", "").lower().split("(")[0].strip()
    if action in _ACTIONS:
        return _ACTIONS[action]
    if "will-retry-until" in block:
        return "delay"
    if status and status.startswith("2"):
        return "delivered"
    return "bounce"


def recipients_from_blocks(blocks: list[dict[str, str]], context: str, subject: str) -> list[RecipientResult]:
    """One RecipientResult per per-recipient DSN block."""
    results: list[RecipientResult] = []
    delay_hint = any(word in subject.lower() for word in _DELAY_WORDS)
    single = sum(1 for b in blocks if _is_recipient_block(b)) == 1
    for block in blocks:
        if not _is_recipient_block(block):
            continue
        if len(results) >= MAX_RECIPIENTS:
            break
        address = _address(block)
        diagnostic = tidy(block.get("diagnostic-code", ""))
        status = status_of(block.get("status", "")) or status_of(diagnostic)
        comment = block.get("status", "").partition("(")[2].rstrip(")")
        if not diagnostic and comment:
            diagnostic = comment.strip()
        kind = _kind(block, status)
        if kind == "bounce" and delay_hint and "action" not in block and (status or "").startswith("4"):
            kind = "delay"
        near = text_near(context, address) if address else ""
        field = next((f"{n.title()}: {block[n]}" for n in _RECIPIENT_FIELDS if n in block), "")
        results.append(
            result(
                address,
                diagnostic or tidy(near),
                detail=block.get("diagnostic-code", "") or diagnostic,
                status=status,
                # The human-readable part explains the failure as a whole only for one recipient.
                context=near + "\n" + context[:3000] if single else near,
                kind=kind,
                action=kind_action(kind),
                remote_mta=_mta(block.get("remote-mta", "")),
            )
        )
        results[-1].evidence["recipient"] = f"DSN field {field[:200]}"
    return results


def _mta(value: str) -> str | None:
    """The host name of a Remote-MTA field ("dns; mx.example.org" → "mx.example.org")."""
    name = (value.partition(";")[2] if ";" in value else value).strip().strip("[]<>")
    return name[:255] or None


def kind_action(kind: Kind) -> str:
    return {"bounce": "failed", "delay": "delayed", "delivered": "delivered"}.get(kind, kind)


def overall(results: list[RecipientResult]) -> tuple[Kind, list[RecipientResult]]:
    """The message's kind and the recipients it is about (failures first, then delays)."""
    for kind, action in (("bounce", "failed"), ("delay", "delayed"), ("delivered", "delivered")):
        chosen = [r for r in results if r.action == action]
        if chosen:
            if kind == "bounce":
                chosen = [r for r in results if r.action in ("failed", "delayed")]
            return kind, chosen  # type: ignore[return-value]
    return "unknown", results


def detect(msg: Returned) -> Report | None:
    blocks: list[dict[str, str]] = []
    mentioned = b"delivery-status" in msg.raw_lower
    for part in msg.parts_of("message/delivery-status", "message/global-delivery-status") if mentioned else ():
        blocks.extend(_blocks_of(part, msg.charsets))
    if not any(_is_recipient_block(b) for b in blocks) and msg.anywhere("delivery-status"):
        # A bounce forwarded as an attachment still reports on our message.
        for part in msg.nested_parts:
            if part.get_content_type() in ("message/delivery-status", "message/global-delivery-status"):
                blocks.extend(_blocks_of(part, msg.charsets))
    if not any(_is_recipient_block(b) for b in blocks):
        # Some MTAs put the DSN fields into a text part instead.
        for part in msg.text_parts:
            text = msg.text_of(part)
            if "final-recipient:" in text.lower() or "original-recipient:" in text.lower():
                blocks.extend(parse_fields(text))
    results = recipients_from_blocks(blocks, msg.report_text, msg.subject)
    results = [r for r in results if not (r.address and is_system_address(r.address) and len(results) > 1)]
    _repair_addresses(msg, results)
    if not results:
        return None
    kind, chosen = overall(results)
    return Report(kind=kind, recipients=chosen)


# "<a@b>... Host unknown" or "<a@b>: 550 ..." in the human-readable part or a transcript.
_TRANSCRIPT_ADDRESS = re.compile(r'<("[^"\n<>]{1,62}"@[\w.-]{1,255}|[^\s<>@"]{1,64}@[\w.-]{1,255})>(?:\.\.\.|:)')


def fallback_addresses(msg: Returned) -> list[str]:
    """Where a DSN's recipient field is unusable: X-Failed-Recipients, the transcript, the original's To."""
    own = own_addresses(msg)
    listed = [a for a in failed_recipients_header(msg) if candidate(a, own)]
    if listed:
        return listed
    seen: list[str] = []
    for match in _TRANSCRIPT_ADDRESS.finditer(msg.report_text[:65536]):
        address = match.group(1)
        if usable(address) and candidate(address, own) and address.lower() not in (s.lower() for s in seen):
            seen.append(address)
    if seen:
        return seen
    return [a for a in find_addresses(msg.original_header("To")) if candidate(a, own)]


def _repair_addresses(msg: Returned, results: list[RecipientResult]) -> None:
    """Give recipients whose DSN field names no usable address one from the fallbacks (in order)."""
    broken = [r for r in results if not usable(r.address)]
    if not broken:
        return
    known = {(r.address or "").lower() for r in results if usable(r.address)}
    spare = [a for a in fallback_addresses(msg) if a.lower() not in known]
    for recipient, address in zip(broken, spare, strict=False):
        field = recipient.evidence.get("recipient", "the DSN recipient field")
        recipient.evidence["recipient"] = f"{field} is unusable; {address} taken from {_source(msg, address)}"
        recipient.address = address


def _source(msg: Returned, address: str) -> str:
    if address.lower() in (a.lower() for a in failed_recipients_header(msg)):
        return "X-Failed-Recipients"
    if address.lower() in msg.report_text.lower():
        return "the report text / transcript"
    return "the original message's To"
