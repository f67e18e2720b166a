"""Turning what a detector found about one recipient into a classified RecipientResult."""

from __future__ import annotations

import re
from dataclasses import dataclass

from mailtrack.bounces.addresses import find_addresses
from mailtrack.bounces.model import Confidence, Kind, RecipientResult
from mailtrack.bounces.wording import TEMPORARY, WORDS
from mailtrack.domain.reasons import (
    find_basic,
    find_enhanced,
    is_hard,
    normalise_text,
    reason_from_code,
    reason_from_normalised,
    sender_refused,
)

_SPACES = re.compile(r"[ \t]*\n[ \t]*|[ \t]{2,}")
_ENHANCED_ALL = re.compile(r"(?<![\d.])([245])\.(\d{1,3})\.(\d{1,3})(?![\d.]*\d)")
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


@dataclass
class Verdict:
    """What one recipient's failure means: reason, hard (None: undetermined), confidence, and why."""

    reason: str
    hard: bool | None
    confidence: Confidence
    code: str | None
    basis: str


def innermost_code(text: str) -> str | None:
    """The enhanced code of the innermost reply a diagnostic quotes.

    A relay or ESP wraps the remote server's reply in its own ("5.0.0 ... remote server said:
    550 5.2.2 mailbox full"): the last specific code is the remote's own verdict.
    """
    codes = [".".join(m) for m in _ENHANCED_ALL.findall(text[:4000])]
    if len(set(codes)) <= 1:
        return codes[0] if codes else None
    for code in reversed(codes):
        if is_specific(code):
            return code
    return codes[-1]


def _words(low: str) -> tuple[str, str] | None:
    """(reason, what matched) from a normalised text: our phrases first, the shared table, foreign ones."""
    hit = WORDS.first(low)
    if hit is None:
        return None
    table, reason, phrase = hit
    return reason, (f"a {reason} phrase of the shared reason table" if table == 1 else f'phrase "{phrase}"')


def classify(status: str | None, diagnostic: str, context: str = "", kind: Kind = "bounce") -> Verdict:
    """Reason and hard flag from the code and the words together.

    Order: a sender-side code; the diagnostic's phrases; a specific code; weak phrases; the
    report's wider text; a generic code's class. Nothing recognisable is "undefined" with
    ``hard`` None: the address is then retried, never suppressed on a guess.
    """
    if (status or "").startswith("2") or kind == "delivered":
        return Verdict("delivered", False, "high", status, "a 2.x.x status or a delivery notice")
    code = innermost_code(diagnostic) or status
    confidence: Confidence = "high"
    low = normalise_text(diagnostic)
    refused = sender_refused(code)
    words = None if refused else _words(low)
    wide_low: str | None = None
    if refused:
        reason, basis = "rejected", f"code {code} is about the sender"
    elif words and is_specific(code) and _generic_only(low, code):
        reason, basis = reason_from_code(code) or "undefined", f"code {code} (the text is RFC 5321's generic 550)"
    elif words:
        reason, basis = words[0], f"the diagnostic's {words[1]}"
    elif is_specific(code):
        reason, basis = reason_from_code(code) or "undefined", f"code {code}"
    elif (weak := reason_from_normalised(low, weak=True)) is not None:
        reason, basis, confidence = weak, f"a weak {weak} phrase of the diagnostic", "medium"
    elif context and (wide := _words(wide_low := normalise_text(context))) is not None:
        reason, basis, confidence = wide[0], f"the report text's {wide[1]}", "medium"
    elif kind == "delay":
        reason, basis, confidence = reason_from_code(code) or "expired", "a delay notice", "medium"
    else:
        reason = reason_from_code(code) or "undefined"
        basis = f"code {code}"
        if reason == "undefined":
            basis = f"nothing: no phrase recognised, code {code or 'none'} names no cause"
        confidence = "low"
    if not is_specific(code) and reason in ("user_unknown", "host_unknown"):
        if wide_low is None:
            wide_low = normalise_text(context) if context else ""
        refined = _refine(reason, low + " " + wide_low)
        if refined != reason:
            reason, basis = refined, f"{basis}, but the refusal came after MAIL FROM or DATA"
    hard: bool | None = is_hard(reason, code)
    if hard and not is_specific(code) and TEMPORARY.search(low):
        reason, hard, confidence = "undefined", None, "low"
        basis += ", but the text says the failure may be temporary"
    if reason == "undefined":
        hard, confidence = (False if kind == "delay" else None), "low"
    return Verdict(reason, hard, confidence, code, basis)


# RFC 5321's stock 550 text: it names no cause, so a specific code other than x.1.x decides.
_GENERIC_550 = ("requested action not taken: mailbox unavailable", "mailbox unavailable")


def _generic_only(low: str, code: str | None) -> bool:
    if not code or code.split(".")[1] == "1" or not any(p in low for p in _GENERIC_550):
        return False
    for phrase in _GENERIC_550:
        low = low.replace(phrase, " ")
    return _words(" ".join(low.split())) is None


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
    classified = one_line(detail) or diagnostic
    verdict = classify(status, classified, context, kind)
    if verdict.code and is_specific(verdict.code) and not is_specific(status) and verdict.code[0] == (status or "5")[0]:
        status = verdict.code  # the remote's own code inside a wrapper's generic one
    if status is None and verdict.reason != "undefined":
        status = "4.0.0" if kind == "delay" else "5.0.0"
    return RecipientResult(
        address=address,
        status=status,
        reason=verdict.reason,
        hard=verdict.hard,
        diagnostic=diagnostic,
        action=action,
        remote_mta=remote_mta,
        confidence=verdict.confidence,
        evidence={"classified": classified, "decided by": verdict.basis},
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
