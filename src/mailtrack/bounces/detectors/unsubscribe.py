"""Unsubscribe requests mailed to a List-Unsubscribe mailto: address (Apple Mail's among them).

Apple Mail's "Unsubscribe" button sends a message marked ``X-Apple-Unsubscribe: true`` from the
recipient's own address; other clients send a plain message whose subject is "unsubscribe".
Either way the sender asks to be taken off: kind "unsubscribe", never an auto-reply.
"""

from __future__ import annotations

from mailtrack.bounces.addresses import clean_address, is_system_address
from mailtrack.bounces.message import Returned
from mailtrack.bounces.model import RecipientResult, Report

NAME = "unsubscribe"

_SUBJECTS = frozenset({"unsubscribe", "unsubscribe me", "remove", "remove me"})


def detect(msg: Returned) -> Report | None:
    apple = msg.header("X-Apple-Unsubscribe").strip().lower() in ("true", "yes", "1")
    if not apple and msg.subject.strip().lower() not in _SUBJECTS:
        return None
    sender = clean_address(msg.header("Reply-To") if not msg.header("From") else msg.header("From"))
    if not sender or is_system_address(sender):
        return None
    why = "header X-Apple-Unsubscribe: true" if apple else f'subject "{msg.subject.strip()}"'
    recipient = RecipientResult(
        address=sender,
        status=None,
        reason="unsubscribe",
        hard=False,
        diagnostic=("Apple Mail unsubscribe request" if apple else "unsubscribe request"),
        action="unsubscribed",
        evidence={"recipient": "the request's From", "decided by": why},
    )
    return Report(kind="unsubscribe", recipients=[recipient])
