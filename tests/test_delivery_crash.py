"""Crash safety: `kill -9` a real `mailtrack serve` (API + worker + inbound) mid-way; after a restart
nothing is lost and the only duplicates are recipients whose result was not committed when the process died."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy import select

from mailtrack.simulator import Simulator
from mailtrack.store import accounts, submit
from mailtrack.store.db import Store, open_store
from mailtrack.store.schema import recipients
from mailtrack.store.submit import NewEmail, NewRecipient

MAILTRACK = str(Path(sys.executable).parent / "mailtrack")
SIM = "sim.mailtrack.test"


def spool(store: Store, n: int, per_email: int = 10) -> set[str]:
    """Submit ``n`` recipients straight into the store; returns their ids."""
    with store.write() as conn:
        acct = accounts.get_or_create_account(conn, "acme")
        batch = [
            NewEmail(from_addr="ops@acme.test", subject=f"Invoice {e}", text="Hello\n" * 40,
                     to_header=f"user{e}@{SIM}",
                     recipients=[NewRecipient("", f"user{e}-{i}@{SIM}", "to") for i in range(per_email)])
            for e in range(n // per_email)
        ]
        submit.submit(conn, acct, batch)
    with store.read() as conn:
        return set(conn.execute(select(recipients.c.id)).scalars())


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_service(db_url: str, port: int, log: Path, **extra: str) -> subprocess.Popen[bytes]:
    """The whole service, as `make run` starts it: the worker runs inside `mailtrack serve`."""
    return start_worker(db_url, port, log, command="serve", **extra)


def start_worker(db_url: str, port: int, log: Path, command: str = "worker", **extra: str) -> subprocess.Popen[bytes]:
    """`mailtrack worker` (or `serve`) delivering everything to the sink on ``port``."""
    env = {**os.environ, "MAILTRACK_DATABASE_URL": db_url, "MAILTRACK_SECRET_KEY": "test-secret",
           "MAILTRACK_HTTP": f"127.0.0.1:{_free_port()}", "MAILTRACK_INBOUND_SMTP": f"127.0.0.1:{_free_port()}",
           "MAILTRACK_TRANSPORT_MAP": f"*=127.0.0.1:{port}", "MAILTRACK_DELIVERY_LEASE": "2s",
           "MAILTRACK_SMTP_TIMEOUT": "5s", "MAILTRACK_LOG_LEVEL": "info", "MAILTRACK_SUBMISSION_SMTP": "", **extra}
    with log.open("ab") as out:
        return subprocess.Popen([MAILTRACK, command], env=env, stdout=out, stderr=subprocess.STDOUT)


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def statuses(store: Store) -> Counter[str]:
    with store.read() as conn:
        return Counter(conn.execute(select(recipients.c.status)).scalars())


def received(sim: Simulator) -> Counter[str]:
    return Counter(str(m.headers["X-Mailtrack-ID"]) for m in sim.state.messages)


async def wait_for(check: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not await asyncio.to_thread(check):  # type: ignore[arg-type]
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


@pytest.mark.slow
async def test_kill_9_mid_delivery_loses_nothing(tmp_path: Path) -> None:
    n = 2000
    url = f"sqlite:///{tmp_path}/mailtrack.db"
    store = open_store(url)
    log = tmp_path / "worker.log"
    try:
        ids = spool(store, n)
        assert len(ids) == n
        async with Simulator(domain=SIM, keep=3 * n) as sim:
            proc = start_service(url, sim.port, log)
            try:
                deadline = time.monotonic() + 60
                while sim.state.accepted_total < n // 3:
                    assert proc.poll() is None, log.read_text()
                    assert time.monotonic() < deadline, "the worker delivered too little in 60 s"
                    await asyncio.sleep(0.005)
                proc.kill()  # SIGKILL: no cleanup of any kind
                proc.wait()
            finally:
                await asyncio.to_thread(stop, proc)
            at_kill = sim.state.accepted_total
            with store.read() as conn:
                in_flight = set(conn.execute(select(recipients.c.id).where(
                    recipients.c.lease_owner.is_not(None), recipients.c.status == "spooled")).scalars())
            assert 0 < at_kill < n and in_flight, "the kill should land mid-way, with recipients in flight"

            proc = start_service(url, sim.port, log)
            try:
                await wait_for(lambda: statuses(store).get("sent", 0) == n, 60, "all recipients sent")
            finally:
                # off the loop: the simulator must keep answering while the worker says QUIT
                await asyncio.to_thread(stop, proc)
            got = received(sim)
    finally:
        store.dispose()
    assert statuses(store) == {"sent": n}
    assert set(got) == ids  # every recipient arrived at least once
    dups = {rid for rid, c in got.items() if c > 1}
    assert all(got[rid] == 2 for rid in dups)
    # a duplicate is only possible for a recipient whose 250 was not yet committed at the kill
    print(f"killed after {at_kill} accepted; {len(in_flight)} in flight; {len(dups)} duplicates")
    assert dups <= in_flight
    assert len(in_flight) <= 400  # the worker's in-flight window: 2 × batch of 200
