"""Turning what a detector found about one recipient into a classified RecipientResult."""

from __future__ import annotations

import re

from mailtrack.bounces.addresses import find_addresses
from mailtrack.bounces.model import Kind, RecipientResult
from mailtrack.domain.reasons import (
    find_basic,
    find_enhanced,
    is_hard,
    normalise_text,
    reason_from_code,
    reason_from_text,
    sender_refused,
)

_SPACES = re.compile(r"[ \t]*\n[ \t]*|[ \t]{2,}")
_TYPE_PREFIX = re.compile(r"(?i)^\s*(?:smtp|x-[\w-]{1,40}|dns|rfc822|x400|utf-8|unix)\s*;\s*")

MAX_DIAGNOSTIC = 1000


def one_line(text: str) -> str:
    """One line, capped."""
    return _SPACES.sub(" ", text[: MAX_DIAGNOSTIC * 2]).strip()[:MAX_DIAGNOSTIC]


def tidy(text: str) -> str:
    """One line, no "smtp;" type prefix, capped."""
    return one_line(_TYPE_PREFIX.sub("", text[: MAX_DIAGNOSTIC * 2], count=1))


def status_of(text: str, classes: str = "245") -> str | None:
    """An enhanced code for a diagnostic: the one it quotes, else "N.0.0" from its reply code."""
    enhanced = find_enhanced(text)
    if enhanced and enhanced[0] in classes:
        return enhanced
    basic = find_basic(text)
    if basic and str(basic // 100) in classes:
        return f"{basic // 100}.0.0"
    return None


def is_specific(code: str | None) -> bool:
    """False for codes like 5.0.0 that say only "failed"."""
    return bool(code) and not code.endswith(".0.0") and reason_from_code(code) is not None  # type: ignore[union-attr]


def classify(status: str | None, diagnostic: str, context: str = "", kind: Kind = "bounce") -> tuple[str, bool]:
    """Reason and hard flag: the diagnostic's phrases, a specific code, weak phrases, the wider text."""
    if (status or "").startswith("2") or kind == "delivered":
        return "delivered", False
    code = find_enhanced(diagnostic) or status
    reason = "rejected" if sender_refused(code) else reason_from_text(diagnostic)
    if reason is None and is_specific(code):
        reason = reason_from_code(code)
    if reason is None:
        reason = reason_from_text(diagnostic, weak=True)
    if reason is None and context:
        reason = reason_from_text(context)
    if reason is None:
        reason = reason_from_code(code) or ("expired" if kind == "delay" else "undefined")
    if not is_specific(code):
        reason = _refine(reason, normalise_text(diagnostic + " " + context))
    return reason, is_hard(reason, code)


def _refine(reason: str, text: str) -> str:
    """A verdict on the sender is not about the recipient; a refusal after DATA is a filter."""
    if reason in ("user_unknown", "host_unknown") and any(p in text for p in _AFTER_MAIL_FROM):
        return "rejected"
    if reason == "user_unknown" and any(p in text for p in _AFTER_DATA):
        return "filtered"
    return reason


# The server accepted the recipient at RCPT TO, so a later "unknown" is not about the address.
_AFTER_DATA = (
    "after end of data", "in reply to end of data command", "smtp command data", "did not like our final data",
    "after data", "in reply to data command", "for text command",
)  # fmt: skip
_AFTER_MAIL_FROM = ("after mail from", "in reply to mail from command")


def result(
    address: str | None,
    diagnostic: str,
    *,
    status: str | None = None,
    context: str = "",
    kind: Kind = "bounce",
    action: str | None = None,
    remote_mta: str | None = None,
    detail: str = "",
) -> RecipientResult:
    """A classified result; the status defaults to the code the diagnostic quotes.

    ``detail`` is the fuller text about this recipient (classified instead of the diagnostic).
    """
    diagnostic = tidy(diagnostic)
    if status is None:
        # A failure notice quotes failure codes; a "250" in it is a transcript line or a number.
        classes = "2" if kind == "delivered" else "45"
        status = status_of(diagnostic, classes) or status_of(detail, classes)
    reason, hard = classify(status, one_line(detail) or diagnostic, context, kind)
    if status is None and reason != "undefined":
        status = "4.0.0" if kind == "delay" else "5.0.0"
    return RecipientResult(
        address=address,
        status=status,
        reason=reason,
        hard=hard,
        diagnostic=diagnostic,
        action=action,
        remote_mta=remote_mta,
    )


def text_near(text: str, address: str, after: int = 6) -> str:
    """The lines of a text from the first one naming an address, a few lines on."""
    low = text.lower()
    at = low.find(address.lower())
    if at == -1:
        return ""
    start = text.rfind("\n", 0, at) + 1
    lines = text[start : start + 3000].split("\n")
    picked: list[str] = []
    for index, line in enumerate(lines[: after + 1]):
        if index > 0 and not line.strip():
            break
        if index > 0 and find_addresses(line, limit=1) and not line.startswith((" ", "\t")):
            break
        picked.append(line)
    return "\n".join(picked)
