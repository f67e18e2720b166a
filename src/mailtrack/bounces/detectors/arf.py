"""RFC 5965 abuse feedback reports (ARF), and Microsoft's JMRP complaints that resemble them."""

from __future__ import annotations

from email.message import Message

from mailtrack.bounces.addresses import clean_address, find_addresses, is_system_address
from mailtrack.bounces.detectors.dsn import parse_fields
from mailtrack.bounces.message import MAX_RECIPIENTS, Returned, part_text
from mailtrack.bounces.model import RecipientResult, Report

NAME = "arf"

# Feedback types that ask to stop mailing (the ARF drafts' "opt-out"), not "this is spam".
OPT_OUT = frozenset({"opt-out", "opt-out-list", "unsubscribe"})


def _fields(part: Message) -> list[tuple[str, str]]:
    """All "Name: value" pairs of a message/feedback-report part, repeated names kept."""
    payload = part.get_payload()
    pairs: list[tuple[str, str]] = []
    if isinstance(payload, list):
        for sub in payload:
            if isinstance(sub, Message):
                pairs.extend((k.lower(), str(v).strip()) for k, v in sub.items())
    if not pairs:
        text = part_text(part)
        for line in text.split("\n"):
            name, sep, value = line.partition(":")
            if sep and name and " " not in name.strip():
                pairs.append((name.strip().lower(), value.strip()))
        if not pairs:
            pairs = [(k, v) for block in parse_fields(text) for k, v in block.items()]
    return pairs


def _complaint(msg: Returned, fields: list[tuple[str, str]], feedback_type: str | None) -> Report:
    addresses: list[str] = []
    seen: set[str] = set()
    for name, value in fields:
        if name in ("original-rcpt-to", "removal-recipient") and len(addresses) < MAX_RECIPIENTS:
            address = clean_address(value)
            if address and address.lower() not in seen:
                seen.add(address.lower())
                addresses.append(address)
    if not addresses:
        for name in ("X-HmXmrOriginalRecipient", "To", "Delivered-To"):
            value = msg.original_header(name)
            found = [a for a in find_addresses(value) if not is_system_address(a)]
            if found:
                addresses = found
                break
    shown = ("feedback-type", "auth-failure", "source-ip", "user-agent")
    diagnostic = "; ".join(f"{k}: {v}" for k, v in fields if k in shown)[:500]
    # A report naming nobody yields no recipient (correlation then rests on the VERP / Message-ID).
    opt_out = (feedback_type or "") in OPT_OUT
    recipients = [
        RecipientResult(address=a, status=None, reason="unsubscribe" if opt_out else "feedback", hard=False,
                        diagnostic=diagnostic, action="unsubscribed" if opt_out else "complained",
                        evidence={"recipient": "ARF Original-Rcpt-To / Removal-Recipient or the original's To"})
        for a in addresses
    ]  # fmt: skip
    return Report(kind="unsubscribe" if opt_out else "complaint", recipients=recipients, feedback_type=feedback_type)


def detect(msg: Returned) -> Report | None:
    raw = msg.raw_lower
    reports = msg.parts_of("message/feedback-report") if b"feedback-report" in raw else []
    if reports:
        fields = _fields(reports[0])
        feedback_type = next((v.lower() for k, v in fields if k == "feedback-type"), None) or "abuse"
        return _complaint(msg, fields, feedback_type)
    if b"x-hmxmroriginalrecipient" in raw and msg.original_header("X-HmXmrOriginalRecipient"):
        return _complaint(msg, [], "abuse")
    return None
