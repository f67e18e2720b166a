"""Workers know each other (a row with a heartbeat): a dead worker's recipients are due again at once,
a live worker's never are — whatever the lease says. Every test runs with a lease of 10 minutes, so
only the worker rows can explain a recovery inside the deadlines here."""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy import insert, select, update

from mailtrack.delivery.worker import Worker
from mailtrack.simulator import Simulator
from mailtrack.store import accounts, submit
from mailtrack.store import delivery as dstore
from mailtrack.store.db import Store, open_store
from mailtrack.store.schema import recipients, workers
from mailtrack.store.submit import NewEmail, NewRecipient
from tests.conftest import _truncate_pg, make_config
from tests.test_delivery_crash import SIM, received, spool, start_service, start_worker, statuses, stop

LONG_LEASE = "10m"


def spool_to(store: Store, locals_: list[str]) -> set[str]:
    """One email per address at the simulator; returns the recipient ids."""
    with store.write() as conn:
        acct = accounts.get_or_create_account(conn, "acme")
        submit.submit(conn, acct, [
            NewEmail(from_addr="ops@acme.test", subject=f"Invoice {i}", text="Hello\n", to_header=f"{lp}@{SIM}",
                     recipients=[NewRecipient("", f"{lp}@{SIM}", "to")])
            for i, lp in enumerate(locals_)
        ])
    with store.read() as conn:
        return set(conn.execute(select(recipients.c.id)).scalars())


def held_by(store: Store, owner: str) -> set[str]:
    with store.read() as conn:
        return set(conn.execute(select(recipients.c.id).where(recipients.c.lease_owner == owner)).scalars())


async def until(check: object, timeout: float, what: str) -> float:
    """Poll ``check`` off the loop until it holds; returns how long it took (for the printout only)."""
    t0 = time.monotonic()
    while not await asyncio.to_thread(check):  # type: ignore[arg-type]
        assert time.monotonic() - t0 < timeout, f"timed out after {timeout:.0f} s waiting for {what}"
        await asyncio.sleep(0.1)
    return time.monotonic() - t0


def fake_peer(store: Store, owner: str, ids: int, heartbeat_at: float) -> set[str]:
    """A worker on another machine (its pid cannot be checked from here) holding ``ids`` recipients."""
    now = time.time()
    with store.write() as conn:
        conn.execute(insert(workers).values(id=owner, host="elsewhere", pid=1, process_ns="another-machine",
                                            started_at=now - 60, heartbeat_at=heartbeat_at))
        held = dstore.claim(conn, owner, now, 600, ids).recipients
    return {c.id for c in held}


@pytest.mark.slow
async def test_restart_on_sqlite_resends_what_the_killed_process_held_at_once(tmp_path: Path) -> None:
    n = 2000
    url = f"sqlite:///{tmp_path}/mailtrack.db"
    store = open_store(url)
    log = tmp_path / "serve.log"
    try:
        ids = spool(store, n)
        async with Simulator(domain=SIM, keep=3 * n) as sim:
            proc = start_service(url, sim.port, log, MAILTRACK_DELIVERY_LEASE=LONG_LEASE)
            try:
                deadline = time.monotonic() + 90
                while sim.state.accepted_total < n // 3:
                    assert proc.poll() is None, log.read_text()
                    assert time.monotonic() < deadline, "the service delivered too little in 90 s"
                    await asyncio.sleep(0.005)
                proc.kill()
                proc.wait()
            finally:
                await asyncio.to_thread(stop, proc)
            with store.read() as conn:
                in_flight = set(conn.execute(select(recipients.c.id).where(
                    recipients.c.lease_owner.is_not(None), recipients.c.status == "spooled")).scalars())
            assert in_flight, "the kill should land with recipients in flight"
            proc = start_service(url, sim.port, log, MAILTRACK_DELIVERY_LEASE=LONG_LEASE)
            try:
                # well under the 10-minute lease: only the release at start can explain it
                took = await until(lambda: statuses(store).get("sent", 0) == n, 120, "all sent after the restart")
            finally:
                await asyncio.to_thread(stop, proc)
            got = received(sim)
    finally:
        store.dispose()
    print(f"SQLite: {len(in_flight)} held by the killed process; all {n} sent {took:.1f} s after the restart")
    assert statuses(store) == {"sent": n}
    assert set(got) == ids
    dups = {rid for rid, c in got.items() if c > 1}
    assert dups <= in_flight and all(got[r] == 2 for r in dups)


@pytest.mark.pg
@pytest.mark.slow
async def test_killed_postgresql_worker_is_taken_over_by_the_live_one(pg_schema_url: str, tmp_path: Path) -> None:
    n = 1000
    store = open_store(pg_schema_url)
    _truncate_pg(store)
    logs = [tmp_path / "w1.log", tmp_path / "w2.log"]
    extra = {"MAILTRACK_DELIVERY_LEASE": LONG_LEASE, "MAILTRACK_WORKER_HEARTBEAT": "1s",
             "MAILTRACK_WORKER_DEAD_AFTER": "5s"}
    try:
        ids = spool(store, n, per_email=10)
        async with Simulator(domain=SIM, keep=3 * n) as sim:
            procs = [start_worker(pg_schema_url, sim.port, log, **extra) for log in logs]
            try:
                def both_hold() -> bool:
                    with store.read() as conn:
                        owners = set(conn.execute(select(recipients.c.lease_owner).where(
                            recipients.c.lease_owner.is_not(None))).scalars())
                    return len(owners) == 2
                await until(both_hold, 90, "both workers to hold recipients")
                with store.read() as conn:
                    victim = next(iter(conn.execute(select(workers.c.id).where(
                        workers.c.pid == procs[0].pid)).scalars()))
                procs[0].kill()
                procs[0].wait()
                held = held_by(store, victim)
                took = await until(lambda: statuses(store).get("sent", 0) == n, 120, "all sent by the survivor")
                assert procs[1].poll() is None, logs[1].read_text()
            finally:
                for p in procs:
                    await asyncio.to_thread(stop, p)
            got = received(sim)
    finally:
        store.dispose()
    print(f"PostgreSQL: killed worker held {len(held)}; all {n} sent {took:.1f} s after the kill")
    assert set(got) == ids
    dups = {rid for rid, c in got.items() if c > 1}
    assert dups <= held and all(got[r] == 2 for r in dups)


@pytest.mark.pg
@pytest.mark.slow
async def test_a_slow_smtp_transaction_is_not_a_dead_worker(pg_schema_url: str, tmp_path: Path) -> None:
    """Transactions far longer than the dead-after limit: the other worker never takes them."""
    store = open_store(pg_schema_url)
    _truncate_pg(store)
    logs = [tmp_path / "w1.log", tmp_path / "w2.log"]
    extra = {"MAILTRACK_DELIVERY_LEASE": LONG_LEASE, "MAILTRACK_WORKER_HEARTBEAT": "0.5s",
             "MAILTRACK_WORKER_DEAD_AFTER": "2s", "MAILTRACK_SMTP_TIMEOUT": "60s"}
    try:
        ids = spool_to(store, [f"slow+{i}" for i in range(20)] + [f"fast+{i}" for i in range(200)])
        async with Simulator(domain=SIM, keep=1000, slow_delay=8.0) as sim:
            procs = [start_worker(pg_schema_url, sim.port, log, **extra) for log in logs]
            try:
                await until(lambda: statuses(store).get("sent", 0) == len(ids), 120, "all sent")
                assert all(p.poll() is None for p in procs), [log.read_text() for log in logs]
            finally:
                for p in procs:
                    await asyncio.to_thread(stop, p)
            got = received(sim)
    finally:
        store.dispose()
    assert set(got) == ids
    assert max(got.values()) == 1, f"{sum(c > 1 for c in got.values())} recipients were sent twice"
    assert not any("dead worker" in log.read_text() for log in logs), "a live worker was declared dead"


async def test_a_silent_peer_is_taken_over_and_a_beating_one_never(any_store: Store, tmp_path: Path) -> None:
    """Peers on another machine: only their heartbeat tells whether they live."""
    ids = spool_to(any_store, [f"user+{i}" for i in range(40)])
    async with Simulator(domain=SIM) as sim:
        config = make_config(tmp_path, transport_map=f"*=127.0.0.1:{sim.port}", delivery_lease=LONG_LEASE,
                             worker_heartbeat="0.2s", worker_dead_after="1.5s")
        dead = fake_peer(any_store, "dead-peer", 10, heartbeat_at=time.time() - 3600)
        live = fake_peer(any_store, "live-peer", 10, heartbeat_at=time.time()) if any_store.is_postgres else set()
        stop_beating = threading.Event()

        def keep_beating() -> None:  # what the live peer's heartbeat does
            while not stop_beating.wait(0.2):
                with any_store.write() as conn:
                    conn.execute(update(workers).where(workers.c.id == "live-peer").values(heartbeat_at=time.time()))

        beater = threading.Thread(target=keep_beating, daemon=True)
        beater.start()
        worker = Worker(config, any_store)
        task = asyncio.create_task(worker.run())
        try:
            def sent() -> set[str]:
                with any_store.read() as conn:
                    return set(conn.execute(select(recipients.c.id).where(recipients.c.status == "sent")).scalars())
            await until(lambda: ids - live <= sent(), 30, "everything but the live peer's recipients sent")
            if live:
                # several dead-after periods later the live peer still holds all of its recipients
                t_end = time.monotonic() + 3 * worker.dead_after
                while time.monotonic() < t_end:
                    assert held_by(any_store, "live-peer") == live
                    await asyncio.sleep(0.2)
                stop_beating.set()  # now it dies: its recipients come back
                await until(lambda: sent() == ids, 30, "the silent peer's recipients sent")
        finally:
            stop_beating.set()
            await worker.stop()
            await asyncio.wait_for(task, 30)
        got = Counter(str(m.headers["X-Mailtrack-ID"]) for m in sim.state.messages)
    assert set(got) == ids and max(got.values()) == 1
    assert dead <= set(got)
    with any_store.read() as conn:
        left = set(conn.execute(select(workers.c.id)).scalars())
    assert left == set(), left  # the dead peers were reaped, the stopped worker removed itself
