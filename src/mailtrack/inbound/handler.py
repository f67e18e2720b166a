"""The aiosmtpd handler: which recipients are ours (never a relay), and what DATA answers."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable

from aiosmtpd.smtp import SMTP, Envelope, Session

RCPT_OK = "250 2.1.5 OK"
RELAY_DENIED = "550 5.7.1 relaying denied"
NO_MAILBOX = "550 5.1.1 no such mailbox here"
TOO_MANY_RCPTS = "452 4.5.3 too many recipients"
QUEUED = "250 2.0.0 OK: report received"
TOO_BIG = "552 5.3.4 message too big"
HEADER_TOO_BIG = "552 5.3.4 message header too large"
TOO_COMPLEX = "552 5.3.4 MIME structure too complex"
TRY_LATER = "451 4.3.0 temporary failure storing the message, try again later"
SESSION_TOO_LONG = "421 4.4.2 session too long, closing"
TOO_MANY_CONNECTIONS = "421 4.7.0 too many connections, try again later"
TOO_MANY_FROM_YOU = "421 4.7.0 too many connections from your address, try again later"
IDLE_TIMEOUT = "421 4.4.2 idle too long, closing"
NO_PROGRESS = "421 4.4.2 no message in time, closing"

FEEDBACK_LOCALS = frozenset({"fbl", "abuse", "postmaster"})
# The shape of a VERP local part: the token is checked later, so a forged one is kept (as an orphan).
_VERP_LOCAL = re.compile(r"bounces\+[0-9a-z-]{1,200}")
_UNSUB_LOCAL = re.compile(r"unsubscribe\+[0-9a-z-]{1,200}")

Accept = Callable[[str, list[str], bytes], Awaitable[str]]


def is_ours(address: str, bounce_domain: str, return_paths: frozenset[str] = frozenset()) -> bool | None:
    """True for a bounce/feedback/unsubscribe address; False for another local part of the bounce domain or a
    sending domain's return-path host (where only VERP is ours); None elsewhere."""
    local, at, domain = address.strip().strip("<>").rpartition("@")
    if not at and domain.lower() == "postmaster":
        return True  # RFC 5321 §4.5.1: a bare <Postmaster> must be accepted
    domain = domain.lower().rstrip(".")
    local = local.lower()
    if at and domain in return_paths:
        return _VERP_LOCAL.fullmatch(local) is not None
    if not at or domain != bounce_domain.lower():
        return None
    return (local in FEEDBACK_LOCALS or _VERP_LOCAL.fullmatch(local) is not None
            or _UNSUB_LOCAL.fullmatch(local) is not None)


class InboundHandler:
    """Accepts only our bounce and feedback addresses; hands each message to ``accept`` for storage."""

    def __init__(self, bounce_domain: str, accept: Accept, max_recipients: int,
                 return_paths: Callable[[], frozenset[str]] = frozenset) -> None:
        self.bounce_domain = bounce_domain.lower().rstrip(".")
        self.return_paths = return_paths
        self.accept = accept
        self.max_recipients = max_recipients

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, rcpt_options: list[str]
    ) -> str:
        ours = is_ours(address, self.bounce_domain, self.return_paths())
        if ours is None:
            return RELAY_DENIED
        if not ours:
            return NO_MAILBOX
        if len(envelope.rcpt_tos) >= self.max_recipients:
            return TOO_MANY_RCPTS
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        _progressed(server)
        return RCPT_OK

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        reply = await self.accept(envelope.mail_from or "", list(envelope.rcpt_tos), envelope.original_content or b"")
        _progressed(server)
        return reply


def _progressed(server: SMTP) -> None:
    progressed = getattr(server, "progressed", None)  # the inbound server's session; a bare SMTP in tests
    if progressed is not None:
        progressed()
