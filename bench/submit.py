"""Submission benchmark: recipients/s through the batch endpoint, and p50/p99 of single submissions.

Runs a real `mailtrack serve --role api` on a fresh SQLite file and a fresh PostgreSQL schema.
Baseline, measured in the same run against the same server: `GET /api/v1/settings/tracking`
(authentication + one indexed read, no write) at the same concurrency — the floor of what any
authenticated request costs here, so the ratio shows what the durable write adds.

usage: python bench/submit.py [--engines sqlite,postgresql] [--batches 30] [--singles 2000]
Bounded: every phase stops after --max-seconds (default 60).
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

import httpx
from _common import create_key, database, env_for, pct, serve


def email(i: int) -> dict[str, Any]:
    return {
        "from": "Acme Billing <billing@acme.example>", "to": [f"customer{i}@example.com"],
        "cc": [f"accounts{i}@example.com"], "bcc": [f"archive{i}@acme.example"],
        "subject": f"Invoice INV-{i}", "text": "Please find your invoice attached.\n" * 20,
        "source": {"type": "invoice", "reference": f"INV-{i}"},
    }


async def batch_phase(url: str, key: str, batches: int, size: int, conc: int, max_s: float) -> tuple[int, float]:
    h = {"Authorization": f"Bearer {key}"}
    sent = 0
    t0 = time.perf_counter()
    async with httpx.AsyncClient(base_url=url, headers=h, timeout=60) as c:
        todo = iter(range(batches))

        async def runner() -> None:
            nonlocal sent
            for b in todo:
                if time.perf_counter() - t0 > max_s:
                    return
                r = await c.post("/api/v1/emails/batch", json={"emails": [email(b * size + j) for j in range(size)]})
                r.raise_for_status()
                sent += sum(len(e["recipients"]) for e in r.json()["emails"])

        await asyncio.gather(*(runner() for _ in range(conc)))
    return sent, time.perf_counter() - t0


async def latency_phase(url: str, key: str, n: int, conc: int, max_s: float, write: bool) -> list[float]:
    h = {"Authorization": f"Bearer {key}"}
    lat: list[float] = []
    t0 = time.perf_counter()
    limits = httpx.Limits(max_connections=conc, max_keepalive_connections=conc)
    async with httpx.AsyncClient(base_url=url, headers=h, timeout=60, limits=limits) as c:
        todo = iter(range(n))

        async def runner() -> None:
            for i in todo:
                if time.perf_counter() - t0 > max_s:
                    return
                s = time.perf_counter()
                if write:
                    r = await c.post("/api/v1/emails", json=email(10**7 + i))
                else:
                    r = await c.get("/api/v1/settings/tracking")
                r.raise_for_status()
                lat.append((time.perf_counter() - s) * 1000)

        await asyncio.gather(*(runner() for _ in range(conc)))
    return lat


def run(engine: str, args: argparse.Namespace) -> None:
    with database(engine) as db:
        env = env_for(db, worker="false", inbound="false")
        key = create_key(env)
        with serve(env, "--role", "api") as url:
            n, secs = asyncio.run(batch_phase(url, key, args.batches, args.batch_size, args.batch_conc, args.max_seconds))
            rps = n / secs
            base = asyncio.run(latency_phase(url, key, args.singles, 50, args.max_seconds, write=False))
            single = asyncio.run(latency_phase(url, key, args.singles, 50, args.max_seconds, write=True))
    print(f"[{engine}] batch: {n} recipients in {secs:.2f} s = {rps:,.0f} recipients/s "
          f"({args.batch_size} emails x 3 recipients per request, {args.batch_conc} in flight)  target >= 2,000/s")
    print(f"[{engine}] single submission, 50 in flight: {len(single)} requests, "
          f"p50 {pct(single, 50):.1f} ms, p99 {pct(single, 99):.1f} ms  target p99 < 25 ms")
    print(f"[{engine}] baseline GET /api/v1/settings/tracking, 50 in flight: "
          f"p50 {pct(base, 50):.1f} ms, p99 {pct(base, 99):.1f} ms; "
          f"submission/baseline p99 ratio {pct(single, 99) / pct(base, 99):.2f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--engines", default="sqlite,postgresql")
    ap.add_argument("--batches", type=int, default=30)
    ap.add_argument("--batch-size", type=int, default=200)
    ap.add_argument("--batch-conc", type=int, default=2)
    ap.add_argument("--singles", type=int, default=2000)
    ap.add_argument("--max-seconds", type=float, default=60)
    args = ap.parse_args()
    for engine in args.engines.split(","):
        run(engine.strip(), args)


if __name__ == "__main__":
    main()
