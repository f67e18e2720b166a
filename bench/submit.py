"""Submission benchmark: recipients/s through the batch endpoint, and p50/p99 of single submissions.

Runs a real `mailtrack serve --role api` on a fresh SQLite file and a fresh PostgreSQL schema.
The batch phase uses an httpx client; the single-submission phase uses wrk (Debian `wrk`; C, so the
load generator takes little of the 2 cores), 50 connections = 50 submissions in flight.
Baseline, measured in the same run against the same server: `GET /api/v1/settings/tracking`
(authentication + one indexed read, no write) at the same concurrency — the floor of what any
authenticated request costs here, so the ratio shows what the durable write adds.

usage: python bench/submit.py [--engines sqlite,postgresql] [--batches 30] [--seconds 8]
Bounded: every phase stops after --max-seconds (default 60).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import subprocess
import tempfile
import time
from typing import Any

import httpx
from _common import create_key, database, env_for, serve


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


WRK_POST = """
wrk.method = "POST"
wrk.body = [==[%s]==]
wrk.headers["Content-Type"] = "application/json"
"""


def wrk(url: str, key: str, seconds: float, post: bool) -> dict[str, float]:
    """wrk -t1 -c50 against one endpoint; requests/s and latency percentiles in ms."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(WRK_POST % json.dumps(email(1)))
    cmd = ["wrk", "-t1", "-c50", f"-d{int(seconds)}s", "--latency", "-H", f"Authorization: Bearer {key}"]
    if post:
        cmd += ["-s", f.name, f"{url}/api/v1/emails"]
    else:
        cmd += [f"{url}/api/v1/settings/tracking"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 30).stdout
    os.unlink(f.name)
    unit = {"us": 0.001, "ms": 1.0, "s": 1000.0}

    def lat(p: str) -> float:
        m = re.search(rf"^\s+{p}%\s+([\d.]+)(us|ms|s)", out, re.M)
        return float(m.group(1)) * unit[m.group(2)] if m else float("nan")

    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {"rps": float(rps.group(1)) if rps else 0.0, "p50": lat("50"), "p99": lat("99"),
            "errors": float(bad.group(1)) if bad else 0.0}


def run(engine: str, args: argparse.Namespace) -> None:
    with database(engine) as db:
        env = env_for(db, worker="false", inbound="false")
        key = create_key(env)
        with serve(env, "--role", "api") as url:
            n, secs = asyncio.run(batch_phase(url, key, args.batches, args.batch_size, args.batch_conc, args.max_seconds))
            rps = n / secs
            base = wrk(url, key, args.seconds, post=False)
            single = wrk(url, key, args.seconds, post=True)
    print(f"[{engine}] batch: {n} recipients in {secs:.2f} s = {rps:,.0f} recipients/s "
          f"({args.batch_size} emails x 3 recipients per request, {args.batch_conc} in flight)  target >= 2,000/s")
    print(f"[{engine}] single submission (3 recipients), 50 in flight: {single['rps']:,.0f} req/s, "
          f"p50 {single['p50']:.1f} ms, p99 {single['p99']:.1f} ms, non-2xx {single['errors']:.0f}  "
          f"target p99 < 25 ms")
    print(f"[{engine}] baseline GET /api/v1/settings/tracking (auth + one read), 50 in flight: "
          f"{base['rps']:,.0f} req/s, p50 {base['p50']:.1f} ms, p99 {base['p99']:.1f} ms; "
          f"submissions/s ÷ baseline req/s = {single['rps'] / max(base['rps'], 1):.2f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--engines", default="sqlite,postgresql")
    ap.add_argument("--batches", type=int, default=30)
    ap.add_argument("--batch-size", type=int, default=200)
    ap.add_argument("--batch-conc", type=int, default=2)
    ap.add_argument("--seconds", type=float, default=8, help="duration of each wrk phase")
    ap.add_argument("--max-seconds", type=float, default=60)
    args = ap.parse_args()
    for engine in args.engines.split(","):
        run(engine.strip(), args)


if __name__ == "__main__":
    main()
