"""Lotus Domino and similar "was not delivered to: ... because: ..." reports."""

from __future__ import annotations

from mailtrack.bounces.addresses import find_addresses
from mailtrack.bounces.detectors.common import build, find_line
from mailtrack.bounces.message import Returned
from mailtrack.bounces.model import Report

NAME = "domino"


def detect(msg: Returned) -> Report | None:
    if not msg.mentions("was not delivered to:", "could not be delivered to:"):
        return None
    lines = msg.lines
    start = find_line(lines, "was not delivered to:", "could not be delivered to:")
    if start == -1:
        return None
    because = find_line(lines, "because:", "reason:", start=start)
    stop = because if because != -1 else min(len(lines), start + 10)
    reason = "\n".join(lines[because + 1 : because + 8]).strip() if because != -1 else ""
    found: list[tuple[str | None, str]] = []
    for line in lines[start : stop + 1] if because == -1 else lines[start:stop]:
        found.extend((a, reason or line) for a in find_addresses(line))
    return build(msg, found, "\n".join(lines))
