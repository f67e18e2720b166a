"""Delivery benchmark: emails submitted through the batch API until every recipient is `sent`.

A real `mailtrack serve` on a fresh database delivers N single-recipient emails of SIZE bytes to
Postfix's `smtp-sink` on a loopback port (transport map `*`). The clock runs from the first batch
POST to the moment the API reports every recipient `sent`, so it covers submission, the durable
spool, claiming, composing, SMTP and recording the results.

Baseline, measured in the same run: `../shared/bench/postfix_baseline.sh N SIZE` — Postfix
accepting the same number of messages of the same size over SMTP into its durable queue and
relaying them to an smtp-sink. Printed: both rates and mailtrack / Postfix.

Also printed: the cost of composing one recipient's message from the cached template (in-process).

usage: python bench/delivery.py [-n 3000] [--size 4096] [--pg] [--no-postfix] [--max-seconds 180]
       --pg adds PostgreSQL runs with 1 and 2 worker processes (MAILTRACK_TEST_PG_URL or local default).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import signal
import subprocess
import sys
import time
from typing import Any

import httpx
from _common import BIN, REPO, create_key, database, env_for, free_port, serve

sys.path.insert(0, str(REPO / "src"))
POSTFIX = REPO.parent / "shared" / "bench" / "postfix_baseline.sh"


def email(i: int, size: int) -> dict[str, Any]:
    line = "Your invoice is attached; thank you for your business.\n"
    return {"from": "Acme Billing <billing@acme.example>", "to": [f"customer{i}@sink.test"],
            "subject": f"Invoice INV-{i}", "text": (line * (size // len(line) + 1))[:size],
            "source": {"type": "invoice", "reference": f"INV-{i}"}}


async def run_delivery(url: str, key: str, n: int, size: int, max_s: float) -> tuple[float, float]:
    """(seconds until all submitted, seconds until all sent)."""
    h = {"Authorization": f"Bearer {key}"}
    batch = 500
    async with httpx.AsyncClient(base_url=url, headers=h, timeout=120) as c:
        t0 = time.perf_counter()
        todo = iter(range(0, n, batch))

        async def submitter() -> None:
            for start in todo:
                body = {"emails": [email(i, size) for i in range(start, min(start + batch, n))]}
                r = await c.post("/api/v1/emails/batch", json=body)
                r.raise_for_status()

        await asyncio.gather(submitter(), submitter())
        submitted = time.perf_counter() - t0
        while True:
            stats = (await c.get("/api/v1/stats")).json()["statuses"]
            if stats.get("sent", 0) >= n:
                return submitted, time.perf_counter() - t0
            if time.perf_counter() - t0 > max_s:
                raise TimeoutError(f"not all sent after {max_s} s: {stats}")
            await asyncio.sleep(0.05)


def start_sink() -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    proc = subprocess.Popen(["smtp-sink", "-u", "nobody", f"127.0.0.1:{port}", "500"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.3)
    return proc, port


def mailtrack_run(engine: str, n: int, size: int, workers: int, max_s: float) -> tuple[float, float]:
    sink, port = start_sink()
    extra: list[subprocess.Popen[bytes]] = []
    try:
        with database(engine) as db:
            env = env_for(db, transport_map=f"*=127.0.0.1:{port}", inbound="false", smtp_timeout="30s")
            key = create_key(env)
            with serve(env) as url:
                for _ in range(workers - 1):
                    extra.append(subprocess.Popen([str(BIN / "mailtrack"), "worker"], env=env,
                                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
                time.sleep(1.0 if extra else 0)  # let extra workers start before the clock does
                return asyncio.run(run_delivery(url, key, n, size, max_s))
    finally:
        for p in extra:
            p.send_signal(signal.SIGTERM)
            p.wait(20)
        sink.terminate()
        sink.wait()


def postfix_run(n: int, size: int, max_s: float) -> float | None:
    if not POSTFIX.exists():
        print(f"postfix baseline script not found at {POSTFIX}")
        return None
    out = subprocess.run(["bash", str(POSTFIX), str(n), str(size)], capture_output=True, text=True,
                         timeout=max_s + 120)
    print("  " + (out.stdout.strip() or out.stderr.strip()))
    m = re.search(r"(\d+) msg/s end-to-end", out.stdout)
    return float(m.group(1)) if m else None


def compose_cost(size: int, n: int = 3000) -> None:
    from mailtrack.compose import Composer, EmailSource, build_template

    body = email(0, size)
    html = "<html><body>" + "".join(f'<p>Line {i} <a href="https://acme.example/i/{i}">link</a></p>'
                                    for i in range(size // 60)) + "</body></html>"
    for label, src in (
        ("text 4 KB, untracked", EmailSource(id="e1", from_addr=body["from"], subject=body["subject"],
                                             to_header=body["to"][0], text=body["text"])),
        ("text + tracked HTML", EmailSource(id="e2", from_addr=body["from"], subject=body["subject"],
                                            to_header=body["to"][0], text=body["text"], html=html, tracking=True)),
    ):
        c = Composer(secret="s", bounce_domain="b.test", public_url="https://t.test")
        t0 = time.perf_counter()
        for _ in range(200):
            build_template(src)
        build = (time.perf_counter() - t0) / 200
        t0 = time.perf_counter()
        for i in range(n):
            c.compose(src, f"{i:023x}", "x@sink.test")
        per = (time.perf_counter() - t0) / n
        print(f"  compose {label}: template {build * 1e6:.0f} µs once per email, "
              f"{per * 1e6:.0f} µs per recipient from the cache")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-n", type=int, default=3000)
    ap.add_argument("--size", type=int, default=4096)
    ap.add_argument("--pg", action="store_true", default=bool(os.environ.get("BENCH_PG")))
    ap.add_argument("--no-postfix", action="store_true")
    ap.add_argument("--max-seconds", type=float, default=180)
    a = ap.parse_args()

    print(f"delivery: {a.n} single-recipient emails of {a.size} bytes, batch API → worker → smtp-sink")
    compose_cost(a.size)
    sub, total = mailtrack_run("sqlite", a.n, a.size, 1, a.max_seconds)
    rate = a.n / total
    print(f"  mailtrack SQLite, 1 process: submitted in {sub:.2f} s, all sent in {total:.2f} s, {rate:.0f} msg/s")
    pg_rates: list[tuple[int, float]] = []
    if a.pg:
        for workers in (1, 2):
            sub, total = mailtrack_run("postgresql", a.n, a.size, workers, a.max_seconds)
            pg_rates.append((workers, a.n / total))
            print(f"  mailtrack PostgreSQL, {workers} worker process(es): submitted in {sub:.2f} s, "
                  f"all sent in {total:.2f} s, {a.n / total:.0f} msg/s")
    base = None if a.no_postfix else postfix_run(a.n, a.size, a.max_seconds)
    if base:
        print(f"ratio mailtrack/postfix: SQLite {rate / base:.2f}"
              + "".join(f", PostgreSQL×{w} {r / base:.2f}" for w, r in pg_rates)
              + "  (≥ 1.0 means mailtrack delivers at least as fast as Postfix)")


if __name__ == "__main__":
    main()
