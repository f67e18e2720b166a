"""Pixel and click latency while a burst of email is submitted and delivered (``bench/tracking.py --during-burst``).

A real ``mailtrack serve`` (API, worker, tracking in one process, as ``make run``) delivers to an
aiosmtpd sink in its own process. First N readers' emails are sent; then a burst of B emails is
submitted in batches of 500 while the N readers each load their own pixel and follow their own
link, in rounds, until the burst is delivered. Printed: p50/p99 per kind, failures (non-GIF pixel,
non-302 click, errors), and recorded / answered hits read back from the store.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from typing import Any

import httpx
from _common import create_key, database, env_for, free_port, pct, serve
from sqlalchemy import create_engine, text

UA = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36"
CONNECTIONS = 20
LINK = "https://portal.acme.example/invoices/{i}?view=pdf"


def _email(i: int, to: str) -> dict[str, Any]:
    return {"from": "Acme Billing <billing@acme.example>", "to": [to], "subject": f"Invoice INV-{i}",
            "html": f'<html><body><p>Invoice {i}</p><a href="{LINK.format(i=i)}">Open invoice</a></body></html>',
            "text": f"Invoice {i}", "source": {"type": "invoice", "reference": f"INV-{i}"}}


def _click_path(secret: str, rid: str, url: str) -> str:
    from mailtrack import tokens

    make = getattr(tokens, "click_url_token", None)  # older checkouts: the token without its URL
    return f"/c/{make(secret, rid, 0, url) if make else tokens.click_token(secret, rid, 0)}"


async def _sent(c: httpx.AsyncClient, n: int, deadline: float) -> None:
    while (await c.get("/api/v1/stats")).json()["statuses"].get("sent", 0) < n:
        if time.monotonic() > deadline:
            raise TimeoutError(f"fewer than {n} sent in time")
        await asyncio.sleep(0.2)


async def _scenario(url: str, key: str, secret: str, readers: int, burst: int, max_s: float) -> dict[str, Any]:
    from mailtrack import tokens

    h = {"Authorization": f"Bearer {key}"}
    deadline = time.monotonic() + max_s
    async with httpx.AsyncClient(base_url=url, headers=h, timeout=60) as api, \
            httpx.AsyncClient(base_url=url, headers={"User-Agent": UA}, timeout=30,
                              limits=httpx.Limits(max_connections=CONNECTIONS)) as web:
        r = await api.post("/api/v1/emails/batch", json={"emails": [
            _email(i, f"reader{i}@sink.test") for i in range(readers)]})
        r.raise_for_status()
        rids = [e["recipients"][0]["id"] for e in r.json()["emails"]]
        await _sent(api, readers, deadline)
        lat: dict[str, list[float]] = {"pixel": [], "click": []}
        fails = {"pixel": 0, "click": 0}
        done = asyncio.Event()

        async def submit_burst() -> None:
            for start in range(0, burst, 500):
                batch = [_email(readers + i, f"burst{i}@sink.test") for i in range(start, min(start + 500, burst))]
                for attempt in range(3):  # a keep-alive connection closed under us: resend (idempotent)
                    try:
                        r = await api.post("/api/v1/emails/batch", json={"emails": batch},
                                           headers={"Idempotency-Key": f"burst-{start}"})
                        break
                    except httpx.TransportError:
                        if attempt == 2:
                            raise
                r.raise_for_status()
            await _sent(api, readers + burst, deadline)
            done.set()

        slots = asyncio.Semaphore(CONNECTIONS)  # the clock starts when a connection is free

        async def hit(kind: str, path: str, ok: Any) -> None:
            async with slots:
                t = time.perf_counter()
                try:
                    resp = await web.get(path, follow_redirects=False)
                    good = ok(resp)
                except httpx.HTTPError:
                    good = False
                lat[kind].append((time.perf_counter() - t) * 1000)
            fails[kind] += not good

        async def reader(i: int, rid: str) -> None:
            gif = f"/o/{tokens.open_token(secret, rid)}.gif"
            click = _click_path(secret, rid, LINK.format(i=i))
            while True:
                await hit("pixel", gif, lambda x: x.status_code == 200 and x.headers["content-type"] == "image/gif")
                await hit("click", click, lambda x: x.status_code == 302 and x.headers["location"] == LINK.format(i=i))
                if done.is_set():
                    return
                await asyncio.sleep(0.5)

        t0 = time.monotonic()
        await asyncio.gather(submit_burst(), *(reader(i, rid) for i, rid in enumerate(rids)))
        return {"lat": lat, "fails": fails, "seconds": time.monotonic() - t0}


def _recorded(db_url: str, expected: int, max_s: float = 60) -> int:
    eng = create_engine(db_url)
    deadline = time.monotonic() + max_s
    try:
        while True:
            with eng.connect() as c:
                n = int(c.execute(text("SELECT count(*) FROM events WHERE type IN ('opened', 'clicked')")).scalar_one())
            if n >= expected or time.monotonic() > deadline:
                return n
            time.sleep(0.2)
    finally:
        eng.dispose()


def run(engine: str, readers: int = 400, burst: int = 2000, max_s: float = 300) -> None:
    sink_port = free_port()
    sink = subprocess.Popen([sys.executable, "-m", "aiosmtpd", "-n", "-l", f"127.0.0.1:{sink_port}",
                             "-c", "aiosmtpd.handlers.Sink"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        with database(engine) as db:
            env = env_for(db, transport_map=f"*=127.0.0.1:{sink_port}", inbound="false")
            key = create_key(env)
            with serve(env) as url:
                res = asyncio.run(_scenario(url, key, env["MAILTRACK_SECRET_KEY"], readers, burst, max_s))
            answered = sum(len(v) for v in res["lat"].values()) - sum(res["fails"].values())
            recorded = _recorded(db, answered)
    finally:
        sink.terminate()
        sink.wait()
    for kind in ("pixel", "click"):
        v = res["lat"][kind]
        print(f"{engine:>10} {kind:>5}: {len(v)} requests during the burst ({res['seconds']:.1f} s), "
              f"p50 {pct(v, 50):.1f} ms  p99 {pct(v, 99):.1f} ms  max {max(v):.1f} ms  failures {res['fails'][kind]}")
    print(f"{engine:>10}: recorded {recorded} / answered {answered} "
          f"{'OK' if recorded == answered else 'MISMATCH'}")
