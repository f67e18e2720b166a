"""Fairness benchmark (issue 10 §7): does one account's bulk submission delay another account's email?

A real `mailtrack serve --role api` on a fresh database. Account B submits single emails one after
another; its latency is measured alone (the baseline) and then while account A keeps 4 batches of
1,000 recipients (the per-request limit) in flight. The ratio p50(with A) / p50(alone) says how much
A's bulk costs B; before the fix one 60k-recipient batch held every account for ~10 s.

usage: python bench/fairness.py [--engines sqlite,postgresql] [--singles 40] [--max-seconds 50]
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

import httpx
from _common import create_key, database, env_for, pct, serve


def single(i: int) -> dict[str, Any]:
    return {"from": "ops@b.example", "to": [f"b{i}@example.com"], "subject": f"Task {i}", "text": "hello"}


def bulk(n: int) -> dict[str, Any]:
    rcpts = [f"a{n}-{i}@example.com" for i in range(1000)]
    mail = {"from": "ops@a.example", "to": rcpts[:400], "cc": rcpts[400:800], "bcc": rcpts[800:],
            "subject": "Newsletter", "text": "hello"}
    return {"emails": [mail]}


async def singles(url: str, key: str, n: int, max_s: float) -> list[float]:
    out: list[float] = []
    t_end = time.perf_counter() + max_s
    async with httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=60) as c:
        for i in range(n):
            if time.perf_counter() > t_end:
                break
            t0 = time.perf_counter()
            r = await c.post("/api/v1/emails", json=single(i))
            r.raise_for_status()
            out.append(time.perf_counter() - t0)
            await asyncio.sleep(0.05)
    return out


async def flood(url: str, key: str, stop: asyncio.Event, conc: int = 4) -> int:
    done = 0
    async with httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=120) as c:

        async def runner(k: int) -> None:
            nonlocal done
            n = 0
            while not stop.is_set():
                r = await c.post("/api/v1/emails/batch", json=bulk(k * 10_000 + n))
                r.raise_for_status()
                done += 1
                n += 1

        await asyncio.gather(*(runner(k) for k in range(conc)))
    return done


async def measure(url: str, key_a: str, key_b: str, n: int, max_s: float) -> tuple[list[float], list[float], int]:
    alone = await singles(url, key_b, n, max_s / 2)
    stop = asyncio.Event()
    flooding = asyncio.create_task(flood(url, key_a, stop))
    await asyncio.sleep(1.0)  # let A's batches queue up
    loaded = await singles(url, key_b, n, max_s / 2)
    stop.set()
    batches = await flooding
    return alone, loaded, batches


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--engines", default="sqlite,postgresql")
    ap.add_argument("--singles", type=int, default=40)
    ap.add_argument("--max-seconds", type=float, default=50)
    args = ap.parse_args()
    for engine in args.engines.split(","):
        with database(engine) as url:
            env = env_for(url, worker="false", inbound="false")
            key_a, key_b = create_key(env, "bulk-a"), create_key(env, "single-b")
            with serve(env, "--role", "api") as base:
                alone, loaded, batches = asyncio.run(measure(base, key_a, key_b, args.singles, args.max_seconds))
        p50a, p99a, p50l, p99l = pct(alone, 50), pct(alone, 99), pct(loaded, 50), pct(loaded, 99)
        print(f"{engine}: B alone p50 {p50a * 1000:.0f} ms p99 {p99a * 1000:.0f} ms | with A's bulk "
              f"({batches} batches × 1,000 recipients done) p50 {p50l * 1000:.0f} ms p99 {p99l * 1000:.0f} ms "
              f"max {max(loaded) * 1000:.0f} ms | ratio p50 {p50l / p50a:.1f}x (baseline: B alone, same server)")


if __name__ == "__main__":
    main()
