"""Plain words for a recipient's reason: a one-line summary, what to do next, and the raw reply kept apart.

The reason code comes from the one vocabulary in ``domain.reasons``; this module only gives each code
the words a dispatcher reads ("The mailbox does not exist"), never a second classification.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from ..domain.reasons import classify_status, find_enhanced

# reason code → (summary, what to do next)
WORDS: dict[str, tuple[str, str]] = {
    "user_unknown": ("The mailbox does not exist",
                     "Check the spelling or ask the customer for a current address."),
    "host_unknown": ("The domain does not exist or has no mail server",
                     "Check the part after the @ for a typo."),
    "has_moved": ("The person has moved and this address is no longer used",
                  "Ask the customer for their new address."),
    "not_accept": ("The domain does not accept email",
                   "Use a different address for this contact."),
    "mailbox_full": ("The mailbox is full",
                     "Send again later, or reach the person another way."),
    "message_too_big": ("The email is too large for the receiving server",
                        "Send it again with smaller attachments."),
    "exceed_limit": ("The email is over the receiving server's size limit",
                     "Send it again with smaller attachments."),
    "system_full": ("The receiving server is out of disk space",
                    "Nothing to change on your side; send again later."),
    "blocked": ("Our sending server is on a block list at the receiver",
                "Tell your mail administrator; reach the person another way meanwhile."),
    "bad_reputation": ("The receiver refused mail because of the sender's reputation",
                       "Tell your mail administrator."),
    "require_ptr": ("The receiver wants reverse DNS for our sending server",
                    "Tell your mail administrator (PTR record)."),
    "auth_failure": ("The receiver could not verify the sender (SPF, DKIM or DMARC)",
                     "Tell your mail administrator to check the sending domain's DNS records."),
    "no_relaying": ("The receiving server refused to pass the email on",
                    "Check the address; tell your mail administrator if it is right."),
    "spam_detected": ("Blocked as spam by the receiving server",
                      "Check the content and links; ask the recipient to allow your address."),
    "policy_violation": ("Refused by the receiver's policy",
                         "Ask the recipient to allow your address."),
    "security_error": ("Refused by the receiver's security settings",
                       "Tell your mail administrator."),
    "virus_detected": ("The receiver thinks an attachment contains a virus",
                       "Check the attachment and send it again."),
    "content_error": ("The receiving server could not read the email's content",
                      "Tell your mail administrator."),
    "not_compliant_rfc": ("The email's format was refused as non-standard",
                          "Tell your mail administrator."),
    "syntax_error": ("The servers could not understand each other",
                     "Tell your mail administrator."),
    "suspended": ("The mailbox is disabled or suspended",
                  "Ask the customer for a current address."),
    "rejected": ("The receiver refused our sender address",
                 "Tell your mail administrator."),
    "filtered": ("The recipient's filter refused the email",
                 "Ask the recipient to allow your address."),
    "speeding": ("Too many emails in a short time for the receiver",
                 "Nothing to do: mailtrack retries more slowly."),
    "too_many_connections": ("The receiver is limiting connections",
                             "Nothing to do: mailtrack retries more slowly."),
    "expired": ("Delivery kept failing, so mailtrack stopped retrying",
                "Check the address, then send the email again."),
    "network_error": ("The receiving server could not be reached",
                      "Nothing to do yet: mailtrack retries automatically."),
    "system_error": ("The receiving server had a problem",
                     "Nothing to do yet; if it keeps failing, send again later."),
    "mailer_error": ("The receiving server failed to deliver locally",
                     "Send again later."),
    "on_hold": ("The receiver is holding the email for later delivery", "Nothing to do yet."),
    "delivered": ("Delivered", ""),
    "feedback": ("The recipient marked the email as spam",
                 "Do not send to this address again unless they ask you to."),
    "vacation": ("An automatic reply (e.g. out of office) came back", "Nothing to do: the email was delivered."),
    "undefined": ("The receiving server refused the email without a recognisable reason",
                  "Read the server's reply below; tell your mail administrator if unsure."),
}

# what the status alone says when there is no reply to read
_BY_STATUS: dict[str, tuple[str, str]] = {
    "creating": ("Being built", ""),
    "spooled": ("Queued for delivery", "Nothing to do: it will be sent shortly."),
    "deferred": ("Delivery was delayed; mailtrack will retry", "Nothing to do yet: mailtrack retries automatically."),
    "rejected": ("Not sent: the address is on the suppression list",
                 "Remove it from the suppression list if the person wants your emails again."),
}
_CLEAR_WHEN_TEMPORARY = frozenset({"mailbox_full", "system_full", "network_error", "speeding",
                                   "too_many_connections", "system_error", "host_unknown", "bad_reputation",
                                   "blocked", "spam_detected", "message_too_big"})
_TRY_LATER = "the receiving server asked us to try again later"
_DEFERRED_NEXT = "Nothing to do yet: mailtrack retries automatically."
_QUEUED_AS = re.compile(r"^\s*2\d\d\b")
_SUPPRESSED = "on the suppression list"


@dataclass(frozen=True)
class Explained:
    code: str | None  # reason vocabulary code, None when the status alone says it
    summary: str
    next_step: str
    raw: str | None  # the server's reply (or report text) to show beneath, None when not worth showing

    @property
    def tooltip(self) -> str:
        return f"{self.summary}. {self.next_step}".strip() if self.next_step else self.summary


def explain(r: Mapping[str, Any]) -> Explained | None:
    """The words for one recipient (a ``store.queries`` or ``store.web`` recipient view)."""
    status = r["status"]
    text = (r.get("reason") or r.get("last_reply") or "").strip()
    if r.get("complained") and status == "sent":
        return Explained("feedback", *WORDS["feedback"], None)
    if status == "sent" or (text and _QUEUED_AS.match(text) and status not in ("deferred", "soft_bounce",
                                                                              "hard_bounce")):
        return None  # "250 2.0.0 Ok: queued as 4Bx9" means nothing to a dispatcher
    if status == "rejected" or text.startswith(_SUPPRESSED):
        summary, nxt = _BY_STATUS["rejected"]
        listed = text.split(":", 1)[1].strip() if ":" in text else ""
        return Explained(None, summary, nxt, f"Listed because: {listed}" if listed else None)
    if not text:
        s = _BY_STATUS.get(status)
        return Explained(None, s[0], s[1], None) if s else None
    code = reason_code(text)
    summary, nxt = WORDS.get(code, WORDS["undefined"])
    if status == "deferred":
        # a 4xx's code often says little ("4.7.1" is greylisting as often as policy): only clear cases get words
        said = f"{summary[0].lower()}{summary[1:]}" if code in _CLEAR_WHEN_TEMPORARY else _TRY_LATER
        summary, nxt = f"Delayed: {said}", _DEFERRED_NEXT
    return Explained(code, summary, nxt, text)


@lru_cache(maxsize=4096)  # lists repeat the same few replies; classifying one is ~300 substring checks
def reason_code(text: str) -> str:
    """The vocabulary code of a stored reason text ("gave up after 5 attempts: …" is ``expired``)."""
    if text.startswith("gave up after"):
        return "expired"
    reason, _hard = classify_status(find_enhanced(text), text)
    return reason


def summary(r: Mapping[str, Any]) -> str:
    """One line for a list row or a tooltip ('' when there is nothing to say)."""
    e = explain(r)
    return e.summary if e else ""
