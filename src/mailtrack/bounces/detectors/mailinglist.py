"""Mailing-list managers refusing a post (fml, ezmlm, Mailman, Majordomo): loop alerts, "not member".

The list refused the message we sent to it, so the failed recipient is the list's own address
(List-Post, else the first list-looking address of the text). A refusal of the sender or a loop
says nothing bad about that address: the reason comes from the text, soft unless it says otherwise.
"""

from __future__ import annotations

from mailtrack.bounces.addresses import find_addresses
from mailtrack.bounces.detectors.common import build, candidate, own_addresses
from mailtrack.bounces.message import Returned
from mailtrack.bounces.model import Report

NAME = "mailinglist"

_LIST_HEADERS = ("X-MLServer", "X-ML-Name", "X-Mailman-Version", "Mailing-List", "X-ML-Info", "List-Id", "List-Post")
_REFUSALS = (
    "not member", "not a member", "loop alert", "loop back warning", "looped", "mail loop", "loop detected",
    "members only", "non-member", "nonmember", "size limit exceeded", "security alert", "post rejected",
    "posting rejected", "rejected posting", "you are not allowed to post", "not allowed to post",
)  # fmt: skip
# Addresses of the list's machinery, never the list itself.
_ROBOT_SUFFIXES = ("-ctl", "-request", "-admin", "-help", "-owner", "-bounces", "-subscribe", "-unsubscribe")


def _list_address(msg: Returned, own: set[str]) -> str | None:
    posted = find_addresses(msg.header("List-Post"), limit=1)
    if posted:
        return posted[0]
    for address in find_addresses(msg.report_text[:8000], limit=20):
        local = address.rsplit("@", 1)[0].lower()
        if candidate(address, own) and not local.endswith(_ROBOT_SUFFIXES):
            return address
    return None


def detect(msg: Returned) -> Report | None:
    if not any(msg.header(h) for h in _LIST_HEADERS):
        return None
    said = msg.subject.lower() + " " + msg.flat[:4000]
    if not any(phrase in said for phrase in _REFUSALS):
        return None
    own = own_addresses(msg)
    address = _list_address(msg, own)
    if address is None:
        return None
    reason_text = " ".join(msg.report_text.split())[:600]
    return build(msg, [(address, f"{msg.subject.strip()}: {reason_text}")], msg.report_text, kind="bounce")
