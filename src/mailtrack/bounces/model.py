"""What the bounce parser reports about one returned message."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

Kind = Literal["bounce", "delay", "complaint", "unsubscribe", "autoreply", "delivered", "unknown"]
KINDS: tuple[Kind, ...] = ("bounce", "delay", "complaint", "unsubscribe", "autoreply", "delivered", "unknown")
Confidence = Literal["high", "medium", "low"]


@dataclass
class RecipientResult:
    """The outcome for one recipient named in the report.

    ``status`` is the enhanced code ("5.1.1"; "5.0.0"/"4.0.0" when only the class is known),
    ``reason`` and ``hard`` come from ``mailtrack.domain.reasons``, ``action`` is the DSN action
    (failed, delayed, delivered) or complained / autoreplied / unsubscribed.
    ``hard`` is None when neither the code nor the text decides (``confidence`` "low" then):
    treat that recipient as soft, never suppress on it. ``evidence`` says what decided, for
    ``mailtrack bounce explain``.
    """

    address: str | None
    status: str | None
    reason: str
    hard: bool | None
    diagnostic: str = ""
    action: str | None = None
    remote_mta: str | None = None
    confidence: Confidence = "high"
    evidence: dict[str, str] = field(default_factory=dict)


@dataclass
class Report:
    """A parsed bounce, delay notice, complaint, auto-reply or delivery notice.

    ``engine`` names the detector that recognised the message ("dsn", "arf", "exim", "text"…),
    "none" when none did and "error" when the input broke the parser (kind "unknown" for both).
    Kind "unsubscribe" (an ARF opt-out report, an Apple Mail unsubscribe notice) asks to stop
    mailing the recipient: suppress with source ``unsubscribe``, not as a complaint or auto-reply.
    """

    kind: Kind
    recipients: list[RecipientResult] = field(default_factory=list)
    feedback_type: str | None = None
    original_message_id: str | None = None
    mailtrack_id: str | None = None
    envelope_hints: list[str] = field(default_factory=list)
    engine: str = "none"
