"""parse_message: raw bytes in, a Report out, never an exception."""

from __future__ import annotations

import re

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
    for recipient in report.recipients:
        _about_sender(msg, recipient)
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


def _about_sender(msg: Returned, recipient: RecipientResult) -> None:
    """A 5xx "unknown" that names the sender's domain (and not the recipient's) says nothing of the recipient."""
    if recipient.reason not in _ADDRESS_REASONS or not recipient.address or "@" not in recipient.address:
        return
    text = recipient.diagnostic.lower()
    own = recipient.address.rsplit("@", 1)[1].lower()
    # "<someone@sender.example>... User unknown" is an alias of the recipient there, not the sender's domain
    named = [d for d in sender_domains(msg) if d != own and re.search(rf"(?<![@\w.-]){re.escape(d)}\b", text)]
    if named and own not in text:
        recipient.reason, recipient.hard, recipient.confidence = "rejected", False, "high"
        recipient.evidence["decided by"] = f"the failure names the sender's domain {named[0]}, not the recipient's"
