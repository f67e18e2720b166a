"""parse_message: raw bytes in, a Report out, never an exception."""

from __future__ import annotations

from mailtrack.bounces.detectors import DETECTORS
from mailtrack.bounces.message import Returned
from mailtrack.bounces.model import Report


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
    report.original_message_id = msg.original_message_id
    report.mailtrack_id = msg.mailtrack_id
    report.envelope_hints = msg.envelope_hints
    return report
