"""What a recipient does, chosen by its local part (``bounce+x@sim.mailtrack.test`` → bounce)."""

from __future__ import annotations

from enum import StrEnum

from . import replies


class Behaviour(StrEnum):
    """One simulated mailbox; the value is the local part that selects it."""

    SUCCESS = "success"
    BOUNCE = "bounce"
    MAILBOX_FULL = "mailbox-full"
    BLOCKED = "blocked"
    DEFER = "defer"
    DEFER_THEN_ACCEPT = "defer-then-accept"
    RATE_LIMIT = "rate-limit"
    SLOW = "slow"
    DISCONNECT = "disconnect"
    LATE_BOUNCE = "late-bounce"
    COMPLAINT = "complaint"
    OOTO = "ooto"
    OPEN = "open"
    CLICK = "click"


# Refused at RCPT time, every time.
REFUSALS: dict[Behaviour, str] = {
    Behaviour.BOUNCE: replies.USER_UNKNOWN,
    Behaviour.MAILBOX_FULL: replies.MAILBOX_FULL,
    Behaviour.BLOCKED: replies.POLICY_BLOCK,
    Behaviour.DEFER: replies.TRY_AGAIN,
    Behaviour.RATE_LIMIT: replies.RATE_LIMITED,
}

# Accepted with 250, then something happens a little later (see followup.py).
FOLLOWUPS = frozenset({Behaviour.LATE_BOUNCE, Behaviour.COMPLAINT, Behaviour.OOTO, Behaviour.OPEN, Behaviour.CLICK})

# How many RCPT attempts a defer-then-accept address is refused before it is accepted.
DEFERRALS_BEFORE_ACCEPT = 2

_BY_LOCAL_PART = {behaviour.value: behaviour for behaviour in Behaviour}


def normalise_domain(domain: str) -> str:
    """Lower case, without a trailing dot: the form ``behaviour_of`` expects."""
    return domain.strip().rstrip(".").lower()


def behaviour_of(address: str, domain: str) -> Behaviour | None:
    """The behaviour of ``address``, or None when it is not in ``domain`` (normalised)."""
    local_part, at, address_domain = address.rpartition("@")
    if not at or address_domain.rstrip(".").lower() != domain:
        return None
    base = local_part.partition("+")[0].lower()
    return _BY_LOCAL_PART.get(base, Behaviour.SUCCESS)
