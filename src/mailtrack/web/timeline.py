"""An email's events in words: what happened, said with the statuses' own words, technical fields apart.

The delivery worker stores the reply's *classification* (``class``: "delivered", "rejected" …) on the
event; those words clash with the statuses, so they are never shown as tags here. Engagement hits keep
their class (human / machine) because that is what the reader needs to know.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .explain import WORDS, reason_code

HIT_CLASSES: dict[str, str] = {
    "human": "by a person",
    "apple_privacy": "by Apple Mail privacy protection (automatic, not a person)",
    "image_proxy": "by an image proxy (automatic, not a person)",
    "scanner": "by a link scanner (automatic, not a person)",
    "unknown": "by an unknown client",
}
# data keys with a meaning for people; everything else goes behind "technical details"
_TECH_LABELS: dict[str, str] = {
    "host": "Receiving server", "reply": "Server reply", "stage": "SMTP stage", "enhanced": "Status code",
    "retry_in": "Retry in (s)", "class": "Classification", "inbound_id": "Report number",
    "correlated_by": "Matched by", "engine": "Report parser", "status": "DSN status", "diagnostic": "Diagnostic",
    "action": "DSN action", "remote_mta": "Reporting server", "reported_address": "Reported address",
    "feedback_type": "Feedback type", "ip": "IP address", "ua": "User agent", "user_agent": "User agent",
    "link": "Link number", "url": "Link", "dns": "DNS", "gave_up": "Gave up",
}


@dataclass
class Step:
    at: str | None
    type: str
    address: str | None
    recipient_id: str
    text: str
    raw: str | None = None
    tag: str | None = None
    technical: list[tuple[str, str]] = field(default_factory=list)


def _technical(data: Mapping[str, Any] | None) -> list[tuple[str, str]]:
    if not data:
        return []
    return [(_TECH_LABELS.get(k, k.replace("_", " ")), str(v)) for k, v in data.items() if v not in (None, "")]


def _bounce_text(reason: str | None) -> str:
    if not reason:
        return "Delivery failed."
    return WORDS.get(reason_code(reason), WORDS["undefined"])[0] + "."


def describe(ev: Mapping[str, Any], accepted_before: bool) -> Step:
    """One event in words; ``accepted_before``: this recipient had already been sent (a late bounce)."""
    typ, data, reason = ev["type"], ev.get("data") or {}, ev.get("reason")
    raw: str | None = None
    tag: str | None = None
    if typ == "creating":
        text = "The email was accepted for sending."
    elif typ == "spooled":
        text = "Built and queued for delivery."
    elif typ == "sent":
        host = data.get("host")
        text = f"Accepted by the receiving server{f' ({host})' if host else ''}. This does not mean it was read."
    elif typ == "deferred":
        code = reason_code(reason) if reason else "network_error"
        text = "Delayed, mailtrack will retry"
        if data.get("retry_in") is not None:
            text += f" in about {_duration(float(data['retry_in']))}"
        text += f": {WORDS.get(code, WORDS['undefined'])[0].lower()}." if code != "undefined" else "."
        raw = reason
    elif typ in ("soft_bounce", "hard_bounce"):
        what = _bounce_text(reason)
        if data.get("inbound_id") is not None and accepted_before:
            who = data.get("remote_mta") or "the receiving side"
            text = f"Accepted at first, then a bounce report arrived from {who}: {what}"
        elif data.get("gave_up"):
            text = f"Gave up after retrying: {what}"
        else:
            text = what
        if typ == "hard_bounce":
            text += " The address was added to the suppression list."
        raw = reason
    elif typ == "rejected":
        text = "Not sent: the address is on the suppression list."
    elif typ in ("opened", "clicked"):
        cls = str(data.get("class") or "unknown")
        verb = "Opened" if typ == "opened" else "Link clicked"
        text = f"{verb} {HIT_CLASSES.get(cls, HIT_CLASSES['unknown'])}."
        tag = "human" if cls == "human" else "machine"
        if typ == "clicked" and data.get("url"):
            text += f" {data['url']}"
    elif typ == "complained":
        text = "The recipient marked the email as spam; the address was added to the suppression list."
    elif typ == "auto_reply":
        text = "An automatic reply came back (e.g. out of office); the email was delivered."
        raw = reason
    elif typ == "delay_notice":
        text = "The receiving side reported that delivery is delayed."
        raw = reason
    else:
        text = typ.replace("_", " ").capitalize() + "."
        raw = reason
    return Step(ev.get("at"), typ, ev.get("address"), ev["recipient_id"], text, raw, tag, _technical(data))


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{round(seconds)} s"
    if seconds < 5400:
        return f"{round(seconds / 60)} min"
    return f"{round(seconds / 3600)} h"


def steps(timeline: list[Mapping[str, Any]]) -> list[Step]:
    """The whole timeline in words, oldest first."""
    sent: set[str] = set()
    out = []
    for ev in timeline:
        out.append(describe(ev, ev["recipient_id"] in sent))
        if ev["type"] == "sent":
            sent.add(ev["recipient_id"])
    return out


def by_recipient(all_steps: list[Step]) -> dict[str, list[Step]]:
    out: dict[str, list[Step]] = {}
    for s in all_steps:
        out.setdefault(s.recipient_id, []).append(s)
    return out
