"""What the bounce parser reports about one returned message."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

Kind = Literal["bounce", "delay", "complaint", "autoreply", "delivered", "unknown"]
KINDS: tuple[Kind, ...] = ("bounce", "delay", "complaint", "autoreply", "delivered", "unknown")


@dataclass
class RecipientResult:
    """The outcome for one recipient named in the report."""

    address: str | None
    status: str | None
    reason: str
    hard: bool
    diagnostic: str = ""
    action: str | None = None
    remote_mta: str | None = None


@dataclass
class Report:
    """A parsed bounce, delay notice, complaint, auto-reply or delivery notice."""

    kind: Kind
    recipients: list[RecipientResult] = field(default_factory=list)
    feedback_type: str | None = None
    original_message_id: str | None = None
    mailtrack_id: str | None = None
    envelope_hints: list[str] = field(default_factory=list)
    engine: str = "none"
