"""The delivery worker end to end: real app and store, the simulator as the real SMTP peer on loopback."""

from __future__ import annotations

import asyncio
import email
import time
from collections.abc import AsyncIterator, Callable
from email import policy
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.smtp import SMTP, Envelope, Session
from sqlalchemy import select

from mailtrack import tokens
from mailtrack.config import Config
from mailtrack.delivery.worker import Worker
from mailtrack.simulator import Simulator
from mailtrack.store import queries, suppressions
from mailtrack.store.db import Store
from mailtrack.store.schema import recipients
from tests.conftest import Api, email_body, make_config
from tests.helpers.worker import run_until

SIM = "sim.mailtrack.test"
FAST = {"retry_schedule": "0.2s", "max_queue_age": "1.5s", "smtp_timeout": "2s", "delivery_lease": "3s"}


def sim_config(tmp_path: Path, port: int, **over: Any) -> Config:
    return make_config(tmp_path, transport_map=f"{SIM}=127.0.0.1:{port}", **{**FAST, **over})


def a(local: str) -> str:
    return f"{local}@{SIM}"


def all_final(store: Store) -> Callable[[], bool]:
    def check() -> bool:
        with store.read() as conn:
            rows = conn.execute(select(recipients.c.status)).scalars().all()
        return bool(rows) and all(s not in ("spooled", "deferred", "creating") for s in rows)
    return check


def by_address(store: Store, account: int, email_id: str) -> tuple[dict[str, Any], dict[str, Any]]:
    with store.read() as conn:
        view = queries.get_email(conn, account, email_id)
    return {r["address"]: r for r in view["recipients"]}, view


class Sink:
    """A plain aiosmtpd handler that keeps whole messages (the simulator keeps only headers)."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, list[str], bytes]] = []

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.messages.append((envelope.mail_from or "", list(envelope.rcpt_tos), envelope.original_content or b""))
        return "250 2.0.0 Ok: queued as SINK"


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    async with Simulator(followup_delay=0.05) as s:
        yield s


@pytest.fixture
async def sink() -> AsyncIterator[tuple[Sink, int]]:
    handler = Sink()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: SMTP(handler, hostname="sink.test"), "127.0.0.1", 0)
    yield handler, int(server.sockets[0].getsockname()[1])
    server.close()
    await server.wait_closed()


async def test_each_outcome_on_one_connection(sim: Simulator, any_store: Store, tmp_path: Path) -> None:
    store = any_store  # SQLite, and PostgreSQL when configured
    # one connection for the domain: a refused recipient must not disturb the next message on it
    config = sim_config(tmp_path, sim.port, max_connections_per_host=1)
    api = Api(store, config)
    body = email_body(
        to=[a("bounce"), a("success"), a("mailbox-full"), a("blocked")],
        cc=[a("defer-then-accept"), a("success+cc")], bcc=[a("success+bcc")],
    )
    r = api.post("/api/v1/emails", body)
    assert r.status_code == 202, r.text
    eid = r.json()["id"]
    acct = 1
    worker = Worker(config, store)
    await run_until(worker, all_final(store))

    rc, view = by_address(store, acct, eid)
    assert rc[a("success")]["status"] == "sent"
    assert rc[a("success")]["last_reply"].startswith("250 2.0.0")
    assert rc[a("success")]["reason"] is None
    assert rc[a("success+cc")]["status"] == "sent"
    assert rc[a("success+bcc")]["status"] == "sent"
    bounce = rc[a("bounce")]
    assert bounce["status"] == "hard_bounce" and "5.1.1" in bounce["reason"]
    assert rc[a("mailbox-full")]["status"] == "soft_bounce" and "5.2.2" in rc[a("mailbox-full")]["reason"]
    assert rc[a("blocked")]["status"] == "soft_bounce" and "5.7.1" in rc[a("blocked")]["reason"]
    dta = rc[a("defer-then-accept")]
    assert dta["status"] == "sent" and dta["attempts"] == 3 and dta["reason"] is None
    kinds = [ev["type"] for ev in view["timeline"] if ev["address"] == a("defer-then-accept")]
    assert kinds == ["creating", "spooled", "deferred", "deferred", "sent"]

    with store.read() as conn:
        found = suppressions.suppressed_among(conn, acct, {a("bounce"), a("success"), a("mailbox-full")})
        rows, _ = suppressions.search(conn, acct, q="bounce@")
    assert set(found) == {a("bounce")} and "5.1.1" in found[a("bounce")]
    assert rows[0]["source"] == "hard_bounce"

    # the bounce was refused first, yet later messages went over that same connection
    assert worker._sender is not None
    assert worker._sender.messages_per_connection[0] >= 6

    got = {m.rcpt_tos[0]: m.headers for m in sim.state.messages}
    assert set(got) == {a("success"), a("success+cc"), a("success+bcc"), a("defer-then-accept")}
    for rcpt, h in got.items():
        assert h["To"] == f"{a('bounce')}, {a('success')}, {a('mailbox-full')}, {a('blocked')}"
        assert h["Cc"] == f"{a('defer-then-accept')}, {a('success+cc')}"
        assert "Bcc" not in h
        assert "success+bcc" not in str(h)  # the Bcc address appears in no header, not even its own
        rid = rc[rcpt]["id"]
        assert tokens.recipient_from_mailtrack_id(config.secret_key, h["X-Mailtrack-ID"]) == rid
        assert tokens.parse_message_id(config.secret_key, h["Message-ID"], config.bounce_domain) == (rid, eid)
    assert {m.mail_from for m in sim.state.messages} == {
        f"bounces+{__import__('mailtrack.tokens').tokens.sign('test-secret', 'verp', rc[x]['id'])}"
        f"@{config.bounce_domain}" for x in got
    }


async def test_defer_gives_up_after_max_age(sim: Simulator, sqlite_store: Store, tmp_path: Path) -> None:
    config = sim_config(tmp_path, sim.port)
    api = Api(sqlite_store, config)
    eid = api.post("/api/v1/emails", email_body(to=[a("defer")], cc=[], bcc=[])).json()["id"]
    await run_until(Worker(config, sqlite_store), all_final(sqlite_store))
    rc, view = by_address(sqlite_store, 1, eid)
    r = rc[a("defer")]
    assert r["status"] == "soft_bounce"
    assert r["reason"].startswith(f"gave up after {r['attempts']} attempts: 451 4.7.1")
    assert r["attempts"] >= 3  # 1.5 s of retries every ~0.2 s
    kinds = [ev["type"] for ev in view["timeline"]]
    assert kinds.count("deferred") == r["attempts"] - 1 and kinds[-1] == "soft_bounce"


async def test_disconnect_during_data_is_deferred(sim: Simulator, sqlite_store: Store, tmp_path: Path) -> None:
    config = sim_config(tmp_path, sim.port, max_queue_age="1h", retry_schedule="1h")
    api = Api(sqlite_store, config)
    eid = api.post("/api/v1/emails", email_body(to=[a("disconnect"), a("success")], cc=[], bcc=[])).json()["id"]

    def settled() -> bool:
        with sqlite_store.read() as conn:
            return set(conn.execute(select(recipients.c.status)).scalars()) == {"deferred", "sent"}

    await run_until(Worker(config, sqlite_store), settled)
    rc, _ = by_address(sqlite_store, 1, eid)
    d = rc[a("disconnect")]
    assert d["status"] == "deferred" and d["next_attempt_at"] is not None
    assert "DATA" in d["reason"] and rc[a("success")]["status"] == "sent"


async def test_unreachable_host_is_deferred(sqlite_store: Store, tmp_path: Path) -> None:
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = sim_config(tmp_path, port, retry_schedule="1h", max_queue_age="1h")
    api = Api(sqlite_store, config)
    eid = api.post("/api/v1/emails", email_body(to=[a("x1"), a("x2")], cc=[], bcc=[])).json()["id"]

    def deferred() -> bool:
        with sqlite_store.read() as conn:
            return set(conn.execute(select(recipients.c.status)).scalars()) == {"deferred"}

    await run_until(Worker(config, sqlite_store), deferred)
    rc, _ = by_address(sqlite_store, 1, eid)
    for r in rc.values():
        assert r["reason"].startswith(f"could not connect to 127.0.0.1:{port}")
        assert r["attempts"] == 1
        with sqlite_store.read() as conn:
            due = conn.execute(select(recipients.c.next_attempt_at).where(recipients.c.id == r["id"])).scalar_one()
        assert 3000 < due - time.time() < 4000  # 1 h ± 10 %


async def test_require_tls_refuses_plaintext(sim: Simulator, sqlite_store: Store, tmp_path: Path) -> None:
    config = sim_config(tmp_path, sim.port, require_tls="true", retry_schedule="1h", max_queue_age="1h")
    api = Api(sqlite_store, config)
    eid = api.post("/api/v1/emails", email_body(to=[a("success")], cc=[], bcc=[])).json()["id"]

    def deferred() -> bool:
        with sqlite_store.read() as conn:
            return set(conn.execute(select(recipients.c.status)).scalars()) == {"deferred"}

    await run_until(Worker(config, sqlite_store), deferred)
    rc, _ = by_address(sqlite_store, 1, eid)
    assert "does not offer STARTTLS" in rc[a("success")]["reason"]
    assert sim.state.accepted_total == 0


async def test_suppressed_after_submission_is_rejected(sim: Simulator, sqlite_store: Store, tmp_path: Path) -> None:
    config = sim_config(tmp_path, sim.port)
    api = Api(sqlite_store, config)
    eid = api.post("/api/v1/emails", email_body(to=[a("success"), a("success+ok")], cc=[], bcc=[])).json()["id"]
    assert api.post("/api/v1/suppressions", {"address": a("success"), "reason": "asked us to stop"}).status_code < 300
    await run_until(Worker(config, sqlite_store), all_final(sqlite_store))
    rc, _ = by_address(sqlite_store, 1, eid)
    assert rc[a("success")]["status"] == "rejected" and "asked us to stop" in rc[a("success")]["reason"]
    assert rc[a("success+ok")]["status"] == "sent"
    assert [m.rcpt_tos for m in sim.state.messages] == [(a("success+ok"),)]


async def test_wake_delivers_without_waiting_for_the_poll(sink: tuple[Sink, int], sqlite_store: Store,
                                                          tmp_path: Path) -> None:
    handler, port = sink
    config = make_config(tmp_path, transport_map=f"*=127.0.0.1:{port}", **FAST)
    worker = Worker(config, sqlite_store, poll_interval=30)
    api = Api(sqlite_store, config)
    api.app.state.on_spooled = worker.wake_threadsafe
    task = asyncio.create_task(worker.run())
    await asyncio.sleep(0.3)  # the worker found nothing and now sleeps for 30 s unless woken
    t0 = time.monotonic()
    await asyncio.to_thread(api.post, "/api/v1/emails", email_body(to=["z@example.test"], cc=[], bcc=[]))
    while not handler.messages and time.monotonic() - t0 < 5:
        await asyncio.sleep(0.01)
    elapsed = time.monotonic() - t0
    await worker.stop()
    await task
    assert handler.messages and elapsed < 2.0


async def test_tracked_html_and_bcc_in_delivered_bytes(sink: tuple[Sink, int], sqlite_store: Store,
                                                       tmp_path: Path) -> None:
    handler, port = sink
    config = make_config(tmp_path, transport_map=f"*=127.0.0.1:{port}", **FAST)
    api = Api(sqlite_store, config)
    html = '<html><body><p>Grüße</p><a href="https://acme.test/invoice/42">Invoice</a></body></html>'
    body = email_body(to=["t@example.test"], cc=[], bcc=["hidden@example.test"], html=html, text="Grüße " * 300,
                      tracking=True, subject="Rechnung Nr. 42 – Grüße")
    eid = api.post("/api/v1/emails", body).json()["id"]
    await run_until(Worker(config, sqlite_store), all_final(sqlite_store))
    rc, _ = by_address(sqlite_store, 1, eid)
    assert {r["status"] for r in rc.values()} == {"sent"}
    assert len(handler.messages) == 2
    for _mail_from, rcpts, raw in handler.messages:
        assert b"hidden@example.test" not in raw
        assert max(len(line) for line in raw.split(b"\r\n")) <= 998
        assert raw.isascii()
        msg = email.message_from_bytes(raw, policy=policy.default)
        assert msg["Subject"] == "Rechnung Nr. 42 – Grüße"
        html_part = msg.get_body(("html",))
        assert html_part is not None
        content = html_part.get_content()
        rid = rc[rcpts[0]]["id"]
        assert f"/o/{rid}-" in content and f"/c/{rid}-0-" in content
        assert "https://acme.test/invoice/42" not in content
        text_part = msg.get_body(("plain",))
        assert text_part is not None and text_part.get_content().startswith("Grüße Grüße")


async def test_lease_is_renewed_while_a_slow_server_holds_the_message(sqlite_store: Store, tmp_path: Path) -> None:
    from mailtrack.store import delivery as dstore

    async with Simulator(slow_delay=2.0) as slow_sim:
        config = sim_config(tmp_path, slow_sim.port, smtp_timeout="5s")
        api = Api(sqlite_store, config)
        eid = api.post("/api/v1/emails", email_body(to=[a("slow")], cc=[], bcc=[])).json()["id"]
        worker = Worker(config, sqlite_store, lease=0.6)
        task = asyncio.create_task(worker.run())
        try:
            await asyncio.sleep(1.5)  # well past the first lease, still inside the slow DATA
            with sqlite_store.write() as conn:
                stolen = dstore.claim(conn, "another-worker", time.time(), 60, 10).recipients
            assert stolen == [] and worker.inflight == 1
        finally:
            await run_until_done(worker, task, all_final(sqlite_store))
        rc, _ = by_address(sqlite_store, 1, eid)
        assert rc[a("slow")]["status"] == "sent"
        assert len(slow_sim.state.messages) == 1


async def run_until_done(worker: Worker, task: asyncio.Task[None], done: Callable[[], bool]) -> None:
    deadline = time.monotonic() + 30
    while not await asyncio.to_thread(done) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    await worker.stop()
    await task


async def test_stop_releases_what_was_not_attempted(sqlite_store: Store, tmp_path: Path) -> None:
    async with Simulator(slow_delay=0.8) as slow_sim:
        config = sim_config(tmp_path, slow_sim.port, smtp_timeout="5s", max_connections_per_host=1,
                            delivery_lease="10m")
        api = Api(sqlite_store, config)
        eid = api.post("/api/v1/emails", email_body(to=[a(f"slow+{i}") for i in range(5)], cc=[], bcc=[])).json()["id"]
        worker = Worker(config, sqlite_store)
        task = asyncio.create_task(worker.run())
        await asyncio.sleep(0.4)  # the first message is inside its slow DATA, four wait in the queue
        t_stop = time.time()
        await worker.stop()
        await task
    rc, _ = by_address(sqlite_store, 1, eid)
    statuses = sorted(r["status"] for r in rc.values())
    assert statuses == ["sent", "spooled", "spooled", "spooled", "spooled"]  # the one in progress finished
    with sqlite_store.read() as conn:
        waiting = conn.execute(select(recipients).where(recipients.c.status == "spooled")).mappings().all()
    # released: no owner, due at once — not after the 10 minute lease
    assert all(r["lease_owner"] is None and r["next_attempt_at"] <= t_stop + 2 for r in waiting)
    assert len(slow_sim.state.messages) == 1
