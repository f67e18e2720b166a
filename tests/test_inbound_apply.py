"""Reports received over real SMTP change the right recipients: bounces, complaints, auto-replies, delays."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import select

from mailtrack.store import inbound, queries, suppressions
from mailtrack.store.db import Store
from mailtrack.store.schema import recipients
from mailtrack.store.submit import NewEmail, NewRecipient, submit
from mailtrack.store.transitions import Change, record
from tests.conftest import Api
from tests.test_inbound_payloads import (
    Sent,
    arf,
    auto_reply,
    deliver,
    dsn,
    inbound_config,
    inbound_rows,
    running,
    sent_email,
    status_of,
    timeline_of,
)

ALICE = "alice@example.test"
BOB = "bob@example.test"
UNKNOWN = [(ALICE, "failed", "5.1.1", "550 5.1.1 <alice@example.test>: user unknown")]


def _suppressed(store: Store, account_id: int, address: str) -> dict[str, str] | None:
    with store.read() as conn:
        rows, _ = suppressions.search(conn, account_id, address)
    return next(({"source": r["source"], "reason": r["reason"]} for r in rows if r["address"] == address), None)


async def test_dsn_after_sent_is_a_hard_bounce_and_suppresses(any_store: Store, tmp_path: Path) -> None:
    config = inbound_config(tmp_path)
    sent = sent_email(any_store, ALICE, BOB)
    async with running(config, any_store) as server:
        reply = await deliver(server, dsn(sent.verp(config, ALICE), UNKNOWN, sent.headers(config, ALICE)),
                              sent.verp(config, ALICE))
        assert reply.startswith("2.0.0")
        await server.drain()
    alice = status_of(any_store, sent, ALICE)
    assert alice["status"] == "hard_bounce"
    assert alice["reason"].startswith("5.1.1 user_unknown: ")
    assert "user unknown" in alice["reason"]
    assert timeline_of(any_store, sent, ALICE) == ["creating", "spooled", "sent", "hard_bounce"]
    assert status_of(any_store, sent, BOB)["status"] == "sent"  # the other recipient is untouched
    got = _suppressed(any_store, sent.account_id, ALICE)
    assert got is not None and got["source"] == "hard_bounce" and "5.1.1" in got["reason"]
    assert _suppressed(any_store, sent.account_id, BOB) is None
    [row] = inbound_rows(any_store)
    assert (row["state"], row["kind"], row["recipient_id"]) == ("applied", "bounce", sent.rids[ALICE])
    assert row["summary"]["correlated_by"] == "verp"


async def test_same_dsn_twice_records_one_event(any_store: Store, tmp_path: Path) -> None:
    config = inbound_config(tmp_path)
    sent = sent_email(any_store, ALICE, BOB)
    bounce = dsn(sent.verp(config, ALICE), UNKNOWN, sent.headers(config, ALICE))
    # a delay notice is an event the transition table does not guard: only the dedupe key stops a copy
    delay = dsn(sent.verp(config, BOB), [(BOB, "delayed", "4.4.1", "connection timed out")],
                sent.headers(config, BOB), subject="Delayed Mail (still being retried)")
    async with running(config, any_store) as server:
        for raw, rcpt in ((bounce, ALICE), (bounce, ALICE), (delay, BOB), (delay, BOB)):
            await deliver(server, raw, sent.verp(config, rcpt))
        await server.drain()
    assert timeline_of(any_store, sent, ALICE).count("hard_bounce") == 1
    assert timeline_of(any_store, sent, BOB).count("delay_notice") == 1
    rows = inbound_rows(any_store)
    assert len(rows) == 4 and {r["state"] for r in rows} == {"applied"}  # every copy is kept
    outcomes = sorted((r["summary"]["effects"][0]["type"], r["summary"]["effects"][0]["outcome"]) for r in rows)
    assert outcomes == [("delay_notice", "applied"), ("delay_notice", "duplicate"),
                        ("hard_bounce", "applied"), ("hard_bounce", "ignored")]


async def test_soft_bounce_does_not_suppress(any_store: Store, tmp_path: Path) -> None:
    config = inbound_config(tmp_path)
    sent = sent_email(any_store, ALICE)
    raw = dsn(sent.verp(config, ALICE), [(ALICE, "failed", "5.2.2", "552 5.2.2 mailbox full")],
              sent.headers(config, ALICE))
    async with running(config, any_store) as server:
        await deliver(server, raw, sent.verp(config, ALICE))
        await server.drain()
    assert status_of(any_store, sent, ALICE)["status"] == "soft_bounce"
    assert _suppressed(any_store, sent.account_id, ALICE) is None


async def test_hard_bounce_suppression_can_be_switched_off(sqlite_store: Store, tmp_path: Path) -> None:
    config = inbound_config(tmp_path, suppress_hard_bounces="false")
    sent = sent_email(sqlite_store, ALICE)
    async with running(config, sqlite_store) as server:
        await deliver(server, dsn(sent.verp(config, ALICE), UNKNOWN, sent.headers(config, ALICE)),
                      sent.verp(config, ALICE))
        await server.drain()
    assert status_of(sqlite_store, sent, ALICE)["status"] == "hard_bounce"
    assert _suppressed(sqlite_store, sent.account_id, ALICE) is None


async def test_arf_complaint_marks_complained_and_suppresses(any_store: Store, tmp_path: Path) -> None:
    config = inbound_config(tmp_path)
    api = Api(any_store, config)  # key for account "acme", the account sent_email uses
    sent = sent_email(any_store, ALICE, BOB)
    fbl = f"fbl@{config.bounce_domain}"  # feedback loops report to a fixed address: correlated by headers
    async with running(config, any_store) as server:
        await deliver(server, arf(fbl, ALICE, sent.headers(config, ALICE, verp=False)), fbl)
        await server.drain()
    body = api.get(f"/api/v1/emails/{sent.email_id}").json()
    by_addr = {r["address"]: r for r in body["recipients"]}
    assert by_addr[ALICE]["complained"] is True and by_addr[BOB]["complained"] is False
    assert by_addr[ALICE]["status"] == "sent"  # a complaint is an event, not a status
    [event] = [e for e in body["timeline"] if e["type"] == "complained"]
    assert event["recipient_id"] == sent.rids[ALICE]
    assert event["reason"] == "Marked as Spam" and event["data"]["feedback_type"] == "abuse"
    got = _suppressed(any_store, sent.account_id, ALICE)
    assert got is not None and got["source"] == "complaint"
    listed = api.get("/api/v1/suppressions").json()["suppressions"]
    assert [(s["address"], s["source"]) for s in listed] == [(ALICE, "complaint")]


async def test_not_spam_feedback_is_no_complaint(sqlite_store: Store, tmp_path: Path) -> None:
    config = inbound_config(tmp_path)
    sent = sent_email(sqlite_store, ALICE)
    async with running(config, sqlite_store) as server:
        raw = arf(sent.verp(config, ALICE), ALICE, sent.headers(config, ALICE), feedback_type="not-spam")
        await deliver(server, raw, sent.verp(config, ALICE))
        await server.drain()
    assert "complained" not in timeline_of(sqlite_store, sent, ALICE)
    assert _suppressed(sqlite_store, sent.account_id, ALICE) is None


async def test_auto_reply_is_an_event_only(any_store: Store, tmp_path: Path) -> None:
    config = inbound_config(tmp_path)
    sent = sent_email(any_store, ALICE)
    msg_id = f"<{sent.rids[ALICE]}.{sent.email_id}@{config.bounce_domain}>"
    async with running(config, any_store) as server:
        await deliver(server, auto_reply(sent.verp(config, ALICE), ALICE, msg_id), sent.verp(config, ALICE))
        await server.drain()
    assert timeline_of(any_store, sent, ALICE) == ["creating", "spooled", "sent", "auto_reply"]
    alice = status_of(any_store, sent, ALICE)
    assert (alice["status"], alice["complained"]) == ("sent", False)
    assert _suppressed(any_store, sent.account_id, ALICE) is None


async def test_delay_dsn_is_a_delay_notice(any_store: Store, tmp_path: Path) -> None:
    config = inbound_config(tmp_path)
    sent = sent_email(any_store, ALICE)
    raw = dsn(sent.verp(config, ALICE), [(ALICE, "delayed", "4.4.1", "connection timed out")],
              sent.headers(config, ALICE), subject="Delayed Mail (still being retried)")
    async with running(config, any_store) as server:
        await deliver(server, raw, sent.verp(config, ALICE))
        await server.drain()
    assert timeline_of(any_store, sent, ALICE) == ["creating", "spooled", "sent", "delay_notice"]
    assert status_of(any_store, sent, ALICE)["status"] == "sent"


async def test_report_without_correlation_is_an_orphan(any_store: Store, tmp_path: Path) -> None:
    config = inbound_config(tmp_path)
    sent = sent_email(any_store, ALICE)
    postmaster = f"postmaster@{config.bounce_domain}"
    headers = "From: someone@else.test\r\nTo: alice@example.test\r\nMessage-ID: <x1@else.test>\r\n"
    async with running(config, any_store) as server:
        assert (await deliver(server, dsn(postmaster, UNKNOWN, headers), postmaster)).startswith("2.0.0")
        # a well-formed VERP address whose token is forged is accepted, then kept as an orphan
        forged = f"bounces+{sent.rids[ALICE]}-{'0' * 32}@{config.bounce_domain}"
        await deliver(server, dsn(forged, UNKNOWN, headers), forged)
        await server.drain()
    rows = inbound_rows(any_store)
    assert [(r["state"], r["kind"], r["recipient_id"]) for r in rows] == [("orphan", "bounce", None)] * 2
    assert rows[0]["summary"]["addresses"] == [ALICE]
    assert status_of(any_store, sent, ALICE)["status"] == "sent"


async def test_correlation_by_message_id_and_mailtrack_id(any_store: Store, tmp_path: Path) -> None:
    config = inbound_config(tmp_path)
    sent = sent_email(any_store, ALICE, BOB)
    postmaster = f"postmaster@{config.bounce_domain}"
    only_mid = sent.headers(config, ALICE, verp=False, mailtrack_id=False)
    only_xid = sent.headers(config, BOB, verp=False, message_id=False)
    bob_unknown = [(BOB, "failed", "5.1.1", "550 5.1.1 no such user")]
    async with running(config, any_store) as server:
        await deliver(server, dsn(postmaster, UNKNOWN, only_mid), postmaster)
        await deliver(server, dsn(postmaster, bob_unknown, only_xid), postmaster)
        await server.drain()
    assert status_of(any_store, sent, ALICE)["status"] == "hard_bounce"
    assert status_of(any_store, sent, BOB)["status"] == "hard_bounce"
    assert sorted(r["summary"]["correlated_by"] for r in inbound_rows(any_store)) == ["mailtrack_id", "message_id"]


async def test_report_naming_co_recipients_affects_only_its_own_recipient(any_store: Store, tmp_path: Path) -> None:
    """A DSN to ALICE's VERP address that also names BOB must not bounce BOB (forgery guard)."""
    config = inbound_config(tmp_path)
    sent = sent_email(any_store, ALICE, BOB, "carol@example.test")
    results = [
        (ALICE, "failed", "5.1.1", "550 5.1.1 user unknown"),
        (BOB, "failed", "4.2.2", "452 4.2.2 mailbox full, gave up"),
        ("stranger@example.test", "failed", "5.1.1", "550 5.1.1 user unknown"),
    ]
    async with running(config, any_store) as server:
        await deliver(server, dsn(sent.verp(config, ALICE), results, sent.headers(config, ALICE)),
                      sent.verp(config, ALICE))
        await server.drain()
    assert status_of(any_store, sent, ALICE)["status"] == "hard_bounce"
    assert status_of(any_store, sent, BOB)["status"] == "sent"
    assert status_of(any_store, sent, "carol@example.test")["status"] == "sent"
    [row] = inbound_rows(any_store)
    assert row["summary"]["unmatched"] == [BOB, "stranger@example.test"]


async def test_bounce_for_a_forwarded_address_lands_on_the_verp_recipient(sqlite_store: Store, tmp_path: Path) -> None:
    config = inbound_config(tmp_path)
    sent = sent_email(sqlite_store, ALICE)
    forwarded = [("alice.private@elsewhere.test", "failed", "5.1.1", "550 5.1.1 user unknown")]
    async with running(config, sqlite_store) as server:
        await deliver(server, dsn(sent.verp(config, ALICE), forwarded, "Subject: x\r\n"), sent.verp(config, ALICE))
        await server.drain()
    assert status_of(sqlite_store, sent, ALICE)["status"] == "hard_bounce"
    with sqlite_store.read() as conn:
        events = queries.recipient_events(conn, sent.account_id, sent.rids[ALICE])["events"]
    bounce = events[-1]
    assert bounce["data"]["reported_address"] == "alice.private@elsewhere.test"
    assert bounce["data"]["correlated_by"] == "verp"


async def test_bounce_overtaking_a_retry_ends_the_retries(any_store: Store, tmp_path: Path) -> None:
    config = inbound_config(tmp_path)
    sent = sent_email(any_store, ALICE)
    with any_store.write() as conn:  # a second recipient, still deferred and due for a retry
        [(eid, _)] = submit(conn, sent.account_id, [NewEmail(from_addr="ops@acme.test", subject="s", text="t",
                                                             recipients=[NewRecipient("", BOB, "to")])])
        [bob] = inbound.recipients_of(conn, eid)
        record(conn, Change(bob["id"], "deferred", reason="451 try later", fields={"next_attempt_at": 9e9}))
    deferred = Sent(sent.account_id, eid, {BOB: bob["id"]})
    failed = [(BOB, "failed", "5.1.1", "550 5.1.1 user unknown")]
    async with running(config, any_store) as server:
        await deliver(server, dsn(deferred.verp(config, BOB), failed, deferred.headers(config, BOB)),
                      deferred.verp(config, BOB))
        await server.drain()
    got = status_of(any_store, deferred, BOB)
    assert (got["status"], got["next_attempt_at"]) == ("hard_bounce", None)
    with any_store.read() as conn:
        row = conn.execute(select(recipients.c.next_attempt_at).where(recipients.c.id == bob["id"])).scalar()
    assert row is None
