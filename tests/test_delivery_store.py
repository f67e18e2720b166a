"""The delivery queue in the store: claims and leases, batch recording, release — on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
import time
from typing import Any

from sqlalchemy import delete, select

from mailtrack.domain.status import Status
from mailtrack.store import delivery as d
from mailtrack.store import suppressions
from mailtrack.store.db import Store
from mailtrack.store.schema import events, recipients
from mailtrack.store.schema import suppressions as suppressions_table
from mailtrack.store.transitions import Change, Outcome, record, record_batch
from tests.test_delivery_crash import spool


def rows(store: Store) -> dict[str, dict[str, Any]]:
    with store.read() as conn:
        return {r["id"]: dict(r) for r in conn.execute(select(recipients)).mappings()}


def test_claim_leases_and_expiry(any_store: Store) -> None:
    ids = spool(any_store, 30)
    t = time.time()
    with any_store.write() as conn:
        first = d.claim(conn, "w1", t, 60, 20).recipients
        second = d.claim(conn, "w2", t, 60, 20).recipients
        third = d.claim(conn, "w3", t, 60, 20).recipients
    assert len(first) == 20 and len(second) == 10 and third == []
    assert {c.id for c in first} | {c.id for c in second} == ids
    r = rows(any_store)
    assert {r[c.id]["lease_owner"] for c in first} == {"w1"}
    assert all(r[c.id]["next_attempt_at"] == r[c.id]["lease_until"] == t + 60 for c in first)
    # w1 dies; once its lease has run out another worker gets its recipients
    with any_store.write() as conn:
        assert d.claim(conn, "w4", t + 59, 60, 50).recipients == []
        again = d.claim(conn, "w4", t + 61, 60, 50).recipients
    assert {c.id for c in again} == ids  # w2's lease ran out at the same time


def test_concurrent_claims_never_overlap(any_store: Store) -> None:
    spool(any_store, 400)
    got: dict[str, list[str]] = {}

    def worker(name: str) -> None:
        mine: list[str] = []
        while True:
            with any_store.write() as conn:
                batch = d.claim(conn, name, time.time(), 60, 25).recipients
            if not batch:
                break
            mine += [c.id for c in batch]
        got[name] = mine

    threads = [threading.Thread(target=worker, args=(f"w{i}",)) for i in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    everything = [rid for ids in got.values() for rid in ids]
    assert len(everything) == len(set(everything)) == 400


def test_finish_records_events_clears_lease_and_suppresses(any_store: Store) -> None:
    spool(any_store, 3, per_email=3)
    t = time.time()
    with any_store.write() as conn:
        a, b, c = d.claim(conn, "w1", t, 60, 10).recipients
        out = d.finish(conn, "w1", [
            d.Finished(a.id, Status.SENT, last_reply="250 ok", attempts=1, first_attempt_at=t, at=t),
            d.Finished(b.id, Status.DEFERRED, reason="451 later", last_reply="451 later", next_attempt_at=t + 5,
                       attempts=1, first_attempt_at=t, at=t),
            d.Finished(c.id, Status.HARD_BOUNCE, reason="550 5.1.1 unknown", attempts=1, first_attempt_at=t,
                       suppress=(c.account_id, c.address, "550 5.1.1 unknown"), at=t),
        ])
        assert out == [Outcome.APPLIED] * 3
        # a stale result for a recipient already final is ignored, and its lease is let go
        assert d.finish(conn, "w1", [d.Finished(c.id, Status.SENT, at=t)]) == [Outcome.IGNORED]
        found = suppressions.suppressed_among(conn, c.account_id, {c.address.lower(), a.address.lower()})
        evs = [(e.recipient_id, e.type) for e in conn.execute(select(events).where(events.c.type != "creating",
                                                                                   events.c.type != "spooled"))]
    r = rows(any_store)
    assert (r[a.id]["status"], r[a.id]["last_reply"], r[a.id]["next_attempt_at"]) == ("sent", "250 ok", None)
    assert (r[b.id]["status"], r[b.id]["next_attempt_at"], r[b.id]["reason"]) == ("deferred", t + 5, "451 later")
    assert r[c.id]["status"] == "hard_bounce" and r[c.id]["attempts"] == 1
    assert all(r[x.id]["lease_owner"] is None and r[x.id]["lease_until"] is None for x in (a, b, c))
    assert found == {c.address.lower(): "hard bounce: 550 5.1.1 unknown"}  # the one reason format
    assert sorted(evs) == sorted([(a.id, "sent"), (b.id, "deferred"), (c.id, "hard_bounce")])


def test_suppressed_at_claim_time_is_rejected(any_store: Store) -> None:
    spool(any_store, 2, per_email=2)
    with any_store.read() as conn:
        first = conn.execute(select(recipients).order_by(recipients.c.id)).mappings().first()
    assert first is not None
    with any_store.write() as conn:
        suppressions.add(conn, first["account_id"], first["address"], "complained", "complaint")
        res = d.claim(conn, "w1", time.time(), 60, 10)
    assert res.rejected == 1 and [c.address for c in res.recipients] != [first["address"]]
    assert len(res.recipients) == 1
    row = rows(any_store)[first["id"]]
    assert row["status"] == "rejected" and row["reason"] == "on the suppression list: complained"
    assert row["lease_owner"] is None and row["next_attempt_at"] is None


def test_release_makes_recipients_due_now(any_store: Store) -> None:
    spool(any_store, 5, per_email=5)
    t = time.time()
    with any_store.write() as conn:
        claimed = d.claim(conn, "w1", t, 600, 10).recipients
        assert d.release(conn, "other", [c.id for c in claimed], t) == 0  # only the owner can release
        assert d.release(conn, "w1", [c.id for c in claimed[:3]], t) == 3
        again = d.claim(conn, "w2", t, 600, 10).recipients
    assert {c.id for c in again} == {c.id for c in claimed[:3]}


def test_record_batch_matches_record(any_store: Store) -> None:
    ids = sorted(spool(any_store, 4, per_email=4))
    t = 1_000.0

    def changes() -> list[Change]:
        return [
            Change(ids[0], "sent", at=t, fields={"last_reply": "250 ok"}),
            Change(ids[1], "deferred", reason="451", at=t, data={"k": 1}, fields={"next_attempt_at": t + 1}),
            Change(ids[1], "hard_bounce", reason="550 5.1.1", at=t + 1),  # same recipient again, in order
            Change(ids[2], "opened", at=t, dedupe_key=f"open-{ids[2]}"),  # an engagement event
            Change(ids[2], "opened", at=t, dedupe_key=f"open-{ids[2]}"),  # its duplicate
            Change("nosuchrecipient", "sent", at=t),
            Change(ids[3], "creating", at=t),  # not allowed from spooled
        ]

    with any_store.write() as conn:
        got = record_batch(conn, changes())
    assert got == [Outcome.APPLIED, Outcome.APPLIED, Outcome.APPLIED, Outcome.APPLIED, Outcome.DUPLICATE,
                   Outcome.MISSING, Outcome.IGNORED]
    after = rows(any_store)
    with any_store.read() as conn:
        evs = [(e.recipient_id, e.type, e.reason, e.data_json) for e in conn.execute(
            select(events).where(events.c.at >= t, events.c.at < t + 10).order_by(events.c.id))]
    assert (after[ids[0]]["status"], after[ids[0]]["last_reply"]) == ("sent", "250 ok")
    assert (after[ids[1]]["status"], after[ids[1]]["reason"]) == ("hard_bounce", "550 5.1.1")
    assert after[ids[3]]["status"] == "spooled"
    assert evs == [(ids[0], "sent", None, None), (ids[1], "deferred", "451", '{"k":1}'),
                   (ids[1], "hard_bounce", "550 5.1.1", None), (ids[2], "opened", None, None)]
    # one by one gives the same outcomes on a fresh copy of the same state (the hard bounce above
    # suppressed its address, an effect of the core: lift that so the copy starts out the same)
    with any_store.write() as conn:
        conn.execute(delete(suppressions_table))
    spool(any_store, 4, per_email=4)
    fresh = sorted(set(rows(any_store)) - set(ids))
    remap = dict(zip(ids, fresh, strict=True))
    with any_store.write() as conn:
        one_by_one = [record(conn, Change(remap.get(c.recipient_id, c.recipient_id), c.type, reason=c.reason,
                                          data=c.data, at=c.at, fields=c.fields,
                                          dedupe_key=c.dedupe_key and c.dedupe_key + "-b"))
                      for c in changes()]
    assert one_by_one == got
