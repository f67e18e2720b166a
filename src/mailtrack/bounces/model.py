"""What the bounce parser reports about one returned message."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

Kind = Literal["bounce", "delay", "complaint", "autoreply", "delivered", "unknown"]
KINDS: tuple[Kind, ...] = ("bounce", "delay", "complaint", "autoreply", "delivered", "unknown")


@dataclass
class RecipientResult:
    """The outcome for one recipient named in the report.

    ``status`` is the enhanced code ("5.1.1"; "5.0.0"/"4.0.0" when only the class is known),
    ``reason`` and ``hard`` come from ``mailtrack.domain.reasons``, ``action`` is the DSN action
    (failed, delayed, delivered) or complained / autoreplied.
    """

    address: str | None
    status: str | None
    reason: str
    hard: bool
    diagnostic: str = ""
    action: str | None = None
    remote_mta: str | None = None


@dataclass
class Report:
    """A parsed bounce, delay notice, complaint, auto-reply or delivery notice.

    ``engine`` names the detector that recognised the message ("dsn", "arf", "exim", "text"…),
    "none" when none did and "error" when the input broke the parser (kind "unknown" for both).
    """

    kind: Kind
    recipients: list[RecipientResult] = field(default_factory=list)
    feedback_type: str | None = None
    original_message_id: str | None = None
    mailtrack_id: str | None = None
    envelope_hints: list[str] = field(default_factory=list)
    engine: str = "none"
