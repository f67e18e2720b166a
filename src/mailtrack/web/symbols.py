"""Status symbols for task notes: derived once here, used by the notes page, the embed and the API.

An email's symbols are the union of its recipients' symbols, in a fixed order, so the same
email always shows the same row of symbols wherever it appears.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

# Canonical order: progress first, then engagement, then problems.
ORDER = ("spooling", "sent", "opened", "clicked", "soft_bounce", "hard_bounce", "rejected", "spam")
# what a recipient's status badge already says; a recipient's own row shows only the others
STATUS_SYMBOLS = frozenset({"spooling", "sent", "soft_bounce", "hard_bounce", "rejected"})

TITLES: dict[str, str] = {
    "spooling": "Spooling",
    "sent": "Sent",
    "opened": "Opened",
    "clicked": "Link clicked",
    "soft_bounce": "Soft bounce",
    "hard_bounce": "Hard bounce",
    "rejected": "Rejected",
    "spam": "Marked as spam",
}

MEANINGS: dict[str, str] = {
    "spooling": "Queued or waiting to retry; not delivered yet.",
    "sent": "The receiving mail server accepted the email (not proof that a person read it).",
    "opened": "The email was opened (the tracking image loaded). Never 100% accurate.",
    "clicked": "A link in the email was clicked. Never 100% accurate.",
    "soft_bounce": "Delivery failed for now (mailbox full, blocked, retries ran out); the address may work later.",
    "hard_bounce": "The address does not work (unknown mailbox or domain); it is on the suppression list.",
    "rejected": "Not sent: the address is on the suppression list.",
    "spam": "The recipient marked the email as spam.",
}

_PENDING = frozenset({"creating", "spooled", "deferred"})


def recipient_symbols(r: Mapping[str, Any]) -> list[str]:
    """Symbols of one recipient as seen in a recipient view (``store.queries`` shape)."""
    status = r["status"]
    found: set[str] = set()
    if status in _PENDING:
        found.add("spooling")
    elif status == "sent":
        found.add("sent")
    elif status in ("soft_bounce", "hard_bounce"):
        found.add(status)
    elif status == "rejected":
        found.add("rejected")
    if r["opens"]["total"] > 0:
        found.add("opened")
    if r["clicks"]["total"] > 0:
        found.add("clicked")
    if r["complained"]:
        found.add("spam")
    return [s for s in ORDER if s in found]


@dataclass(frozen=True)
class Symbol:
    name: str
    title: str
    tooltip: str
    addresses: tuple[str, ...]
    machine_only: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {"symbol": self.name, "title": self.title, "tooltip": self.tooltip,
                "addresses": list(self.addresses), "machine_only": self.machine_only}


def _tooltip(name: str, addresses: list[str], total: int, machine_only: bool) -> str:
    who = ", ".join(addresses[:3]) + (f" and {len(addresses) - 3} more" if len(addresses) > 3 else "")
    text = f"{TITLES[name]} ({len(addresses)} of {total}): {who}. {MEANINGS[name]}"
    if machine_only:
        text += " Only automated hits so far (privacy proxy or link scanner)."
    return text


def email_symbols(rcpts: Iterable[Mapping[str, Any]]) -> list[Symbol]:
    """The symbols of an email with who they apply to, in canonical order."""
    rows = list(rcpts)
    who: dict[str, list[str]] = {s: [] for s in ORDER}
    human = {"opened": 0, "clicked": 0}
    for r in rows:
        for s in recipient_symbols(r):
            who[s].append(r["address"])
        human["opened"] += r["opens"]["human"]
        human["clicked"] += r["clicks"]["human"]
    out = []
    for s in ORDER:
        if who[s]:
            machine_only = s in human and human[s] == 0
            out.append(Symbol(s, TITLES[s], _tooltip(s, who[s], len(rows), machine_only), tuple(who[s]),
                              machine_only))
    return out


def note_view(email: Mapping[str, Any]) -> dict[str, Any]:
    """One email as a task note for the JSON API: ``symbols`` plus the details behind them."""
    syms = email_symbols(email["recipients"])
    return {
        "email_id": email["id"],
        "created_at": email["created_at"],
        "subject": email["subject"],
        "source": email["source"],
        "status": email["status"],
        "tracking": email["tracking"],
        "symbols": [s.name for s in syms],
        "details": [s.as_dict() for s in syms],
        "recipients": [
            {"address": r["address"], "kind": r["kind"], "status": r["status"], "reason": r["reason"],
             "symbols": recipient_symbols(r)}
            for r in email["recipients"]
        ],
    }
