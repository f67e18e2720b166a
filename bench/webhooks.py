"""Webhook benchmark: events/s from the outbox to a local receiver that verifies every signature.

The receiver is a separate process (uvicorn + a bare ASGI app) that checks each POST's Standard
Webhooks signature with hmac and counts the events. Baseline, measured in the same run: the
receiver's own capacity, measured with wrk (Debian `wrk`, C, keep-alive, 50 connections) POSTing a
signed event — what the receiver can take at all —, right before and right after the single-event
phase (the ratio is to their mean: on a shared machine the capacity drifts within a run). The
dispatcher (in this process, on a fresh SQLite file or PostgreSQL schema) sends N single events,
and then N batch events (arrays of 100).
Targets on a 2-core machine: single ≥ 0.5× the receiver's capacity; batch ≥ 20,000 events/s.
Two more ceilings in the same run: the receiver's own in batch mode (wrk POSTing 100-event bodies,
so it is shown not to be the bottleneck), and the HTTP client's own (the dispatcher's
`sender.post`, same POSTs, no database), which bounds single-event mode from the sending side.
First, what the outbox costs: submission and recording delivery results with the outbox write
switched off (baseline) and on, in interleaved rounds in the same process (medians, the spread of
the per-pair ratios, this process's CPU per recipient, and the time inside the outbox write itself;
target: ≥ 0.9×).

The dispatcher gets the same 50 connections as wrk (WEBHOOK_CONCURRENCY=50; the default is 8).

usage: python bench/webhooks.py [--engines sqlite,postgresql] [--single 10000] [--batch 50000] [--processes 2]
Bounded: every phase stops after --max-seconds (default 60).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import hmac
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.request
from typing import Any

from _common import database, free_port

# -- the receiver (run as `python bench/webhooks.py --receiver PORT SECRET...`) ----------------------


def receiver_main(port: int, secrets_: list[str]) -> None:
    import uvicorn

    keys = [base64.b64decode(s.removeprefix("whsec_")) for s in secrets_]
    count = {"events": 0, "bad": 0}

    def ok(headers: dict[bytes, bytes], body: bytes) -> bool:
        msg = headers[b"webhook-id"] + b"." + headers[b"webhook-timestamp"] + b"." + body
        sigs = headers[b"webhook-signature"].split()
        for k in keys:
            want = b"v1," + base64.b64encode(hmac.new(k, msg, hashlib.sha256).digest())
            if any(hmac.compare_digest(want, s) for s in sigs):
                return True
        return False

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        chunks = []
        while True:
            m = await receive()
            chunks.append(m.get("body", b""))
            if not m.get("more_body"):
                break
        body = b"".join(chunks)
        if scope["method"] == "GET":
            out = json.dumps(count).encode()
            if scope["path"] == "/reset":
                count.update(events=0, bad=0)
        else:
            headers = dict(scope["headers"])
            if ok(headers, body):
                n = body.count(b'"sequence"')  # one per event, in a batch too
                count["events"] += n
                out, code = b"{}", 200
            else:
                count["bad"] += 1
                out, code = b"bad signature", 400
            await send({"type": "http.response.start", "status": code,
                        "headers": [(b"content-length", str(len(out)).encode())]})
            await send({"type": "http.response.body", "body": out})
            return
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-length", str(len(out)).encode())]})
        await send({"type": "http.response.body", "body": out})

    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False, http="httptools",
                loop="uvloop" if _has_uvloop() else "asyncio")


def _has_uvloop() -> bool:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return False
    return True


def _get(url: str) -> dict[str, int]:
    with urllib.request.urlopen(url, timeout=10) as r:
        return dict(json.loads(r.read()))


def start_receiver(secrets_: list[str]) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, __file__, "--receiver", str(port), *secrets_])
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            _get(url + "/count")
            return proc, url
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise SystemExit("the receiver did not start")


def wrk_capacity(url: str, secret: str, seconds: int, events: int = 1) -> float:
    """Signed POSTs/s the receiver answers, by wrk with keep-alive (the same signature check each time).

    ``events`` > 1: a batch body of that many events (the receiver's own ceiling in batch mode).
    """
    from mailtrack.webhooks import payload, signing

    one = payload.sample(1)
    body = json.dumps(one if events == 1 else [one] * events, separators=(",", ":"))
    ts = int(time.time())
    hdrs = signing.headers([secret], "msg_bench", ts, body)
    lua = "wrk.method = 'POST'\nwrk.body = " + json.dumps(body) + "\n" + "".join(
        f"wrk.headers[{json.dumps(k)}] = {json.dumps(v)}\n" for k, v in
        {**hdrs, "content-type": "application/json"}.items())
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(lua)
    try:
        out = subprocess.run(["wrk", "-t1", "-c50", f"-d{seconds}s", "-s", f.name, url + "/hook"],
                             capture_output=True, text=True, timeout=seconds + 30).stdout
    finally:
        os.unlink(f.name)
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if not m:
        raise SystemExit(f"wrk gave no figure:\n{out}")
    return float(m.group(1))


async def client_ceiling(url: str, secret: str, n: int, concurrency: int) -> float:
    """Signed single-event POSTs/s from the dispatcher's own HTTP client (`sender.post`,
    the same keep-alive pool) with no database at all: the most any dispatcher built on it can send."""
    from mailtrack.webhooks import payload, sender

    body = payload.encode(payload.sample(1))
    ep = {"id": "bench", "url": url + "/hook"}
    left = [n]
    async with sender.client(10, True) as http:

        async def one() -> None:
            while left[0] > 0:
                left[0] -= 1
                a = await sender.post(http, ep, [secret], "evt_bench", body, [0])
                if not a.ok:
                    raise SystemExit(f"the receiver refused the client ceiling's POST: {a}")

        t = time.perf_counter()
        await asyncio.gather(*[one() for _ in range(concurrency)])
        return n / (time.perf_counter() - t)


# -- the dispatcher side ---------------------------------------------------------------------------------


def fill(store: Any, n: int) -> None:
    """n recipients submitted through the core: n 'spooled' outbox rows."""
    from mailtrack.store import accounts, submit
    from mailtrack.store.submit import NewEmail, NewRecipient

    with store.write() as conn:
        acct = accounts.get_or_create_account(conn, "bench")
    per = 50
    for start in range(0, n, 2000):
        batch = [NewEmail("billing@acme.example", [NewRecipient("", f"c{start + e * per + j}@example.com", "to")
                                                    for j in range(per)], f"Invoice {start + e}", text="hi")
                 for e in range(min(2000, n - start) // per)]
        with store.write() as conn:
            submit.submit(conn, acct, batch)


def settle_gc() -> None:
    from mailtrack.serve import settle_gc as settle

    settle()


def dispatcher_main(url: str, concurrency: int) -> None:
    """One more dispatcher process (``--processes``), as a second `mailtrack worker` would run one;
    it stops when its stdin closes."""
    from mailtrack.store.db import open_store
    from mailtrack.webhooks.dispatcher import Dispatcher

    config = _config(url, concurrency)
    store = open_store(url)

    async def main() -> None:
        d = Dispatcher(config, store, poll=0.05)
        task = asyncio.create_task(d.run())
        await asyncio.to_thread(sys.stdin.read)
        await d.stop()
        await asyncio.wait_for(task, 60)

    settle_gc()
    _run(main())
    store.dispose()


def _config(url: str, concurrency: int) -> Any:
    from mailtrack.config import load_config

    return load_config(env={"MAILTRACK_DATABASE_URL": url, "MAILTRACK_SECRET_KEY": "bench",
                            "MAILTRACK_WEBHOOK_ALLOW_PRIVATE": "true",
                            "MAILTRACK_WEBHOOK_CONCURRENCY": str(concurrency)})


async def dispatch(config: Any, store: Any, rurl: str, n: int, max_s: float, url: str = "", processes: int = 1,
                   ) -> tuple[int, float, float]:
    """Events the receiver got, the seconds it took, and this process's CPU seconds meanwhile
    (the dispatcher's cost, which a busy machine changes less than the rate). ``processes`` > 1:
    that many dispatchers in all, the others in processes of their own started first (their start-up
    is inside the time measured), the connections shared out between them."""
    from mailtrack.webhooks.dispatcher import Dispatcher

    _get(rurl + "/reset")
    settle_gc()  # as `mailtrack serve` does once started
    each = max(1, config.webhook_concurrency // processes)
    others = [subprocess.Popen([sys.executable, __file__, "--dispatcher", url, str(each)], stdin=subprocess.PIPE)
              for _ in range(processes - 1)]
    if others:
        config = _config(url, each)
    d = Dispatcher(config, store, poll=0.05)
    t0, c0 = time.perf_counter(), time.process_time()
    task = asyncio.create_task(d.run())
    got = 0
    try:
        while time.perf_counter() - t0 < max_s:
            await asyncio.sleep(0.1)
            got = (await asyncio.to_thread(_get, rurl + "/count"))["events"]
            if got >= n:
                break
        took, cpu = time.perf_counter() - t0, time.process_time() - c0
    finally:
        await d.stop()
        await asyncio.wait_for(task, 60)
        for p in others:
            assert p.stdin is not None
            p.stdin.close()
            p.wait(60)
    return got, took, cpu


def _cpu_of(pids: list[int] | None = None, comm: str = "") -> float:
    """CPU seconds (user + system) used so far by the given processes, or by every process named
    ``comm`` (the PostgreSQL server's backends), read from /proc; 0 where /proc is not there."""
    tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    total = 0
    for d in os.listdir("/proc") if os.path.isdir("/proc") else []:
        if not d.isdigit() or (pids is not None and int(d) not in pids):
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                st = f.read()
        except OSError:
            continue
        name, rest = st[st.index("(") + 1:st.rindex(")")], st[st.rindex(")") + 2:].split()
        if pids is not None or name == comm:
            total += int(rest[11]) + int(rest[12])  # utime, stime
    return total / tick


def _idle() -> tuple[float, float]:
    """The machine's idle and total CPU time so far (all cores, from /proc/stat), to tell how busy
    it was meanwhile: a phase that leaves cores idle is bound by waiting, not by CPU."""
    try:
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
    except OSError:
        return 0.0, 0.0
    return float(v[3] + v[4]), float(sum(v[:8]))


def _run(coro: Any) -> Any:
    """On uvloop when installed, as `mailtrack serve` runs its dispatcher (cli._run_loop)."""
    from mailtrack.cli import _run_loop

    return _run_loop(coro)


def run_engine(engine: str, single: int, batch: int, wrk_s: int, max_s: float, concurrency: int,
               processes: int = 1) -> dict[str, float]:
    from mailtrack.store import accounts
    from mailtrack.store import webhooks as wh
    from mailtrack.store.db import open_store

    with database(engine) as url:
        config = _config(url, concurrency)
        store = open_store(url)
        with store.write() as conn:
            acct = accounts.get_or_create_account(conn, "bench")
            ep_single, s1 = wh.create_endpoint(conn, acct, "http://placeholder/", ["spooled"], now=time.time())
        proc, rurl = start_receiver([s1])
        try:
            batch_cap = wrk_capacity(rurl, s1, wrk_s, events=100) * 100
            client_cap = _run(client_ceiling(rurl, s1, min(single, 5000), concurrency))
            with store.write() as conn:
                wh.update_endpoint(conn, acct, ep_single["id"], time.time(), url=rurl + "/hook")
            fill(store, single)
            # the baseline right before and right after the phase: on a shared machine the capacity
            # drifts, and the ratio is to the mean of the two (both printed)
            cap_before = wrk_capacity(rurl, s1, wrk_s)
            r0, p0, i0 = _cpu_of([proc.pid]), _cpu_of(comm="postgres"), _idle()
            got1, t1, cpu1 = _run(dispatch(config, store, rurl, single, max_s))
            rcpu1, pgcpu1, i1 = _cpu_of([proc.pid]) - r0, _cpu_of(comm="postgres") - p0, _idle()
            cap_after = wrk_capacity(rurl, s1, wrk_s)
            cap = (cap_before + cap_after) / 2
            busy1 = 1 - (i1[0] - i0[0]) / max(i1[1] - i0[1], 1)
            gotp, tp = 0, 1.0
            if processes > 1:  # the same again with several dispatcher processes
                fill(store, single)
                gotp, tp, _ = _run(dispatch(config, store, rurl, single, max_s, url, processes))
            with store.write() as conn:  # the batch phase: only the batch endpoint wants events now
                wh.update_endpoint(conn, acct, ep_single["id"], time.time(), url=rurl + "/hook", batch=True)
            fill(store, batch)
            p0, i0 = _cpu_of(comm="postgres"), _idle()
            got2, t2, cpu2 = _run(dispatch(config, store, rurl, batch, max_s))
            pgcpu2, i1 = _cpu_of(comm="postgres") - p0, _idle()
            busy2 = 1 - (i1[0] - i0[0]) / max(i1[1] - i0[1], 1)
            bad = _get(rurl + "/count")["bad"]
        finally:
            proc.terminate()
            proc.wait(10)
            store.dispose()
    single_rate, batch_rate = got1 / t1, got2 / t2
    print(f"[{engine}] receiver capacity (wrk, keep-alive, 50 conns): {cap:,.0f} POST/s (mean of {cap_before:,.0f} "
          f"right before the single-event phase and {cap_after:,.0f} right after)")
    print(f"[{engine}] single events: {got1}/{single} in {t1:.1f}s = {single_rate:,.0f} events/s "
          f"= {single_rate / cap:.2f}x the receiver's capacity (target >= 0.5x); dispatcher CPU "
          f"{cpu1 / max(got1, 1) * 1e6:.0f} us/event, receiver {rcpu1 / max(got1, 1) * 1e6:.0f} us/event"
          + (f", PostgreSQL server {pgcpu1 / max(got1, 1) * 1e6:.0f} us/event" if engine == "postgresql" else "")
          + f"; the machine was {busy1:.0%} busy")
    if processes > 1:
        print(f"[{engine}] single events, {processes} dispatcher processes (as {processes} `mailtrack worker`s "
              f"would run them): {gotp}/{single} in {tp:.1f}s = {gotp / tp:,.0f} events/s = {gotp / tp / cap:.2f}x "
              "the receiver's capacity")
    print(f"[{engine}] the HTTP client's own ceiling (sender.post, same POSTs, no database): {client_cap:,.0f} POST/s "
          f"= {client_cap / cap:.2f}x the receiver's capacity; the dispatcher reaches {single_rate / client_cap:.2f}x "
          "of it")
    print(f"[{engine}] receiver's own batch ceiling (wrk, 100-event bodies): {batch_cap:,.0f} events/s")
    print(f"[{engine}] batch events:  {got2}/{batch} in {t2:.1f}s = {batch_rate:,.0f} events/s "
          f"(target >= 20,000/s; {batch_rate / batch_cap:.2f}x the receiver's ceiling); dispatcher CPU "
          f"{cpu2 / max(got2, 1) * 1e6:.0f} us/event"
          + (f", PostgreSQL server {pgcpu2 / max(got2, 1) * 1e6:.0f} us/event" if engine == "postgresql" else "")
          + f"; the machine was {busy2:.0%} busy; bad signatures: {bad}")
    return {"capacity": cap, "single": single_rate, "batch": batch_rate, "batch_ceiling": batch_cap,
            "client_ceiling": client_cap}


def outbox_cost(engine: str, pairs: int = 8, per_round: int = 1000) -> None:
    """What writing outbox rows costs submission and delivery results: the same work with the
    outbox write switched off (the baseline) and on, in interleaved rounds (off-on, on-off, … so a
    drift of the machine's load falls on both), in one process and on one database. Each round is
    timed on its own; printed: the median rate of each side, the median of the per-pair ratios and
    their spread (min–max), since on a shared machine one round can be off by a lot."""
    import statistics

    from mailtrack.domain.status import Status
    from mailtrack.store import accounts, effects, submit
    from mailtrack.store import delivery as d
    from mailtrack.store.db import open_store
    from mailtrack.store.submit import NewEmail, NewRecipient

    real = effects._write_outbox
    rates: dict[tuple[str, bool], list[float]] = {(w, on): [] for w in ("submit", "finish") for on in (False, True)}
    cpu: dict[tuple[str, bool], list[float]] = {k: [] for k in rates}  # this process's CPU s per 1,000
    inside = {"s": 0.0}  # time spent in the outbox write itself, in the 'on' rounds
    on_time = {"submit": 0.0, "finish": 0.0}

    def timed_write(conn: Any, rows: Any) -> None:
        t = time.perf_counter()
        real(conn, rows)
        inside["s"] += time.perf_counter() - t
    with database(engine) as url:
        store = open_store(url)
        with store.write() as conn:
            acct = accounts.get_or_create_account(conn, "bench")

        def one_round(tag: str, on: bool) -> None:
            effects._write_outbox = timed_write if on else (lambda conn, rows: None)  # type: ignore[assignment]
            try:
                inside["s"] = 0.0
                t, c = time.perf_counter(), time.process_time()
                for start in range(0, per_round, 500):  # 10 emails x 50 recipients per transaction
                    with store.write() as conn:
                        submit.submit(conn, acct, [NewEmail("b@acme.example", [
                            NewRecipient("", f"r{tag}-{start + e * 50 + j}@example.com", "to") for j in range(50)],
                            "Invoice", text="hi") for e in range(10)])
                took = time.perf_counter() - t
                rates[("submit", on)].append(per_round / took)
                cpu[("submit", on)].append((time.process_time() - c) / per_round * 1000)
                if on:
                    on_time["submit"] += took
                    inside["submit"] = inside.get("submit", 0.0) + inside["s"]
                inside["s"] = 0.0
                with store.write() as conn:
                    claimed = d.claim(conn, "bench", time.time(), 60, per_round).recipients
                t, c = time.perf_counter(), time.process_time()
                for start in range(0, len(claimed), 100):  # the worker records results per batch
                    with store.write() as conn:
                        d.finish(conn, "bench", [d.Finished(c.id, Status.SENT, last_reply="250 ok", attempts=1,
                                                            first_attempt_at=time.time())
                                                 for c in claimed[start:start + 100]])
                took = time.perf_counter() - t
                rates[("finish", on)].append(len(claimed) / took)
                cpu[("finish", on)].append((time.process_time() - c) / max(len(claimed), 1) * 1000)
                if on:
                    on_time["finish"] += took
                    inside["finish"] = inside.get("finish", 0.0) + inside["s"]
            finally:
                effects._write_outbox = real

        one_round("warm", True)  # caches, statement compilation: not counted
        for k in rates:
            rates[k].clear()
            cpu[k].clear()
        inside.update(submit=0.0, finish=0.0)
        on_time.update(submit=0.0, finish=0.0)
        for p in range(pairs):
            order = (False, True) if p % 2 == 0 else (True, False)
            for on in order:
                one_round(f"{p}{'on' if on else 'off'}", on)
        store.dispose()
    for what in ("submit", "finish"):
        off, on_ = rates[(what, False)], rates[(what, True)]
        ratios = sorted(b / a for a, b in zip(off, on_, strict=True))
        print(f"[{engine}] {what}: {statistics.median(off):,.0f} recipients/s without the outbox (baseline, median "
              f"of {len(off)}), {statistics.median(on_):,.0f}/s with it; per-pair ratio median "
              f"{statistics.median(ratios):.2f}x (spread {ratios[0]:.2f}-{ratios[-1]:.2f}; target >= 0.90x)")
        c_off, c_on = statistics.median(cpu[(what, False)]), statistics.median(cpu[(what, True)])
        print(f"[{engine}] {what}: this process's CPU per 1,000 recipients {c_off * 1000:.0f} ms without, "
              f"{c_on * 1000:.0f} ms with = {c_off / c_on:.2f}x; time inside the outbox write: "
              f"{inside[what] / on_time[what]:.1%} of the 'on' rounds (a cost of <= 10% is the target)")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--engines", default="sqlite")
    ap.add_argument("--single", type=int, default=10000)
    ap.add_argument("--batch", type=int, default=50000)
    ap.add_argument("--wrk-seconds", type=int, default=5)
    ap.add_argument("--max-seconds", type=float, default=60)
    ap.add_argument("--skip-outbox-cost", action="store_true")
    ap.add_argument("--outbox-cost-only", action="store_true")
    ap.add_argument("--pairs", type=int, default=8, help="off/on round pairs of the outbox cost comparison")
    ap.add_argument("--concurrency", type=int, default=50,
                    help="WEBHOOK_CONCURRENCY for the run: 50, the connections wrk gets for the baseline")
    ap.add_argument("--processes", type=int, default=1,
                    help="also run the single phase with this many dispatcher processes (PostgreSQL: SKIP LOCKED)")
    a = ap.parse_args()
    for engine in a.engines.split(","):
        if not a.skip_outbox_cost:
            outbox_cost(engine, a.pairs)
        if a.outbox_cost_only:
            continue
        run_engine(engine, a.single, a.batch, a.wrk_seconds, a.max_seconds, a.concurrency, a.processes)


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--receiver":
        receiver_main(int(sys.argv[2]), sys.argv[3:])
    elif len(sys.argv) > 3 and sys.argv[1] == "--dispatcher":
        dispatcher_main(sys.argv[2], int(sys.argv[3]))
    else:
        main()
