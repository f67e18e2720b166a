"""What the simulator saw and did, kept in memory so tests (and the demo) can look."""

from __future__ import annotations

import time
from collections import Counter, deque
from dataclasses import dataclass, field
from email import policy
from email.message import EmailMessage
from email.parser import BytesHeaderParser
from functools import cached_property
from typing import cast

from .behaviours import Behaviour

KEEP_DEFAULT = 10_000

# Keys of ``SimulatorState.counts`` besides the behaviour names.
RELAY_DENIED = "relay_denied"
TOO_BIG = "too_big"
DISCONNECTED = "disconnected"


def split_headers(content: bytes) -> bytes:
    """The header block of a raw message, without the blank line that ends it."""
    for separator in (b"\r\n\r\n", b"\n\n"):
        end = content.find(separator)
        if end != -1:
            return content[:end]
    return content


@dataclass(frozen=True)
class ReceivedMessage:
    """One accepted message: its envelope and raw header block (the body is not kept)."""

    mail_from: str
    rcpt_tos: tuple[str, ...]
    behaviours: tuple[Behaviour, ...]
    size: int
    raw_headers: bytes
    received_at: float = field(default_factory=time.time)

    @cached_property
    def headers(self) -> EmailMessage:
        """The headers parsed on first use: ``msg.headers["Message-ID"]``."""
        parser = BytesHeaderParser(policy=policy.default)
        return cast(EmailMessage, parser.parsebytes(self.raw_headers + b"\r\n\r\n"))


@dataclass(frozen=True)
class FollowupResult:
    """The outcome of one after-delivery action (a report sent, a URL loaded)."""

    behaviour: Behaviour
    recipient: str
    action: str  # "dsn", "arf", "auto_reply", "open" or "click"
    target: str  # the address the report went to, or the URL loaded
    ok: bool
    detail: str  # the SMTP reply, the HTTP status, or the error
    at: float = field(default_factory=time.time)


class SimulatorState:
    """Counters per behaviour, the last accepted messages and follow-up results.

    ``counts`` is keyed by behaviour name (one per RCPT, refused or not) plus
    ``relay_denied``, ``too_big`` and ``disconnected``.
    """

    def __init__(self, keep: int = KEEP_DEFAULT) -> None:
        self.counts: Counter[str] = Counter()
        self.messages: deque[ReceivedMessage] = deque(maxlen=keep)
        self.followups: deque[FollowupResult] = deque(maxlen=keep)
        self.accepted_total = 0
        self._attempts: dict[str, int] = {}

    def attempt(self, address: str) -> int:
        """Count one more RCPT attempt for ``address`` (case-insensitive); return the count."""
        key = address.lower()
        count = self._attempts.get(key, 0) + 1
        self._attempts[key] = count
        return count

    def record_message(
        self, mail_from: str, rcpt_tos: tuple[str, ...], behaviours: tuple[Behaviour, ...], content: bytes
    ) -> ReceivedMessage:
        message = ReceivedMessage(mail_from, rcpt_tos, behaviours, len(content), split_headers(content))
        self.messages.append(message)
        self.accepted_total += 1
        return message

    def messages_to(self, address: str) -> list[ReceivedMessage]:
        """The kept messages that had ``address`` among their recipients."""
        wanted = address.lower()
        return [m for m in self.messages if any(r.lower() == wanted for r in m.rcpt_tos)]

    def results_for(self, recipient: str) -> list[FollowupResult]:
        wanted = recipient.lower()
        return [r for r in self.followups if r.recipient.lower() == wanted]

    def clear(self) -> None:
        """Forget everything, attempt counters included."""
        self.counts.clear()
        self.messages.clear()
        self.followups.clear()
        self.accepted_total = 0
        self._attempts.clear()
