"""The store on SQLite and PostgreSQL: submission, the single transition function, idempotency."""

from __future__ import annotations

from sqlalchemy import func, select

from mailtrack.store import accounts, queries, suppressions
from mailtrack.store.db import Store
from mailtrack.store.schema import events
from mailtrack.store.submit import NewEmail, NewRecipient, submit
from mailtrack.store.transitions import Change, Outcome, record


def _email(*addrs: str, key: str | None = None) -> NewEmail:
    kinds = ["to", "cc", "bcc"]
    return NewEmail(
        from_addr="ops@acme.test", subject="s", text="t", idempotency_key=key,
        recipients=[NewRecipient("", a, kinds[i % 3]) for i, a in enumerate(addrs)],
    )


def _setup(store: Store) -> int:
    with store.write() as conn:
        return accounts.get_or_create_account(conn, "acme")


def test_submit_creates_spooled_and_rejected(any_store: Store) -> None:
    acct = _setup(any_store)
    with any_store.write() as conn:
        suppressions.add(conn, acct, "Bad@Example.test", "complained", "manual")
        [(eid, created)] = submit(conn, acct, [_email("a@example.test", "bad@example.test", "c@example.test")])
    assert created
    with any_store.read() as conn:
        view = queries.get_email(conn, acct, eid)
    got = {r["address"]: (r["kind"], r["status"]) for r in view["recipients"]}
    assert got == {"a@example.test": ("to", "spooled"), "bad@example.test": ("cc", "rejected"),
                   "c@example.test": ("bcc", "spooled")}
    rejected = next(r for r in view["recipients"] if r["status"] == "rejected")
    assert "suppression list" in rejected["reason"]
    assert [e["type"] for e in view["timeline"]].count("creating") == 3


def test_idempotency_key_returns_same_email(any_store: Store) -> None:
    acct = _setup(any_store)
    with any_store.write() as conn:
        [(first, c1)] = submit(conn, acct, [_email("a@example.test", key="k1")])
    with any_store.write() as conn:
        [(second, c2)] = submit(conn, acct, [_email("a@example.test", key="k1")])
    assert (first, c1, c2) == (second, True, False)


def test_transitions_apply_ignore_and_dedupe(any_store: Store) -> None:
    acct = _setup(any_store)
    with any_store.write() as conn:
        [(eid, _)] = submit(conn, acct, [_email("a@example.test")])
    with any_store.read() as conn:
        rid = queries.get_email(conn, acct, eid)["recipients"][0]["id"]

    def rec(ch: Change) -> Outcome:
        with any_store.write() as conn:
            return record(conn, ch)

    assert rec(Change(rid, "sent", reason="250 ok")) is Outcome.APPLIED
    assert rec(Change(rid, "sent")) is Outcome.IGNORED  # sent → sent is not a transition
    dsn = Change(rid, "hard_bounce", reason="5.1.1 user unknown", dedupe_key="dsn:1")
    assert rec(dsn) is Outcome.APPLIED
    assert rec(dsn) is Outcome.IGNORED  # already hard_bounce: the same report changes nothing
    assert rec(Change(rid, "deferred")) is Outcome.IGNORED  # stale report after the bounce
    assert rec(Change(rid, "opened", dedupe_key="o1")) is Outcome.APPLIED
    assert rec(Change(rid, "opened", dedupe_key="o1")) is Outcome.DUPLICATE
    assert rec(Change("nope", "sent")) is Outcome.MISSING
    with any_store.read() as conn:
        view = queries.get_email(conn, acct, eid)
        n = conn.execute(select(func.count()).select_from(events).where(events.c.recipient_id == rid)).scalar()
    assert view["recipients"][0]["status"] == "hard_bounce"
    assert view["recipients"][0]["reason"] == "5.1.1 user unknown"
    assert [e["type"] for e in view["timeline"]] == ["creating", "spooled", "sent", "hard_bounce", "opened"]
    assert n == 5


def test_same_dedupe_key_for_a_status_twice_is_a_duplicate(any_store: Store) -> None:
    acct = _setup(any_store)
    with any_store.write() as conn:
        [(eid, _)] = submit(conn, acct, [_email("a@example.test")])
        rid = queries.get_email(conn, acct, eid)["recipients"][0]["id"]
        assert record(conn, Change(rid, "deferred", dedupe_key="att1")) is Outcome.APPLIED
        assert record(conn, Change(rid, "deferred", dedupe_key="att1")) is Outcome.DUPLICATE
        assert record(conn, Change(rid, "deferred", dedupe_key="att2")) is Outcome.APPLIED


def test_stats_count_statuses_and_events(any_store: Store) -> None:
    acct = _setup(any_store)
    with any_store.write() as conn:
        suppressions.add(conn, acct, "x@example.test", "manual", "manual")
        submit(conn, acct, [_email("a@example.test", "x@example.test")])
    with any_store.read() as conn:
        st = queries.stats(conn, acct)
    assert st["statuses"] == {"spooled": 1, "rejected": 1}
    assert st["events"] == {"creating": 2, "spooled": 1, "rejected": 1}


def test_suppression_search_and_remove(any_store: Store) -> None:
    acct = _setup(any_store)
    with any_store.write() as conn:
        assert suppressions.add(conn, acct, "a@example.test", "r", "manual")
        assert not suppressions.add(conn, acct, "A@example.test", "again", "manual")
        rows, total = suppressions.search(conn, acct, "a@ex")
        assert total == 1 and rows[0]["reason"] == "r"
        suppressions.remove(conn, acct, "a@example.test")
        assert suppressions.search(conn, acct)[1] == 0
