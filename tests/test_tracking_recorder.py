"""Group commit of hits: N concurrent hits → N events; the pixel survives a slow or broken store."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
from sqlalchemy import create_engine, func, select

from mailtrack import tokens
from mailtrack.api.app import create_app
from mailtrack.store.db import Store
from mailtrack.store.schema import events, recipients
from mailtrack.tracking.fastpath import GIF
from mailtrack.tracking.recorder import Recorder

from .conftest import Api, email_body, make_config

UA = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0"


def _recipient(api: Api) -> str:
    r = api.post("/api/v1/emails", email_body(to=["alice@example.test"], cc=[], bcc=[], html="<p>hi</p>"))
    return str(r.json()["recipients"][0]["id"])


def _opens(store: Store, rid: str) -> tuple[int, int, int]:
    with store.read() as conn:
        n = conn.execute(select(func.count()).select_from(events).where(
            events.c.recipient_id == rid, events.c.type == "opened")).scalar_one()
        row = conn.execute(select(recipients.c.opens_total, recipients.c.opens_human).where(
            recipients.c.id == rid)).one()
    return int(n), int(row[0]), int(row[1])


async def test_concurrent_hits_are_group_committed_exactly_once_each(api: Api) -> None:
    recorder = Recorder(api.store)
    api.app.state.tracking_recorder = recorder  # before the first request builds the app's stack
    rids = [_recipient(api), _recipient(api)]
    n = 150
    transport = httpx.ASGITransport(app=api.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        paths = [f"/o/{tokens.open_token(api.config.secret_key, rids[i % 2])}.gif" for i in range(n)]
        got = await asyncio.gather(*(client.get(p, headers={"User-Agent": UA}) for p in paths))
    assert all(r.status_code == 200 and r.content == GIF for r in got)
    # acknowledged means committed: the counts are there as soon as the responses are
    assert _opens(api.store, rids[0]) == (n // 2, n // 2, n // 2)
    assert _opens(api.store, rids[1]) == (n // 2, n // 2, n // 2)
    assert recorder.written == n
    assert recorder.batches < n // 3  # grouped, not one transaction per hit
    recorder.close()


def test_pixel_still_served_when_the_store_is_broken(tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    config = make_config(tmp_path)
    broken = Store(create_engine(f"sqlite:///{tmp_path}/missing-dir/nope/x.db"))
    app = create_app(config, broken)
    recorder = Recorder(broken, retry_for=0.2)
    app.state.tracking_recorder = recorder
    client = TestClient(app)
    token = tokens.open_token(config.secret_key, "abc123")
    t = time.monotonic()
    r = client.get(f"/o/{token}.gif", headers={"User-Agent": UA})
    assert r.status_code == 200 and r.content == GIF and r.headers["content-type"] == "image/gif"
    assert time.monotonic() - t < 2
    broken.dispose()  # a disposed engine: still a GIF
    assert client.get(f"/o/{token}.gif").content == GIF
    # a click cannot be redirected without its stored URL: a clear 503, never a traceback
    r = client.get(f"/c/{tokens.click_token(config.secret_key, 'abc123', 0)}", follow_redirects=False)
    assert r.status_code == 503 and "location" not in r.headers
    deadline = time.monotonic() + 5
    while recorder.lost < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert recorder.lost == 2 and recorder.written == 0  # given up after retry_for, and said so
    recorder.close()


def test_slow_store_answers_after_the_timeout_and_writes_later(api: Api) -> None:
    recorder = Recorder(api.store)
    api.app.state.tracking_recorder = recorder
    api.app.state.tracking_timeout = 0.3
    rid = _recipient(api)
    token = tokens.open_token(api.config.secret_key, rid)
    with api.store.write() as conn:  # holds the writer's lock (SQLite) / the recipient row (PostgreSQL)
        conn.execute(select(recipients.c.id).where(recipients.c.id == rid).with_for_update())
        t = time.monotonic()
        r = api.client.get(f"/o/{token}.gif", headers={"User-Agent": UA})
        waited = time.monotonic() - t
        assert r.status_code == 200 and r.content == GIF
        assert 0.25 < waited < 2.0
        time.sleep(0.2)
    deadline = time.monotonic() + 5
    while _opens(api.store, rid)[0] == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _opens(api.store, rid) == (1, 1, 1)
    recorder.close()


def test_close_flushes_queued_hits(api: Api) -> None:
    from mailtrack.store.hits import Hit

    rid = _recipient(api)
    recorder = Recorder(api.store)
    for _ in range(5):
        recorder.submit_nowait(Hit(rid, "opened", time.time(), "203.0.113.1", UA, "human"))
    recorder.close()
    assert _opens(api.store, rid) == (5, 5, 5)
