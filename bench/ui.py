"""Server time of the web pages with 100,000 emails (300,000 recipients, 1,000,000 events).

Fills a fresh SQLite file and/or PostgreSQL schema with bulk executemany inserts, then calls the
ASGI app in-process (httpx ASGITransport in one event loop, signed in; sync routes run in the
thread pool as under uvicorn) 200 times per page and prints p50/p99 per page.
Baseline, measured in the same run: the sign-in page (template only, no query) and the JSON
list endpoint GET /api/v1/emails?limit=50 (store.queries.list_emails).

    .venv/bin/python bench/ui.py [--engine sqlite|postgresql|both] [--emails 100000] [--requests 200]
"""

from __future__ import annotations

import argparse
import random
import re
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import database
from argon2 import PasswordHasher
from sqlalchemy import insert

from mailtrack.config import load_config
from mailtrack.store import accounts
from mailtrack.store.db import open_store
from mailtrack.store.schema import emails, events, recipients

TARGET_P99_MS = 50.0
STATUSES = ["sent"] * 14 + ["deferred", "spooled", "soft_bounce", "hard_bounce", "rejected", "sent"]
SOURCES = ["task_sheet", "invoice", "purchase_order", "event_message"]
HTML = "<html><body><p>Task sheet for the service visit.</p><p><a href='https://portal.test/t'>Open</a></p></body></html>"
CHUNK = 20_000


def fill(store: Any, n_emails: int) -> tuple[int, list[str], list[str]]:
    """Bulk rows straight into the tables; returns (account id, some email ids, some references)."""
    rnd = random.Random(7)
    with store.write() as conn:
        acct = accounts.get_or_create_account(conn, "bench")
        accounts.add_user(conn, acct, "bench@ui.test",
                          PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1).hash("bench-password"))
        client_ids = [accounts.create_client(conn, acct, f"C-{i}", f"Client {i}", None)["id"] for i in range(10)]
    t0 = 1_700_000_000.0
    sample_ids: list[str] = []
    sample_refs: list[str] = []
    e_rows: list[dict[str, Any]] = []
    r_rows: list[dict[str, Any]] = []
    v_rows: list[dict[str, Any]] = []

    def flush(final: bool = False) -> None:
        if len(v_rows) < CHUNK * 3 and not final:
            return
        with store.write() as conn:
            if e_rows:
                conn.execute(insert(emails), e_rows)
            if r_rows:
                conn.execute(insert(recipients), r_rows)
            if v_rows:
                conn.execute(insert(events), v_rows)
        e_rows.clear()
        r_rows.clear()
        v_rows.clear()

    for i in range(n_emails):
        eid = f"{i:013x}{rnd.getrandbits(40):010x}"
        at = t0 + i * 3.0
        ref = f"T-{i // 5:06d}"  # five emails per task: sheet, events, reminders
        if i % 997 == 0:
            sample_ids.append(eid)
            sample_refs.append(ref)
        e_rows.append({
            "id": eid, "account_id": acct, "client_id": client_ids[i % 10], "idempotency_key": None,
            "from_addr": "Acme <ops@acme.test>", "reply_to": None, "to_header": "a@x.test", "cc_header": "",
            "subject": f"Task sheet {ref} — service visit #{i}", "text_body": "Hello", "html_body": HTML,
            "headers_json": "{}", "metadata_json": "{}", "source_type": SOURCES[i % 4], "source_reference": ref,
            "source_event": "task_created" if i % 4 == 3 else None, "tracking": True, "tracking_override": None,
            "size": 300, "created_at": at,
        })
        n_events = 0
        for k, kind in enumerate(("to", "cc", "bcc")):
            rid = f"{eid}{k}"
            status = rnd.choice(STATUSES)
            opens = rnd.choice((0, 0, 1, 2)) if status == "sent" else 0
            r_rows.append({
                "id": rid, "email_id": eid, "account_id": acct, "address": f"user{i}.{k}@example.test",
                "domain": "example.test", "kind": kind, "status": status,
                "reason": "550 5.1.1 user unknown" if status == "hard_bounce" else None, "last_reply": None,
                "attempts": 1, "next_attempt_at": at + 300 if status in ("spooled", "deferred") else None,
                "first_attempt_at": at, "lease_until": None, "lease_owner": None, "opens_total": opens,
                "opens_human": min(opens, 1), "clicks_total": 0, "clicks_human": 0,
                "first_opened_at": at + 60 if opens else None, "first_clicked_at": None,
                "complained": False, "updated_at": at,
            })
            # ten events per email on average: 1,000,000 for 100,000 emails
            types = ["creating", "spooled", status if status != "spooled" else "deferred"]
            if k == 0:
                types.append("opened")
            for t in types:
                v_rows.append({"recipient_id": rid, "email_id": eid, "account_id": acct, "type": t,
                               "at": at + n_events, "reason": None, "data_json": None, "dedupe_key": None})
                n_events += 1
        flush()
    flush(final=True)
    return acct, sample_ids, sample_refs


async def timed(client: Any, paths: list[str], n: int) -> tuple[float, float]:
    samples = []
    for i in range(n):
        t = time.perf_counter()
        r = await client.get(paths[i % len(paths)])
        samples.append((time.perf_counter() - t) * 1000)
        if r.status_code != 200:
            raise RuntimeError(f"{paths[i % len(paths)]} → {r.status_code}: {r.text[:200]}")
    samples.sort()
    return statistics.median(samples), samples[min(len(samples) - 1, int(len(samples) * 0.99))]


async def measure(app: Any, key: str, ids: list[str], refs: list[str], n_requests: int) -> dict[str, tuple[float, float]]:
    import httpx

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://bench") as client:
        page = await client.get("/login")
        token = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]
        r = await client.post("/login", data={"email": "bench@ui.test", "password": "bench-password",
                                              "csrf": token})
        assert r.status_code == 303, r.text
        first = (await client.get("/emails")).text
        found = re.search(r"page 1 of (\d+)", first)
        last = min(500, int(found.group(1))) if found else 2
        deep = (await client.get(f"/emails?page={last - 1}")).text
        older = re.search(r'rel="next" href="\?([^"]+)"', deep)
        assert older, f"no Older link on page {last - 1}"
        pages = {
            "baseline: sign-in page (no query)": ["/login"],
            "baseline: JSON GET /api/v1/emails?limit=50": ["/api/v1/emails?limit=50"],
            "list page /emails": ["/emails"],
            "email page /emails/{id}": [f"/emails/{i}" for i in ids],
            "task notes /tasks/{ref}": [f"/tasks/{r}" for r in refs],
            "list, status=hard_bounce": ["/emails?status=hard_bounce"],
            "list, client + type filter": ["/emails?client=C-3&source_type=invoice"],
            f"list, page {last} (numbered link: offset)": [f"/emails?page={last}"],
            f"list, page {last} (Older link: keyset)": ["/emails?" + older.group(1).replace("&amp;", "&")],
            "list, search q=T-10 (subject/address/ref)": ["/emails?q=T-10"],
        }
        results: dict[str, tuple[float, float]] = {}
        for name, paths in pages.items():
            if name.startswith("baseline: JSON"):
                client.headers["Authorization"] = f"Bearer {key}"
            await timed(client, paths, 10)  # warm caches
            results[name] = await timed(client, paths, n_requests)
            client.headers.pop("Authorization", None)
        return results


def run(engine: str, n_emails: int, n_requests: int) -> bool:
    import asyncio

    from mailtrack.app import create_app

    with database(engine) as url:
        store = open_store(url)
        t = time.perf_counter()
        acct, ids, refs = fill(store, n_emails)
        fill_s = time.perf_counter() - t
        if engine == "postgresql":
            with store.write() as conn:
                conn.exec_driver_sql("ANALYZE")
        with store.write() as conn:
            key = accounts.create_api_key(conn, acct)
        config = load_config(env={"MAILTRACK_DATABASE_URL": url, "MAILTRACK_SECRET_KEY": "bench"})
        print(f"\n{engine}: {n_emails:,} emails, {n_emails * 3:,} recipients, ~{n_emails * 10:,} events "
              f"inserted in {fill_s:.1f}s")
        results = asyncio.run(measure(create_app(config, store), key, ids, refs, n_requests))
        base = results["baseline: JSON GET /api/v1/emails?limit=50"][1]
        print(f"  {'page':44} {'p50 ms':>8} {'p99 ms':>8}  p99 vs JSON list")
        ok = True
        for name, (p50, p99) in results.items():
            target = name.split(" ")[0] in ("list", "email", "task") and "," not in name
            flag = ("  OK" if p99 < TARGET_P99_MS else "  OVER TARGET") if target else ""
            ok = ok and (p99 < TARGET_P99_MS or not target)
            print(f"  {name:44} {p50:8.2f} {p99:8.2f}  {p99 / base:5.2f}×{flag}")
        store.dispose()
        return ok


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--engine", choices=["sqlite", "postgresql", "both"], default="both")
    ap.add_argument("--emails", type=int, default=100_000)
    ap.add_argument("--requests", type=int, default=200)
    args = ap.parse_args()
    engines = ["sqlite", "postgresql"] if args.engine == "both" else [args.engine]
    print(f"target: p99 < {TARGET_P99_MS:.0f} ms for the list, email and task notes pages "
          f"({args.requests} requests each, in-process)")
    results = [run(e, args.emails, args.requests) for e in engines]
    sys.exit(0 if all(results) else 1)


if __name__ == "__main__":
    main()
