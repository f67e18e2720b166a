"""Recovery benchmark: how soon delivery resumes after `kill -9` of a process holding recipients.

SQLite: N recipients spooled; `mailtrack serve` delivers to the mailbox simulator; killed with
SIGKILL once a third is accepted; restarted on the same file. Printed: seconds from the restart to
every recipient `sent`, and how many the killed process held.

PostgreSQL: two `mailtrack worker` processes; one is killed once both hold recipients. Printed:
seconds from the kill to every recipient `sent`. Twice: the killed worker on the same machine
(its dead pid is seen at the survivor's next heartbeat) and in a pid namespace of its own
(`unshare --pid`, as if on another machine: only its stale heartbeat tells, MAILTRACK_WORKER_DEAD_AFTER).

Baseline, same run: an undisturbed run of the same N on the same engine (start to all sent), scaled
to the recipients still unsent at the restart / kill; the ratio is recovery time / that baseline
(1.0 = the crash cost nothing beyond the work left). Before worker rows, recovery waited for the lease:
177 s measured for the SQLite case (issue 9).

usage: python bench/recovery.py [-n 2000] [--no-pg] [--max-seconds 100]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from _common import BIN, PG_URL, REPO, database, free_port

sys.path.insert(0, str(REPO / "src"))

from sqlalchemy import select

from mailtrack.simulator import Simulator
from mailtrack.store import accounts, submit
from mailtrack.store.db import Store, open_store
from mailtrack.store.schema import recipients, workers
from mailtrack.store.submit import NewEmail, NewRecipient

SIM = "sim.mailtrack.test"


def spool(store: Store, n: int) -> None:
    with store.write() as conn:
        acct = accounts.get_or_create_account(conn, "bench")
        submit.submit(conn, acct, [
            NewEmail(from_addr="ops@acme.test", subject=f"Invoice {e}", text="Hello\n" * 40, to_header=f"u{e}@{SIM}",
                     recipients=[NewRecipient("", f"u{e}-{i}@{SIM}", "to") for i in range(10)])
            for e in range(n // 10)
        ])


def sent(store: Store) -> int:
    with store.read() as conn:
        return len(conn.execute(select(recipients.c.id).where(recipients.c.status == "sent")).all())


def start(command: str, db_url: str, sim_port: int, log: Path, wrap: tuple[str, ...] = ()) -> subprocess.Popen[bytes]:
    env = {**os.environ, "MAILTRACK_DATABASE_URL": db_url, "MAILTRACK_SECRET_KEY": "bench-secret",
           "MAILTRACK_HTTP": f"127.0.0.1:{free_port()}", "MAILTRACK_INBOUND_SMTP": f"127.0.0.1:{free_port()}",
           "MAILTRACK_TRANSPORT_MAP": f"*=127.0.0.1:{sim_port}", "MAILTRACK_LOG_LEVEL": "info"}
    with log.open("ab") as out:
        return subprocess.Popen([*wrap, str(BIN / "mailtrack"), command], env=env, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)


def end(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def unsent_among(store: Store, ids: set[str]) -> int:
    with store.read() as conn:
        done = set(conn.execute(select(recipients.c.id).where(recipients.c.status == "sent")).scalars())
    return len(ids - done)


async def until_sent(store: Store, n: int, limit: float, held: set[str] | None = None) -> float | None:
    """Seconds until all ``n`` are sent; prints when the ``held`` ones were (the recovery proper)."""
    t0 = time.monotonic()
    held_done = not held
    while await asyncio.to_thread(sent, store) < n:
        if not held_done and await asyncio.to_thread(unsent_among, store, held or set()) == 0:
            held_done = True
            print(f"  the {len(held or ())} held by the killed process all sent {time.monotonic() - t0:.1f} s after")
        if time.monotonic() - t0 > limit:
            return None
        await asyncio.sleep(0.1)
    return time.monotonic() - t0


async def undisturbed(url: str, n: int, command: str, procs: int, limit: float, tmp: Path) -> float | None:
    store = open_store(url)
    spool(store, n)
    try:
        async with Simulator(domain=SIM, keep=2 * n) as sim:
            ps = [start(command, url, sim.port, tmp / f"base{i}.log") for i in range(procs)]
            try:
                return await until_sent(store, n, limit)
            finally:
                for p in ps:
                    await asyncio.to_thread(end, p)
    finally:
        store.dispose()


async def sqlite_crash(url: str, n: int, limit: float, tmp: Path) -> tuple[float | None, int, int, int]:
    """(seconds from restart to all sent, recipients held at the kill, duplicates, unsent at the restart)."""
    store = open_store(url)
    spool(store, n)
    try:
        async with Simulator(domain=SIM, keep=3 * n) as sim:
            p = start("serve", url, sim.port, tmp / "serve.log")
            try:
                while sim.state.accepted_total < n // 3:
                    await asyncio.sleep(0.005)
                os.kill(p.pid, signal.SIGKILL)
                p.wait()
            finally:
                await asyncio.to_thread(end, p)
            with store.read() as conn:
                held = set(conn.execute(select(recipients.c.id).where(recipients.c.lease_owner.is_not(None))).scalars())
            left = n - sent(store)
            p = start("serve", url, sim.port, tmp / "serve.log")
            try:
                took = await until_sent(store, n, limit, held)
            finally:
                await asyncio.to_thread(end, p)
            got = Counter(str(m.headers["X-Mailtrack-ID"]) for m in sim.state.messages)
    finally:
        store.dispose()
    return took, len(held), sum(c > 1 for c in got.values()), left


async def pg_kill_one(url: str, n: int, limit: float, tmp: Path, isolated: bool) -> tuple[float | None, int, int, int]:
    """(seconds from the kill of one of two workers to all sent, recipients it held, duplicates, unsent then)."""
    store = open_store(url)
    spool(store, n)
    wrap = ("unshare", "--pid", "--fork", "--mount-proc") if isolated else ()
    try:
        async with Simulator(domain=SIM, keep=3 * n) as sim:
            victim = start("worker", url, sim.port, tmp / "victim.log", wrap)
            other = start("worker", url, sim.port, tmp / "other.log")
            try:
                while True:
                    with store.read() as conn:
                        owners = Counter(conn.execute(select(recipients.c.lease_owner)
                                                      .where(recipients.c.lease_owner.is_not(None))).scalars())
                        rows = conn.execute(select(workers.c.id, workers.c.pid, workers.c.process_ns)).all()
                    if len(owners) == 2 and len(rows) == 2 and sim.state.accepted_total >= n // 5:
                        break
                    await asyncio.sleep(0.05)
                own = _own_ns()
                if isolated:
                    victim_id = next(r.id for r in rows if r.process_ns != own)
                else:
                    victim_id = next(r.id for r in rows if r.pid == victim.pid)
                os.killpg(victim.pid, signal.SIGKILL)
                victim.wait()
                t_kill = time.monotonic()
                left = n - sent(store)
                with store.read() as conn:
                    held = set(conn.execute(select(recipients.c.id)
                                            .where(recipients.c.lease_owner == victim_id)).scalars())
                took = await until_sent(store, n, limit, held)
                if took is not None:
                    took = time.monotonic() - t_kill
            finally:
                await asyncio.to_thread(end, victim)
                await asyncio.to_thread(end, other)
            got = Counter(str(m.headers["X-Mailtrack-ID"]) for m in sim.state.messages)
    finally:
        store.dispose()
    return took, len(held), sum(c > 1 for c in got.values()), left


def _own_ns() -> str | None:
    from mailtrack.store.workers import process_ns

    return process_ns()


def show(name: str, result: tuple[float | None, int, int, int], base: float | None, n: int) -> None:
    took, held, dups, left = result
    t = "did not finish" if took is None else f"{took:.1f} s"
    scaled = base * left / n if base else None
    ratio = f"{took / scaled:.2f}× baseline {scaled:.1f} s" if took is not None and scaled else "n/a"
    print(f"{name}: held {held} at the kill, {left} unsent; all sent {t} after; {dups} duplicates; {ratio}")


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("-n", type=int, default=2000)
    ap.add_argument("--no-pg", action="store_true")
    ap.add_argument("--max-seconds", type=float, default=100)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        with database("sqlite") as url:
            base = await undisturbed(url, a.n, "serve", 1, a.max_seconds, tmp)
        print(f"SQLite undisturbed: {a.n} sent in {base:.1f} s" if base else "SQLite undisturbed: did not finish")
        with database("sqlite") as url:
            res = await sqlite_crash(url, a.n, a.max_seconds, tmp)
        show("SQLite kill -9 + restart", res, base, a.n)
        if a.no_pg:
            return
        print(f"PostgreSQL: {PG_URL}")
        with database("postgresql") as url:
            base = await undisturbed(url, a.n, "worker", 2, a.max_seconds, tmp)
        print(f"PostgreSQL undisturbed, 2 workers: {a.n} sent in {base:.1f} s" if base else "did not finish")
        with database("postgresql") as url:
            res = await pg_kill_one(url, a.n, a.max_seconds, tmp, isolated=False)
        show("PostgreSQL, 1 of 2 workers killed (same machine)", res, base, a.n)
        if shutil.which("unshare") and os.geteuid() == 0:
            with database("postgresql") as url:
                res = await pg_kill_one(url, a.n, a.max_seconds, tmp, isolated=True)
            show("PostgreSQL, 1 of 2 workers killed (own pid namespace: heartbeat only)", res, base, a.n)
        else:
            print("PostgreSQL heartbeat-only case skipped: needs root for `unshare --pid`")


if __name__ == "__main__":
    asyncio.run(main())
