"""Postfix without a DSN part, and other MTAs listing "address: reason" lines (OpenSMTPD)."""

from __future__ import annotations

from mailtrack.bounces.detectors.common import blocks_report, marker_line
from mailtrack.bounces.message import Returned
from mailtrack.bounces.model import Report

NAME = "postfix"

_MARKERS = (
    "this is the mail system at host", "this is the postfix program",
    "could not be delivered to one or more destinations",
    "an error has occurred while attempting to deliver a message for",
    "your message could not be delivered to one or more recipients",
)  # fmt: skip


def detect(msg: Returned) -> Report | None:
    start = marker_line(msg, _MARKERS)
    if start is None:
        return None
    lines = msg.lines
    return blocks_report(msg, lines, start + 1)
