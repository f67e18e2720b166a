"""parse_message: raw bytes in, a Report out, never an exception."""

from __future__ import annotations

from mailtrack.bounces.addresses import find_addresses
from mailtrack.bounces.detectors import DETECTORS
from mailtrack.bounces.message import Returned
from mailtrack.bounces.model import RecipientResult, Report

# Verdicts on a domain or an address: when they name the sender's domain, they are about the sender.
_ADDRESS_REASONS = frozenset({"user_unknown", "host_unknown", "not_accept", "has_moved"})


def parse_message(raw: bytes) -> Report:
    """Parse one returned message; anything unrecognisable or broken gives kind "unknown"."""
    try:
        return _parse(raw)
    except Exception:  # the parser must never fail on hostile input
        return Report(kind="unknown", engine="error")


def _parse(raw: bytes) -> Report:
    if not isinstance(raw, bytes | bytearray | memoryview):
        return Report(kind="unknown", engine="error")
    msg = Returned(bytes(raw))
    report = Report(kind="unknown")
    for name, detect in DETECTORS:
        found = detect(msg)
        if found is not None:
            report = found
            report.engine = name
            break
    senders: set[str] | None = None
    for recipient in report.recipients:
        if recipient.reason in _ADDRESS_REASONS:
            senders = sender_domains(msg) if senders is None else senders
            _about_sender(senders, recipient)
    report.original_message_id = msg.original_message_id
    report.mailtrack_id = msg.mailtrack_id
    report.envelope_hints = msg.envelope_hints
    return report


def sender_domains(msg: Returned) -> set[str]:
    """Domains of the original sender and of the bounce's addressee (our return path)."""
    found: set[str] = set()
    for value in (msg.header("To"), msg.original_header("From"), msg.original_header("Return-Path"),
                  msg.original_header("Sender"), *msg.envelope_hints):
        found.update(a.rsplit("@", 1)[1].lower() for a in find_addresses(value, limit=5))
    return found


def _about_sender(senders: set[str], recipient: RecipientResult) -> None:
    """A 5xx "unknown" that names the sender's domain (and not the recipient's) says nothing of the recipient."""
    if recipient.reason not in _ADDRESS_REASONS or not recipient.address or "@" not in recipient.address:
        return
    text = recipient.diagnostic.lower()
    own = recipient.address.rsplit("@", 1)[1].lower()
    # "<someone@sender.example>... User unknown" is an alias of the recipient there, not the sender's domain
    named = [d for d in senders if d != own and _names_domain(text, d)]
    if named and own not in text:
        recipient.reason, recipient.hard, recipient.confidence = "rejected", False, "high"
        recipient.evidence["decided by"] = f"the failure names the sender's domain {named[0]}, not the recipient's"


def _names_domain(text: str, domain: str) -> bool:
    """True when the text names the domain on its own (not as part of an address or a longer name)."""
    at = text.find(domain)
    while at != -1:
        before = text[at - 1] if at else " "
        end = at + len(domain)
        after = text[end] if end < len(text) else " "
        if not (before.isalnum() or before in "@.-_") and not (after.isalnum() or after in "-_"):
            return True
        at = text.find(domain, at + 1)
    return False
