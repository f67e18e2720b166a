"""Scale-out: two `mailtrack worker` processes share one PostgreSQL queue; nobody is sent twice.

N is 10,000 as the issue asks (about 15 s here); MAILTRACK_SCALE_N changes it.
"""

from __future__ import annotations

import asyncio
import os
import re
import time
from pathlib import Path

import pytest

from mailtrack.simulator import Simulator
from mailtrack.store.db import open_store
from tests.conftest import _truncate_pg
from tests.test_delivery_crash import SIM, received, spool, start_worker, statuses, stop

N = int(os.environ.get("MAILTRACK_SCALE_N", "10000"))


@pytest.mark.pg
@pytest.mark.slow
async def test_two_workers_on_postgresql_send_each_recipient_once(pg_schema_url: str, tmp_path: Path) -> None:
    store = open_store(pg_schema_url)
    _truncate_pg(store)
    logs = [tmp_path / "w1.log", tmp_path / "w2.log"]
    try:
        ids = spool(store, N, per_email=50)
        async with Simulator(domain=SIM, keep=N + 1000) as sim:
            t0 = time.monotonic()
            procs = [start_worker(pg_schema_url, sim.port, log) for log in logs]
            try:
                deadline = time.monotonic() + max(300, N / 20)  # a deadline for finishing at all, not a speed check
                while (await asyncio.to_thread(statuses, store)).get("sent", 0) < N:
                    assert all(p.poll() is None for p in procs), [log.read_text() for log in logs]
                    assert time.monotonic() < deadline, "delivery did not finish in time"
                    await asyncio.sleep(0.2)
                took = time.monotonic() - t0
            finally:
                for p in procs:
                    await asyncio.to_thread(stop, p)
            got = received(sim)
    finally:
        store.dispose()
    print(f"two workers on PostgreSQL: {N} recipients in {took:.1f} s ({N / took:.0f} msg/s incl. start-up)")
    assert set(got) == ids
    assert max(got.values()) == 1, f"{sum(c > 1 for c in got.values())} recipients were sent twice"
    claimed = []
    for log in logs:
        m = re.search(r"stopped: claimed (\d+), committed (\d+)", log.read_text())
        assert m is not None, log.read_text()
        claimed.append(int(m.group(1)))
    assert sum(claimed) == N and all(c > 0 for c in claimed), claimed  # both really took part
