"""DragonFly Mail Agent (dma): "There was an error delivering your mail to <address>."."""

from __future__ import annotations

from mailtrack.bounces.addresses import find_addresses
from mailtrack.bounces.detectors.common import build, find_line
from mailtrack.bounces.message import Returned
from mailtrack.bounces.model import Report

NAME = "dragonfly"


def detect(msg: Returned) -> Report | None:
    if not msg.mentions("there was an error delivering your mail to"):
        return None
    lines = msg.lines
    start = find_line(lines, "there was an error delivering your mail to")
    if start == -1:
        return None
    addresses = find_addresses(lines[start], limit=1)
    if not addresses:
        return None
    diagnostic = "\n".join(line for line in lines[start + 1 : start + 30] if line.strip())
    return build(msg, [(addresses[0], diagnostic)], "\n".join(lines))
