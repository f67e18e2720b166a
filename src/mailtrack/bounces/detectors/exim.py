"""Exim (and its imitators: Mail.Ru, 1&1, GMX, MXLogic): indented addresses after a marker."""

from __future__ import annotations

from mailtrack.bounces.addresses import find_addresses
from mailtrack.bounces.detectors.common import (
    QUOTED_HEADER,
    blocks_report,
    build,
    failed_recipients_header,
    find_line,
    marker_line,
)
from mailtrack.bounces.message import Returned
from mailtrack.bounces.model import Report

NAME = "exim"

_MARKERS = (
    "following address(es) failed", "following address failed", "following addresses failed",
    "address to which the message has not yet been delivered",
    "addresses to which the message has not yet been delivered",
    "could not be delivered to one or more of its", "could not be delivered to one or more recipients",
    "recipient addresses that were incorrectly constructed",
)  # fmt: skip


def detect(msg: Returned) -> Report | None:
    start = marker_line(msg, _MARKERS)
    if start is None:
        return None
    lines = msg.lines
    malformed = [line for line in lines[start:] if "malformed address:" in line]
    if malformed:
        # "  a@b <c@d>: malformed address: <c@d> may not follow a@b" is about c@d.
        found: list[tuple[str | None, str]] = []
        for line in malformed:
            named = find_addresses(line.partition(": malformed")[0])
            if named:
                found.append((named[-1], line))
        return build(msg, found, "\n".join(lines))
    # Exim states "failed:" on the marker line or the next one; the addresses follow.
    report = blocks_report(msg, lines, start + 1)
    if report is None and failed_recipients_header(msg):
        report = blocks_report(msg, lines, 0)
    if report is None:
        # "  an undisclosed address\n    (generated from a@b)": the address is not at the line start.
        stop = find_line(lines, "-----", start=start + 1)
        region = lines[start + 1 : stop if stop != -1 else start + 30]
        loose: list[tuple[str | None, str]] = [
            (a, "\n".join(region)) for line in region if not QUOTED_HEADER.match(line) for a in find_addresses(line)
        ]
        report = build(msg, loose, "\n".join(lines))
    return report
