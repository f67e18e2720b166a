"""From a stored report to recorded effects: correlate it to our recipients, then record what it says.

Correlation, strongest first: the VERP token of the address the report was sent to, VERP addresses
quoted in the returned headers, the ``X-Mailtrack-ID`` header, the ``<RID.EMAILID@bounce-domain>``
Message-ID. Each names one recipient (the anchor), and the report affects that recipient only: every
recipient gets its own message, so other addresses a report names are recorded as unmatched.

Effects, all through the status-change core (``transitions.record``) with a dedupe key per
(report bytes, recipient); suppression and the webhook outbox are the core's effects::

    bounce     → hard_bounce / soft_bounce (suppressed by the core unless switched off)
    delay      → delay_notice event
    complaint  → complained event, recipients.complained (suppressed by the core)
    autoreply  → auto_reply event
    delivered  → nothing
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.exc import InterfaceError, OperationalError

from .. import metrics
from ..bounces import RecipientResult, Report, parse_message
from ..config import Config
from ..domain.status import EventType
from ..store import inbound
from ..store.db import Store
from ..store.transitions import Change, Outcome, record
from .correlate import find_anchor

log = logging.getLogger("mailtrack.inbound")

# Delivery results inside a failure report that are not failures (a mixed DSN).
_NOT_FAILED = frozenset({"delivered", "relayed", "expanded"})
# ARF feedback types that are not a person marking the message as spam.
_NOT_COMPLAINTS = frozenset({"not-spam", "auth-failure"})


@dataclass
class Applied:
    """What processing made of one report: the inbound state and a summary kept with it."""

    state: str
    recipient_id: str | None = None
    summary: dict[str, Any] = field(default_factory=dict)


def match_recipients(
    conn: Connection, anchor: dict[str, Any], results: list[RecipientResult]
) -> tuple[list[tuple[dict[str, Any], RecipientResult | None]], list[str]]:
    """The anchor recipient with its result, and the other reported addresses (ignored).

    Every recipient gets a message of its own (own VERP, own Message-ID), so a report that came
    back through one recipient's message speaks only for that recipient. Letting it name others
    would let a recipient forge a DSN to its own VERP address that bounces (and suppresses) a
    co-recipient.
    """
    if not results:
        return [(anchor, None)], []
    own = [r for r in results if (r.address or "").lower() == anchor["address"].lower()]
    # the anchor's result under another name (a forwarding address, an alias): the worst one
    pick = own[0] if own else min(results, key=lambda r: (not r.hard, r.action in _NOT_FAILED))
    others = [r.address or "" for r in results if r is not pick]
    return [(anchor, pick)], others


def _reason(res: RecipientResult | None) -> str:
    if res is None:
        return "undefined"
    head = " ".join(p for p in (res.status, res.reason) if p)
    return f"{head}: {res.diagnostic}" if res.diagnostic else head


def _data(res: RecipientResult | None, report: Report, inbound_id: int, via: str) -> dict[str, Any]:
    data: dict[str, Any] = {"inbound_id": inbound_id, "correlated_by": via, "engine": report.engine}
    if res is not None:
        extra = {"status": res.status, "diagnostic": res.diagnostic, "action": res.action,
                 "remote_mta": res.remote_mta, "reported_address": res.address}
        data.update({k: v for k, v in extra.items() if v})
    if report.feedback_type:
        data["feedback_type"] = report.feedback_type
    return data


def _effect(
    conn: Connection, config: Config, report: Report, row: dict[str, Any], res: RecipientResult | None,
    key: str, data: dict[str, Any],
) -> tuple[str, Outcome | None]:
    """Record one recipient's effect; returns (event type or 'none', outcome)."""
    rid, kind = row["id"], report.kind
    if kind in ("bounce", "delay") and res is not None and (
        res.action in _NOT_FAILED or (res.status or "").startswith("2")
    ):
        return "none", None
    if kind == "bounce" and res is not None and res.action == "delayed":
        kind = "delay"
    if kind == "bounce":
        hard = res.hard if res is not None else False
        reason = _reason(res)
        typ = EventType.HARD_BOUNCE if hard else EventType.SOFT_BOUNCE
        # a report can overtake a retry (spooled/deferred → bounce): the recipient is then no longer due
        # suppression is the core's effect of a hard bounce (unless switched off)
        outcome = record(conn, Change(rid, typ.value, reason=reason, data=data, dedupe_key=key,
                                      fields={"next_attempt_at": None}, suppress=config.suppress_hard_bounces))
        return typ.value, outcome
    if kind == "delay":
        ch = Change(rid, EventType.DELAY_NOTICE.value, reason=_reason(res), data=data, dedupe_key=key)
        return EventType.DELAY_NOTICE.value, record(conn, ch)
    if kind == "complaint":
        if (report.feedback_type or "abuse") in _NOT_COMPLAINTS:
            return "none", None
        outcome = record(conn, Change(rid, EventType.COMPLAINED.value, reason="Marked as Spam", data=data,
                                      dedupe_key=key, fields={"complained": True}))
        return EventType.COMPLAINED.value, outcome
    if kind == "autoreply":
        reason = res.diagnostic if res is not None and res.diagnostic else "automatic reply"
        ch = Change(rid, EventType.AUTO_REPLY.value, reason=reason, data=data, dedupe_key=key)
        return EventType.AUTO_REPLY.value, record(conn, ch)
    return "none", None  # delivered: nothing to record


def apply_report(
    conn: Connection, config: Config, inbound_id: int, rcpt_tos: list[str], raw: bytes, report: Report
) -> Applied:
    """Correlate and record one parsed report inside the caller's transaction."""
    summary: dict[str, Any] = {"kind": report.kind, "engine": report.engine}
    found = find_anchor(conn, config, rcpt_tos, report)
    if report.kind == "unknown":
        return Applied("unparsed", found[0]["id"] if found else None, summary)
    if found is None:
        summary["addresses"] = [r.address for r in report.recipients if r.address]
        return Applied("orphan", None, summary)
    anchor, via = found
    digest = hashlib.sha256(raw).hexdigest()[:40]
    pairs, unmatched = match_recipients(conn, anchor, report.recipients)
    effects = []
    for row, res in pairs:
        data = _data(res, report, inbound_id, via)
        typ, outcome = _effect(conn, config, report, row, res, f"inbound:{digest}:{row['id']}", data)
        effects.append({"recipient_id": row["id"], "type": typ, "outcome": outcome.value if outcome else None})
    summary.update(correlated_by=via, effects=effects)
    if unmatched:
        summary["unmatched"] = unmatched
    return Applied("applied", anchor["id"], summary)


def process(store: Store, config: Config, inbound_id: int) -> str | None:
    """Parse and apply one stored message; returns its new state (None when it was not "stored").

    A database that is unreachable leaves the message "stored" for the next sweep; any other
    failure marks it "unparsed" so a person can look at it — it is never dropped.
    """
    with store.read() as conn:
        row = inbound.get(conn, inbound_id)
    if row is None or row["state"] != "stored":
        return None
    report = parse_message(row["raw"])
    try:
        with store.write() as conn:
            if inbound.lock_state(conn, inbound_id) != "stored":
                return None  # another process got there first
            applied = apply_report(conn, config, inbound_id, row["rcpt_to"], row["raw"], report)
            inbound.mark(conn, inbound_id, applied.state, kind=report.kind, recipient_id=applied.recipient_id,
                         summary=applied.summary)
    except (OperationalError, InterfaceError):
        raise
    except Exception as e:
        log.exception("inbound message %s could not be applied; kept as unparsed", inbound_id)
        with store.write() as conn:
            inbound.mark(conn, inbound_id, "unparsed", kind=report.kind,
                         summary={"kind": report.kind, "error": f"{type(e).__name__}: {e}"})
        return "unparsed"
    log.info("inbound message %s: %s %s", inbound_id, report.kind, applied.state)
    metrics.inbound_report(report.kind)
    return applied.state
