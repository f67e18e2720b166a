"""Gmail / Google Workspace and Outlook.com style: "Delivery to the following recipient failed"."""

from __future__ import annotations

from mailtrack.bounces.detectors.common import blocks_report, marker_line
from mailtrack.bounces.message import Returned
from mailtrack.bounces.model import Kind, Report

NAME = "gmail"

_FAILED = (
    "the following recipient failed", "the following recipients failed",
    "** address not found **", "** message not delivered **",
    "delivery to these recipients or groups failed", "delivery to the following recipient has been delayed",
    "delivery to the following recipients has been delayed",
)  # fmt: skip


def detect(msg: Returned) -> Report | None:
    start = marker_line(msg, _FAILED)
    if start is None:
        return None
    lines = msg.lines
    kind: Kind | None = "delay" if "delayed" in lines[start].lower() else None
    return blocks_report(msg, lines, start + 1, kind=kind)
