"""Delivery benchmark: emails submitted through the batch API until every recipient is `sent`.

A real `mailtrack serve` on a fresh database delivers N single-recipient emails of SIZE bytes to
Postfix's `smtp-sink` on a loopback port (transport map `*`). The clock runs from the first batch
POST to the moment the API reports every recipient `sent`, so it covers submission, the durable
spool, claiming, composing, SMTP and recording the results.

Baseline, measured in the same run: `../shared/bench/postfix_baseline.sh N SIZE` — Postfix
accepting the same number of messages of the same size over SMTP into its durable queue and
relaying them to an smtp-sink. Printed: both rates and mailtrack / Postfix.

Also printed: the cost of composing one recipient's message from the cached template (in-process),
for plain text and for the realistic message, next to the old way of composing a tracked message
(rewrite the HTML and quoted-printable encode it again for every recipient), and the cost of a
DKIM signature.

--realistic: the mail looks like real mail — HTML with five tracked links and a text part, SIZE
bytes in all, tracking on (pixel + rewritten links per recipient), and DKIM-signed (implies --dkim).
--dkim: the From domain is a verified sending domain (records published on a DNS server on loopback,
`mailtrack domain check` passed), so every message is signed (RSA-2048, relaxed/relaxed); the
baseline is then Postfix signing with the OpenDKIM milter (`DKIM=1 postfix_baseline.sh`).

usage: python bench/delivery.py [-n 3000] [--size 4096] [--realistic] [--dkim] [--pg] [--no-postfix]
       [--max-seconds 180]
       --pg adds PostgreSQL runs with 1 and 2 worker processes (MAILTRACK_TEST_PG_URL or local default).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import httpx
from _common import BIN, REPO, SHARED, create_key, database, env_for, free_port, serve

sys.path.insert(0, str(REPO / "src"))
POSTFIX = SHARED / "bench" / "postfix_baseline.sh"  # MAILTRACK_SHARED_DIR, e.g. /work/shared from a worktree


def email(i: int, size: int, realistic: bool = False) -> dict[str, Any]:
    line = "Your invoice is attached; thank you for your business.\n"
    if realistic:
        html = realistic_html(i, size * 2 // 3)
        text = (line * (size // len(line) + 1))[:max(size - len(html), 200)]
        return {"from": "Acme Billing <billing@acme.example>", "to": [f"customer{i}@sink.test"],
                "subject": f"Invoice INV-{i} is ready", "html": html, "text": text, "tracking": True,
                "source": {"type": "invoice", "reference": f"INV-{i}"}}
    return {"from": "Acme Billing <billing@acme.example>", "to": [f"customer{i}@sink.test"],
            "subject": f"Invoice INV-{i}", "text": (line * (size // len(line) + 1))[:size],
            "source": {"type": "invoice", "reference": f"INV-{i}"}}


def realistic_html(i: int, size: int) -> str:
    """An invoice notice: a table, five links (view, pay, PDF, portal, support), a footer; about ``size`` chars."""
    links = "".join(f'<p><a href="https://portal.acme.example/{what}/INV-{i}" style="color:#0a58ca">{label}</a></p>\n'
                    for what, label in (("view", "View invoice"), ("pay", "Pay online"), ("pdf", "Download PDF"),
                                        ("account", "Your account"), ("help", "Contact support")))
    row = ('<tr><td style="padding:4px 8px">Field service, technician visit</td><td style="padding:4px 8px;'
           'text-align:right">1</td><td style="padding:4px 8px;text-align:right">120.00 €</td></tr>\n')
    head = (f'<!doctype html><html><head><meta charset="utf-8"><title>Invoice INV-{i}</title></head>'
            f'<body style="font-family:Arial,sans-serif"><h1>Invoice INV-{i}</h1>\n<p>Dear customer, please find '
            'your invoice below.</p>\n<table style="border-collapse:collapse">\n')
    tail = f'</table>\n{links}<p style="color:#666;font-size:12px">Acme Field Services · 1 Main St</p></body></html>'
    rows = max(1, (size - len(head) - len(tail)) // len(row))
    return head + row * rows + tail


async def run_delivery(url: str, key: str, n: int, size: int, max_s: float,
                       realistic: bool = False) -> tuple[float, float]:
    """(seconds until all submitted, seconds until all sent)."""
    h = {"Authorization": f"Bearer {key}"}
    batch = 500
    async with httpx.AsyncClient(base_url=url, headers=h, timeout=120) as c:
        t0 = time.perf_counter()
        todo = iter(range(0, n, batch))

        async def submitter() -> None:
            for start in todo:
                body = {"emails": [email(i, size, realistic) for i in range(start, min(start + batch, n))]}
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
            await asyncio.sleep(0.1)  # as the baseline polls its queue; each poll is a stats query on the server


def start_sink() -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    proc = subprocess.Popen(["smtp-sink", "-u", "nobody", f"127.0.0.1:{port}", "500"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.3)
    return proc, port


@contextlib.contextmanager
def signing_domain(env: dict[str, str]) -> Iterator[str]:
    """acme.example as the bench account's verified sending domain: the records `domain show` asks for,
    served by a DNS server on loopback, and `domain check` run against it. Yields the DKIM selector."""
    sys.path.insert(0, str(REPO))
    from tests.helpers.dns_server import dns_server

    with dns_server() as (zone, resolver):
        env["MAILTRACK_DNS_RESOLVER"] = resolver
        mt = str(BIN / "mailtrack")
        subprocess.run([mt, "domain", "add", "acme.example", "--account", "bench"], env=env, check=True,
                       capture_output=True, timeout=60)
        shown = json.loads(subprocess.run([mt, "domain", "show", "acme.example", "--json"], env=env, check=True,
                                          capture_output=True, timeout=60).stdout)
        for rec in shown["records"]:
            zone.set(rec["name"], rec["type"], rec["value"])
        checked = json.loads(subprocess.run([mt, "domain", "check", "acme.example", "--json"], env=env, check=True,
                                            capture_output=True, timeout=60).stdout)
        if not checked["signing"]:
            raise RuntimeError(f"the sending domain did not verify: {checked}")
        yield checked["selector"]


def mailtrack_run(engine: str, n: int, size: int, workers: int, max_s: float, *, realistic: bool = False,
                  dkim: bool = False) -> tuple[float, float]:
    sink, port = start_sink()
    extra: list[subprocess.Popen[bytes]] = []
    try:
        with database(engine) as db:
            env = env_for(db, transport_map=f"*=127.0.0.1:{port}", inbound="false", smtp_timeout="30s")
            key = create_key(env)
            with (signing_domain(env) if dkim else contextlib.nullcontext()), serve(env) as url:
                for _ in range(workers - 1):
                    extra.append(subprocess.Popen([str(BIN / "mailtrack"), "worker"], env=env,
                                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
                time.sleep(1.0 if extra else 0)  # let extra workers start before the clock does
                return asyncio.run(run_delivery(url, key, n, size, max_s, realistic))
    finally:
        for p in extra:
            p.send_signal(signal.SIGTERM)
            p.wait(20)
        sink.terminate()
        sink.wait()


def postfix_run(n: int, size: int, max_s: float, dkim: bool = False) -> float | None:
    if not POSTFIX.exists():
        print(f"postfix baseline script not found at {POSTFIX}")
        return None
    out = subprocess.run(["bash", str(POSTFIX), str(n), str(size)], capture_output=True, text=True,
                         timeout=max_s + 120, env={**os.environ, "DKIM": "1" if dkim else "0"})
    print("  " + (out.stdout.strip() or out.stderr.strip()))
    m = re.search(r"(\d+) msg/s end-to-end", out.stdout)
    return float(m.group(1)) if m else None


def compose_cost(size: int, n: int = 3000) -> None:
    from mailtrack.compose import Composer, EmailSource, _body_part, build_template
    from mailtrack.domains import keys, sign
    from mailtrack.inject import personalize_html

    plain, real = email(0, size), email(0, size, realistic=True)
    common = {"from_addr": plain["from"], "subject": plain["subject"], "to_header": plain["to"][0]}
    srcs = (("text 4 KB, untracked", EmailSource(id="e1", text=plain["text"], **common)),
            ("realistic: HTML, 5 links, tracked", EmailSource(id="e2", text=real["text"], html=real["html"],
                                                              tracking=True, **common)))
    c = Composer(secret="s", bounce_domain="b.test", public_url="https://t.test")
    for label, src in srcs:
        t0 = time.perf_counter()
        for _ in range(200):
            build_template(src)
        build = (time.perf_counter() - t0) / 200
        t0 = time.perf_counter()
        for i in range(n):
            out = c.compose(src, f"{i:023x}", "x@sink.test")
        per = (time.perf_counter() - t0) / n
        print(f"  compose {label} ({len(out.data)} bytes): template {build * 1e6:.0f} µs once per email, "
              f"{per * 1e6:.0f} µs per recipient from the cache")
    # the old way, same run: rewrite the links and quoted-printable encode the HTML for every recipient
    src = srcs[1][1]
    t0 = time.perf_counter()
    for i in range(n // 3):
        html = personalize_html(src.html or "", email_id="e2", recipient_id=f"{i:023x}", public_url="https://t.test",
                                secret="s")
        _body_part(html, "html", qp=True)
    old = (time.perf_counter() - t0) / (n // 3)
    t0 = time.perf_counter()
    for i in range(n):
        c.compose(src, f"{i:023x}", "x@sink.test")
    new = (time.perf_counter() - t0) / n
    print(f"  tracked HTML per recipient: rewrite + encode each time {old * 1e6:.0f} µs, template with token "
          f"slots {new * 1e6:.0f} µs → {old / new:.1f}× faster (target ≤ 150 µs)")
    key = keys.generate()
    data = c.compose(src, "r1", "x@sink.test").data
    t0 = time.perf_counter()
    for _ in range(300):
        sign.sign(data, domain="acme.example", selector="s1", key=key)
    print(f"  DKIM signature (RSA-2048, relaxed/relaxed, {len(data)} bytes): "
          f"{(time.perf_counter() - t0) / 300 * 1e6:.0f} µs per message")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-n", type=int, default=3000)
    ap.add_argument("--size", type=int, default=4096)
    ap.add_argument("--pg", action="store_true", default=bool(os.environ.get("BENCH_PG")))
    ap.add_argument("--no-postfix", action="store_true")
    ap.add_argument("--max-seconds", type=float, default=180)
    ap.add_argument("--realistic", action="store_true", help="HTML, five tracked links, text part, signed")
    ap.add_argument("--dkim", action="store_true", help="sign every message; baseline Postfix + OpenDKIM")
    a = ap.parse_args()
    a.dkim = a.dkim or a.realistic
    mode = ("realistic (HTML, 5 tracked links, signed)" if a.realistic else "plain text") + (
        ", DKIM-signed" if a.dkim and not a.realistic else "")

    print(f"delivery: {a.n} single-recipient emails of {a.size} bytes, {mode}, batch API → worker → smtp-sink")
    compose_cost(a.size)
    sub, total = mailtrack_run("sqlite", a.n, a.size, 1, a.max_seconds, realistic=a.realistic, dkim=a.dkim)
    rate = a.n / total
    print(f"  mailtrack SQLite, 1 process: submitted in {sub:.2f} s, all sent in {total:.2f} s, {rate:.0f} msg/s")
    pg_rates: list[tuple[int, float]] = []
    if a.pg:
        for workers in (1, 2):
            sub, total = mailtrack_run("postgresql", a.n, a.size, workers, a.max_seconds, realistic=a.realistic,
                                       dkim=a.dkim)
            pg_rates.append((workers, a.n / total))
            print(f"  mailtrack PostgreSQL, {workers} worker process(es): submitted in {sub:.2f} s, "
                  f"all sent in {total:.2f} s, {a.n / total:.0f} msg/s")
    base = None if a.no_postfix else postfix_run(a.n, a.size, a.max_seconds, dkim=a.dkim)
    if base:
        print(f"ratio mailtrack/{'postfix+opendkim' if a.dkim else 'postfix'}: SQLite {rate / base:.2f}"
              + "".join(f", PostgreSQL×{w} {r / base:.2f}" for w, r in pg_rates)
              + "  (≥ 1.0 means mailtrack delivers at least as fast as Postfix)")


if __name__ == "__main__":
    main()
