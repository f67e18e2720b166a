"""Microsoft Exchange / Office 365 non-DSN reports: "did not reach the following recipient(s)"."""

from __future__ import annotations

from mailtrack.bounces.addresses import find_addresses
from mailtrack.bounces.detectors.common import build, marker_line
from mailtrack.bounces.message import Returned
from mailtrack.bounces.model import Report

NAME = "exchange"

_MARKERS = (
    "did not reach the following recipient", "delivery has failed to these recipients",
    "rejected your message to the following email address", "could not be delivered to the following user",
    "your message did not reach some or all of the intended recipients",
    "the following recipient(s) cannot be reached", "following recipient(s) could not be reached",
)  # fmt: skip


def detect(msg: Returned) -> Report | None:
    start = marker_line(msg, _MARKERS)
    if start is None:
        return None
    lines = msg.lines
    found: list[tuple[str | None, str]] = []
    current: list[str] = []
    address: str | None = None
    for line in lines[start + 1 : start + 200]:
        # Recipients start at the left margin; their details are indented.
        if line.strip() and not line[0].isspace():
            addresses = find_addresses(line, limit=1)
            if addresses and (address is None or addresses[0].lower() != address.lower()):
                if address:
                    found.append((address, "\n".join(current)))
                address, current = addresses[0], [line]
                continue
        if address:
            current.append(line)
    if address:
        found.append((address, "\n".join(current)))
    return build(msg, found, "\n".join(lines))
