"""The JSON a webhook receiver gets for one event (its JSON Schema: ``api.routes_webhooks.WebhookEvent``).

    {"id": "evt_…", "type": "hard_bounce", "occurred_at": "…Z", "sequence": 7,
     "email": {"id", "subject", "source": {"type", "reference", "event"}, "client", "metadata"},
     "recipient": {"id", "address", "kind", "status", "reason", "smtp_reply"},
     "data": {…type-specific…}}

``sequence`` counts the recipient's events, so a receiver can order deliveries that overtook
each other.
"""

from __future__ import annotations

import json
from typing import Any

from ..domain.status import STATUS_EVENTS, EventType
from ..store.queries import iso

EVENT_TYPES: tuple[str, ...] = tuple(t.value for t in EventType if t is not EventType.CREATING)

# where an inbound report's event came from, named for the receiver
_REPORTS = {"complained": "arf", "auto_reply": "auto_reply", "delay_notice": "dsn"}
_HIT_FIELDS = ("class",)


def _data(r: dict[str, Any], raw: dict[str, Any]) -> dict[str, Any]:
    typ = r["type"]
    if typ == EventType.OPENED:
        return {k: raw.get(k) for k in _HIT_FIELDS}
    if typ == EventType.CLICKED:
        return {"url": r.get("url"), "link": raw.get("link"), **{k: raw.get(k) for k in _HIT_FIELDS}}
    out = dict(raw)
    if "inbound_id" in raw or typ in _REPORTS:
        out["report"] = _REPORTS.get(typ, "dsn")
    return out


def build(r: dict[str, Any]) -> dict[str, Any]:
    """The payload of one outbox row as loaded by ``store.webhooks.outbox_rows``."""
    raw = json.loads(r["data_json"]) if r.get("data_json") else {}
    status_event = r["type"] in STATUS_EVENTS
    return {
        "id": f"evt_{r['id']}",
        "type": r["type"],
        "occurred_at": iso(r["at"]),
        "sequence": r["seq"],
        "email": {
            "id": r["email_id"], "subject": r["subject"],
            "source": {"type": r["source_type"], "reference": r["source_reference"], "event": r["source_event"]},
            "client": r["client_ref"], "metadata": json.loads(r["metadata_json"] or "{}"),
        },
        "recipient": {
            "id": r["recipient_id"], "address": r["address"], "kind": r["kind"], "status": r["status"],
            "reason": r["reason"] if status_event else r["recipient_reason"],
            "smtp_reply": raw.get("reply") or r["last_reply"],
        },
        "data": _data(r, raw),
    }


def sample(account_id: int) -> dict[str, Any]:
    """A made-up event for a test POST when the account has none yet."""
    return {
        "id": "evt_test", "type": "sent", "occurred_at": iso(0.0), "sequence": 0,
        "email": {"id": "test", "subject": "mailtrack webhook test", "source": {"type": None, "reference": None,
                                                                              "event": None},
                  "client": None, "metadata": {}},
        "recipient": {"id": "test", "address": "test@example.com", "kind": "to", "status": "sent", "reason": None,
                      "smtp_reply": "250 2.0.0 OK"},
        "data": {"test": True},
    }
