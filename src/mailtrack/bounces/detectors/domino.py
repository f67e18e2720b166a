"""Lotus Domino and similar "was not delivered to: ... because: ..." reports."""

from __future__ import annotations

from mailtrack.bounces.addresses import find_addresses
from mailtrack.bounces.detectors.common import build, find_line
from mailtrack.bounces.message import Returned
from mailtrack.bounces.model import Report

NAME = "domino"

# Notes/Domino writes its report in the server's language: en, de, fr, es, pt.
_NOT_DELIVERED = (
    "was not delivered to:", "could not be delivered to:", "wurde nicht zugestellt an:",
    "konnte nicht zugestellt werden an:", "n'a pas été remis à :", "n'a pas été remis à:",
    "n'a pas été distribué à :", "no se ha entregado a:", "no fue entregado a:", "não foi entregue a:",
    "não foi entregue para:",
)  # fmt: skip
_BECAUSE = ("because:", "reason:", "weil:", "grund:", "parce que :", "parce que:", "raison :", "porque:", "motivo:")


def detect(msg: Returned) -> Report | None:
    if not msg.mentions(*_NOT_DELIVERED):
        return None
    lines = msg.lines
    start = find_line(lines, *_NOT_DELIVERED)
    if start == -1:
        return None
    because = find_line(lines, *_BECAUSE, start=start)
    stop = because if because != -1 else min(len(lines), start + 10)
    reason = "\n".join(lines[because + 1 : because + 8]).strip() if because != -1 else ""
    found: list[tuple[str | None, str]] = []
    for line in lines[start : stop + 1] if because == -1 else lines[start:stop]:
        found.extend((a, reason or line) for a in find_addresses(line))
    return build(msg, found, "\n".join(lines))
