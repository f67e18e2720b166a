"""qmail-send and look-alikes (Yahoo, vpopmail, X2/X4 hosts): "<address>:" then the reason."""

from __future__ import annotations

from mailtrack.bounces.detectors.common import blocks_report, marker_line
from mailtrack.bounces.message import Returned
from mailtrack.bounces.model import Report

NAME = "qmail"

_MARKERS = (
    "this is the qmail-send program", "i'm afraid i wasn't able to deliver your message",
    "unable to deliver your message to the following address", "unable to deliver message to the following",
    "could not be delivered. this is a permanent error", "following address(es) could not be delivered",
    "the following addresses", "this is a permanent error; i've given up",
)  # fmt: skip


def detect(msg: Returned) -> Report | None:
    start = marker_line(msg, _MARKERS)
    if start is None:
        return None
    lines = msg.lines
    # Only "<address>:" lines lead a qmail block.
    for index in range(start, len(lines)):
        stripped = lines[index].strip()
        if stripped.startswith("<") and stripped.endswith(">:"):
            return blocks_report(msg, lines, index)
    return None
