"""Pixel and click latency while a burst of email is submitted and delivered (``bench/tracking.py --during-burst``).

A real ``mailtrack serve`` (API, worker, tracking in one process, as ``make run``) delivers to an
aiosmtpd sink in its own process. First N readers' emails are sent; then a burst of B emails is
submitted in batches of 500 while the N readers each load their own pixel and follow their own
link, in rounds, until the burst is delivered. The readers run in a process of their own with a
bare HTTP/1.1 client on 20 keep-alive connections, so the burst's JSON work in this process does
not stall their clock (it did with one httpx loop for both: that measured the client). Printed: p50/p99 per kind, failures (non-GIF pixel,
non-302 click, errors), and recorded / answered hits read back from the store.
"""

from __future__ import annotations

import asyncio
import multiprocessing
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
    async with httpx.AsyncClient(base_url=url, headers=h, timeout=60) as api:
        r = await api.post("/api/v1/emails/batch", json={"emails": [
            _email(i, f"reader{i}@sink.test") for i in range(readers)]})
        r.raise_for_status()
        rids = [e["recipients"][0]["id"] for e in r.json()["emails"]]
        await _sent(api, readers, deadline)
        pairs = [(f"/o/{tokens.open_token(secret, rid)}.gif", _click_path(secret, rid, LINK.format(i=i)),
                  LINK.format(i=i)) for i, rid in enumerate(rids)]
        ctx = multiprocessing.get_context("spawn")
        stop, (ours, theirs) = ctx.Event(), ctx.Pipe(duplex=False)
        host, port = url.removeprefix("http://").split(":")
        readers_proc = ctx.Process(target=_readers_main, args=(host, int(port), pairs, stop, theirs))
        readers_proc.start()
        assert ours.poll(60) and ours.recv() == "ready"
        t0 = time.monotonic()
        try:
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
        finally:
            stop.set()
        seconds = time.monotonic() - t0
        got = ours.recv() if ours.poll(60) else {"lat": {"pixel": [], "click": []}, "fails": {"pixel": 1, "click": 1}}
        readers_proc.join(30)
        return {**got, "seconds": seconds}


def _readers_main(host: str, port: int, pairs: list[tuple[str, str, str]], stop: Any, out: Any) -> None:
    """The readers, in a process of their own so that the burst's client work does not stall their clock."""
    out.send(asyncio.run(_readers(host, port, pairs, stop, out)))


async def _readers(host: str, port: int, pairs: list[tuple[str, str, str]], stop: Any, out: Any) -> dict[str, Any]:
    """Each reader loads its pixel, follows its link, waits 0.5 s, until ``stop``; CONNECTIONS keep-alive
    connections; a request's clock starts when it has a connection (as a browser's would)."""
    lat: dict[str, list[float]] = {"pixel": [], "click": []}
    fails = {"pixel": 0, "click": 0}
    free: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = asyncio.Queue()
    for _ in range(CONNECTIONS):
        free.put_nowait(await asyncio.open_connection(host, port))
    out.send("ready")

    async def hit(kind: str, path: str, ok: Any) -> None:
        reader, writer = await free.get()
        t = time.perf_counter()  # the clock starts once the request has a connection
        try:
            writer.write(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: {UA}\r\n\r\n".encode())
            head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
            headers = {k.lower(): v.strip() for k, _, v in (h.partition(":") for h in head[1:] if h)}
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            good = ok(int(head[0].split()[1]), headers, body)
            free.put_nowait((reader, writer))
        except (OSError, asyncio.IncompleteReadError, ValueError, IndexError):
            good = False
            writer.close()
            free.put_nowait(await asyncio.open_connection(host, port))
        lat[kind].append((time.perf_counter() - t) * 1000)
        fails[kind] += not good

    async def reader(gif: str, click: str, link: str) -> None:
        while True:
            await hit("pixel", gif, lambda st, h, b: st == 200 and h.get("content-type") == "image/gif")
            await hit("click", click, lambda st, h, b: st == 302 and h.get("location") == link)
            if stop.is_set():
                return
            await asyncio.sleep(0.5)

    await asyncio.gather(*(reader(*p) for p in pairs))
    return {"lat": lat, "fails": fails}


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
