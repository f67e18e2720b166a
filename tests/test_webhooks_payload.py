"""The dispatcher's fast payload path gives what the plain one gives: the same occurred_at text, the
same JSON."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from mailtrack.store.queries import iso
from mailtrack.webhooks import payload

# moments around the rounding edges: half a microsecond, half a millisecond, the next second
EDGES = [0.0, 1.0, 1796195883.0, 1796195883.9999995, 1796195883.0000005, 1796195883.0004995,
         1796195883.9995, 1796195883.9999996, 1796195883.123456, 4102444799.999999]


@settings(max_examples=2000, deadline=None)
@given(st.floats(min_value=0, max_value=4102444800, allow_nan=False, allow_infinity=False))
def test_occurred_at_is_the_same_text_as_iso(t: float) -> None:
    assert payload._iso(t) == iso(t)


def test_occurred_at_on_rounding_edges() -> None:
    for t in EDGES:
        assert payload._iso(t) == iso(t), t


def _row(i: int, email: str, **kw: object) -> dict[str, object]:
    r: dict[str, object] = {
        "id": i, "account_id": 1, "recipient_id": f"r{i}", "email_id": email, "type": "sent", "at": 1796195883.25 + i,
        "seq": i, "status": "sent", "reason": None, "data_json": json.dumps({"reply": "250 2.0.0 ok"}),
        "subject": "Invoice ünïcode", "source_type": "api", "source_reference": None, "source_event": None,
        "metadata_json": json.dumps({"order": 7}), "client_ref": "acme", "address": f"a{i}@example.com",
        "kind": "to", "recipient_reason": None, "last_reply": None}
    r.update(kw)
    return r


def test_encoded_payloads_are_the_built_ones() -> None:
    rows = {1: _row(1, "e1"), 2: _row(2, "e1", type="clicked", data_json=json.dumps({"link": 0, "class": "human"}),
                                       url="https://example.com/x"),
            3: _row(3, "e2", type="hard_bounce", status="hard_bounced", reason="550 5.1.1 no such user"),
            # beyond 64 bits: orjson refuses it, the json fallback keeps it
            4: _row(4, "e3", metadata_json=json.dumps({"big": 2**70}))}
    out = payload.encode_many(rows)
    assert sorted(out) == [1, 2, 3, 4]
    for i, r in rows.items():
        assert json.loads(out[i]) == payload.build(r)
    batch = json.loads(payload.join([out[i] for i in sorted(out)]))
    assert [e["id"] for e in batch] == ["evt_1", "evt_2", "evt_3", "evt_4"]
    assert batch[3]["email"]["metadata"] == {"big": 2**70}
    assert batch[1]["data"]["url"] == "https://example.com/x"
