"""Sendmail without DSN (and V5 sendmail): fatal-error lists and session transcripts."""

from __future__ import annotations

import re

from mailtrack.bounces.addresses import find_addresses, is_system_address
from mailtrack.bounces.detectors.common import address_blocks, build, find_line
from mailtrack.bounces.message import Returned
from mailtrack.bounces.model import Report

NAME = "sendmail"

_LIST_MARKERS = (
    "following addresses had permanent fatal errors", "following addresses had delivery errors",
    "following addresses had delivery problems", "following addresses had transient non-fatal errors",
    "following address had permanent fatal errors", "following addresses had permanent errors",
)  # fmt: skip
_TRANSCRIPT = "transcript of session follows"
# Sendmail's own verdict line in a transcript: "550 5.1.1 <a@b>... User unknown".
# The code is left out when sendmail reports its own verdict: "<a@b>... Host unknown (Name server: ...)".
_VERDICT = re.compile(r"^\s*(?:([45]\d\d)[ -](?:[45]\.\d{1,3}\.\d{1,3}[ \t]+)?)?<?([^\s<>]{1,320})>?\.\.\.[ \t]*(.*)")


def _transcript(lines: list[str], start: int) -> list[tuple[str | None, str]]:
    found: list[tuple[str | None, str]] = []
    previous = ""
    for line in lines[start : start + 400]:
        match = _VERDICT.match(line)
        if match and "@" in match.group(2):
            address = find_addresses(match.group(2), limit=1)
            if address:
                diagnostic = line.strip()
                if previous.startswith("<<<"):
                    diagnostic = previous[3:].strip() + " " + diagnostic
                found.append((address[0], diagnostic))
        if line.strip():
            previous = line.strip()
    return found


def detect(msg: Returned) -> Report | None:
    if not msg.mentions(*_LIST_MARKERS, _TRANSCRIPT):
        return None
    lines = msg.lines
    listed = find_line(lines, *_LIST_MARKERS)
    transcript = find_line(lines, _TRANSCRIPT)
    if listed == -1 and transcript == -1:
        return None
    verdicts = _transcript(lines, transcript) if transcript != -1 else []
    found: list[tuple[str | None, str]] = []
    if listed != -1:
        stop = find_line(lines, "-----", start=listed + 1)
        by_address = {a.lower(): d for a, d in verdicts if a}
        for address, block in address_blocks(lines, listed + 1, stop if stop != -1 else None):
            text = by_address.get(address.lower(), block)
            found.append((address, text))
            for extra in find_addresses(block)[1:]:
                if not is_system_address(extra):
                    found.append((extra, text))
    if not found:
        found = verdicts
    return build(msg, found, "\n".join(lines))
