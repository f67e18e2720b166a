"""Retries to a slow destination never hold fresh mail to other destinations back."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from sqlalchemy import select, update

from mailtrack.delivery.worker import Worker
from mailtrack.simulator import Simulator
from mailtrack.store import accounts, submit
from mailtrack.store.db import Store
from mailtrack.store.schema import recipients
from mailtrack.store.submit import NewEmail, NewRecipient
from tests.conftest import make_config

SLOW, FAST = "slow.mailtrack.test", "fast.mailtrack.test"


def spool(store: Store, addresses: list[str]) -> None:
    with store.write() as conn:
        acct = accounts.get_or_create_account(conn, "acme")
        submit.submit(conn, acct, [NewEmail(from_addr="ops@acme.test", subject="S", text="Hello\n", to_header=a,
                                            recipients=[NewRecipient("", a, "to")]) for a in addresses])


def statuses_of(store: Store, domain: str) -> list[str]:
    with store.read() as conn:
        return list(conn.execute(select(recipients.c.status).where(recipients.c.domain == domain)).scalars())


async def test_fresh_mail_passes_a_backlog_of_slow_retries(any_store: Store, tmp_path: Path) -> None:
    async with Simulator(domain=SLOW, slow_delay=4.0, keep=1000) as slow, Simulator(domain=FAST) as fast:
        config = make_config(tmp_path, transport_map=f"{SLOW}=127.0.0.1:{slow.port}, {FAST}=127.0.0.1:{fast.port}",
                             max_connections_per_host=2, smtp_timeout="30s", delivery_lease="10m")
        # 150 retries to a slow destination, due long before the fresh mail: first in the queue
        spool(any_store, [f"slow+{i}@{SLOW}" for i in range(150)])
        with any_store.write() as conn:
            conn.execute(update(recipients).where(recipients.c.domain == SLOW)
                         .values(status="deferred", attempts=1, next_attempt_at=time.time() - 600))
        spool(any_store, [f"user+{i}@{FAST}" for i in range(20)])
        # a window of 100 in flight: without a cap the slow retries would fill it for a minute or more
        worker = Worker(config, any_store, batch_size=50, max_inflight=100)
        assert worker.retry_cap < 100
        task = asyncio.create_task(worker.run())
        try:
            deadline = time.monotonic() + 30
            while (await asyncio.to_thread(statuses_of, any_store, FAST)).count("sent") < 20:
                assert not task.done(), task
                assert time.monotonic() < deadline, "fresh mail waited behind the slow retries"
                await asyncio.sleep(0.1)
            slow_now = await asyncio.to_thread(statuses_of, any_store, SLOW)
            assert slow_now.count("sent") < 150  # the slow ones were really still going on
            with any_store.read() as conn:
                held = conn.execute(select(recipients.c.id).where(recipients.c.domain == SLOW,
                                                                  recipients.c.lease_owner.is_not(None))).all()
            assert 0 < len(held) <= worker.retry_cap
        finally:
            await worker.stop(grace=0.5)
            await asyncio.wait_for(task, 60)
