"""Recipient delivery statuses, the table of legal transitions, and the event vocabulary.

Transition table (row = from, ✓ = allowed to enter column)::

    from \\ to   creating spooled sent deferred soft_bounce hard_bounce rejected
    (new)          ✓        ✓                                             ✓
    creating                ✓                                             ✓
    spooled                      ✓     ✓         ✓           ✓           ✓
    deferred                     ✓     ✓         ✓           ✓           ✓
    sent                                         ✓           ✓
    soft_bounce                                              ✓
    hard_bounce
    rejected

- ``sent → soft/hard_bounce``: a bounce report (DSN) can arrive after the receiving
  server answered 250.
- ``deferred → deferred``: every failed retry is recorded.
- ``soft_bounce → hard_bounce``: a later, more precise report may show the address is bad.
- ``spooled/deferred → rejected``: the address was suppressed while the email waited.

Opens, clicks, complaints, auto-replies and delay notices are *events*, never statuses.
"""

from __future__ import annotations

from enum import StrEnum


class Status(StrEnum):
    CREATING = "creating"
    SPOOLED = "spooled"
    SENT = "sent"
    DEFERRED = "deferred"
    SOFT_BOUNCE = "soft_bounce"
    HARD_BOUNCE = "hard_bounce"
    REJECTED = "rejected"


class EventType(StrEnum):
    """One vocabulary for store, API, stats and webhooks: every status plus engagement events."""

    CREATING = "creating"
    SPOOLED = "spooled"
    SENT = "sent"
    DEFERRED = "deferred"
    SOFT_BOUNCE = "soft_bounce"
    HARD_BOUNCE = "hard_bounce"
    REJECTED = "rejected"
    OPENED = "opened"
    CLICKED = "clicked"
    COMPLAINED = "complained"
    AUTO_REPLY = "auto_reply"
    DELAY_NOTICE = "delay_notice"
    UNSUBSCRIBED = "unsubscribed"  # one-click (RFC 8058) or mailto List-Unsubscribe


S = Status

TRANSITIONS: dict[Status | None, frozenset[Status]] = {
    None: frozenset({S.CREATING, S.SPOOLED, S.REJECTED}),
    S.CREATING: frozenset({S.SPOOLED, S.REJECTED}),
    S.SPOOLED: frozenset({S.SENT, S.DEFERRED, S.SOFT_BOUNCE, S.HARD_BOUNCE, S.REJECTED}),
    S.DEFERRED: frozenset({S.SENT, S.DEFERRED, S.SOFT_BOUNCE, S.HARD_BOUNCE, S.REJECTED}),
    S.SENT: frozenset({S.SOFT_BOUNCE, S.HARD_BOUNCE}),
    S.SOFT_BOUNCE: frozenset({S.HARD_BOUNCE}),
    S.HARD_BOUNCE: frozenset(),
    S.REJECTED: frozenset(),
}

FINAL: frozenset[Status] = frozenset({S.HARD_BOUNCE, S.REJECTED})
"""Statuses nothing can leave."""

PENDING: frozenset[Status] = frozenset({S.CREATING, S.SPOOLED, S.DEFERRED})
"""Statuses the delivery worker still has work for."""

STATUS_EVENTS: frozenset[str] = frozenset(s.value for s in Status)


def can_transition(current: Status | None, new: Status) -> bool:
    """True when a recipient in ``current`` may enter ``new``."""
    return new in TRANSITIONS[current]


# Order used to summarise an email from its recipients: the first status that any
# recipient is in names the email (a problem outranks progress, progress outranks done).
_SUMMARY_ORDER = (S.CREATING, S.SPOOLED, S.DEFERRED, S.HARD_BOUNCE, S.SOFT_BOUNCE, S.REJECTED, S.SENT)


def summarize(statuses: list[Status] | list[str]) -> str:
    """Summary status of an email: one status when all agree, else the most telling one + 'partial'."""
    present = {Status(s) for s in statuses}
    if not present:
        return "empty"
    if len(present) == 1:
        return next(iter(present)).value
    for s in _SUMMARY_ORDER:
        if s in present:
            if s in (S.CREATING, S.SPOOLED, S.DEFERRED):
                return s.value
            return "partial"
    return "partial"  # pragma: no cover - every Status is in _SUMMARY_ORDER


LABELS: dict[str, str] = {
    "creating": "Creating",
    "spooled": "Spooled",
    "sent": "Sent",
    "deferred": "Deferred",
    "soft_bounce": "Soft Bounce",
    "hard_bounce": "Hard Bounce",
    "rejected": "Rejected",
}

DESCRIPTIONS: dict[str, str] = {
    "creating": "The email was accepted and is being built.",
    "spooled": "Built and safely queued; waiting for the delivery worker.",
    "sent": "The receiving mail server accepted the email. It does not mean a person has read it.",
    "deferred": "A temporary problem (the server said 'try later' or could not be reached); "
    "mailtrack will retry automatically.",
    "soft_bounce": "Delivery failed for a reason that is not about the address itself "
    "(mailbox full, blocked as spam, retries ran out). The address may work later.",
    "hard_bounce": "The address does not work (unknown user or domain). It has been added to the "
    "suppression list.",
    "rejected": "Never sent: the address is on the suppression list.",
}
