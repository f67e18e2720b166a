"""Trend Micro InterScan (MSS / IMSS) reports: "Sent <<< RCPT TO:<a>" then "Received >>> 550 ...".

When only "Unable to deliver message to <a>" is left (no transcript), the address is certain and
the reason is not: the text decides, else it stays undetermined.
"""

from __future__ import annotations

from mailtrack.bounces.addresses import find_addresses
from mailtrack.bounces.detectors.common import build
from mailtrack.bounces.message import Returned
from mailtrack.bounces.model import Report

NAME = "interscan"


def detect(msg: Returned) -> Report | None:
    if not msg.mentions("sent <<< rcpt to:", "unable to deliver message to <"):
        return None
    lines = msg.lines
    found: list[tuple[str | None, str]] = []
    for index, line in enumerate(lines):
        low = line.strip().lower()
        if low.startswith("sent <<< rcpt to:"):
            address = find_addresses(line, limit=1)
            reply = next((n.strip() for n in lines[index + 1 : index + 4] if n.strip()), "")
            if address and reply.lower().startswith("received >>>"):
                found.append((address[0], reply[len("received >>>") :].strip()))
    if not found:
        for line in lines:
            if "unable to deliver message to <" in line.lower():
                found.extend((a, line.strip()) for a in find_addresses(line, limit=5))
    return build(msg, found, "\n".join(lines))
