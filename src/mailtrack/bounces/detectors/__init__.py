"""Bounce detectors: each module has ``NAME`` and ``detect(msg) -> Report | None``; tried in order."""

from __future__ import annotations

from collections.abc import Callable

from mailtrack.bounces.detectors import (
    arf,
    autoreply,
    domino,
    dragonfly,
    dsn,
    exchange,
    exim,
    fallback,
    gmail,
    interscan,
    mailinglist,
    postfix,
    qmail,
    sendmail,
    ses,
    unsubscribe,
)
from mailtrack.bounces.message import Returned
from mailtrack.bounces.model import Report

Detector = Callable[[Returned], Report | None]

# Most specific first: structured reports, then known plain-text formats, then guesses.
DETECTORS: tuple[tuple[str, Detector], ...] = tuple(
    (module.NAME, module.detect)
    for module in (
        arf, unsubscribe, dsn, ses, exim, qmail, sendmail, postfix, gmail, exchange, domino, dragonfly, interscan,
        mailinglist, autoreply,
        fallback,
    )
)  # fmt: skip
