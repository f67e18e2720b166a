"""kill -9 of `mailtrack serve` with 10,000 webhook events pending: after a restart every event arrives."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy import func, select

from mailtrack.store import accounts, submit
from mailtrack.store import webhooks as wh
from mailtrack.store.db import open_store
from mailtrack.store.schema import webhook_deliveries, webhook_outbox
from mailtrack.store.submit import NewEmail, NewRecipient
from tests.conftest import _truncate_pg
from tests.test_delivery_crash import start_service, stop
from tests.webhook_receiver import Receiver

N = 10_000
# a generous timeout: on a busy machine a 1 s one makes the dispatcher resend batches the receiver
# did get (at least once, correctly), and this test counts only the duplicates the kill may cause
SERVICE = {"MAILTRACK_WEBHOOK_ALLOW_PRIVATE": "true", "MAILTRACK_WEBHOOK_TIMEOUT": "10s",
           "MAILTRACK_WEBHOOK_RETRY_SCHEDULE": "0.5s"}


@pytest.mark.slow
@pytest.mark.parametrize("engine", ["sqlite", "postgresql"])
async def test_kill_9_with_events_pending_loses_none(tmp_path: Path, engine: str, request: pytest.FixtureRequest
                                                     ) -> None:
    url = f"sqlite:///{tmp_path}/mailtrack.db" if engine == "sqlite" else request.getfixturevalue("pg_schema_url")
    store = open_store(url)
    if engine == "postgresql":  # the run's schema is shared: start from empty tables, as on SQLite
        _truncate_pg(store)
    receiver = Receiver().start()
    log = tmp_path / "serve.log"
    try:
        with store.write() as conn:
            acct = accounts.get_or_create_account(conn, "acme")
            wh.create_endpoint(conn, acct, receiver.url(), ["spooled"], batch=True, now=time.time())
        for start in range(0, N, 1000):
            with store.write() as conn:
                submit.submit(conn, acct, [NewEmail("ops@acme.test", [
                    NewRecipient("", f"u{start + e * 50 + j}@example.test", "to") for j in range(50)],
                    f"Invoice {start + e}", text="hi") for e in range(20)])
        with store.read() as conn:
            assert conn.execute(select(func.count()).select_from(webhook_outbox)).scalar_one() == N

        proc = start_service(url, 9, log, **SERVICE)
        try:
            deadline = time.monotonic() + 120
            while len(receiver.events()) < N // 4:
                assert proc.poll() is None, log.read_text()
                assert time.monotonic() < deadline, "too few events sent in 120 s"
                await asyncio.sleep(0.01)
            proc.kill()  # SIGKILL: no cleanup of any kind
            proc.wait()
        finally:
            await asyncio.to_thread(stop, proc)
        at_kill = len(receiver.events())
        with store.read() as conn:
            held = conn.execute(select(func.count()).select_from(webhook_deliveries).where(
                webhook_deliveries.c.state == "pending", webhook_deliveries.c.lease_owner.is_not(None))).scalar_one()
        assert at_kill < N, "the kill should land mid-way"

        proc = start_service(url, 9, log, **SERVICE)
        try:
            deadline = time.monotonic() + 300  # the killed process's leases expire first (3 × timeout + 5 s)
            while len({e["id"] for e in receiver.events()}) < N:
                assert proc.poll() is None, log.read_text()
                assert time.monotonic() < deadline, f"only {len({e['id'] for e in receiver.events()})} of {N}"
                await asyncio.sleep(0.1)
        finally:
            await asyncio.to_thread(stop, proc)
        with store.read() as conn:
            # the worker's delivery attempts add other events (deferred …): the endpoint wants spooled only
            wanted = {f"evt_{i}" for i in conn.execute(select(webhook_outbox.c.id).where(
                webhook_outbox.c.type == "spooled")).scalars()}
        counts = Counter(e["id"] for e in receiver.events())
        assert set(counts) == wanted
        dupes = sum(n - 1 for n in counts.values())
        # duplicates only for deliveries that were held (in flight) by the killed process
        assert dupes <= held, (dupes, held)
    finally:
        receiver.stop()
        store.dispose()
