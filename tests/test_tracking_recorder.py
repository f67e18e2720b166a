"""Group commit of hits: N concurrent hits → N events; the pixel survives a slow or broken store."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
from sqlalchemy import create_engine, func, select

from mailtrack import tokens
from mailtrack.app import create_app
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
        with api.store.write() as conn:  # a commit that takes long: the hits arriving meanwhile wait together
            conn.execute(select(recipients.c.id).where(recipients.c.id.in_(rids)).with_for_update())
            got = await asyncio.gather(*(client.get(p, headers={"User-Agent": UA}) for p in paths))
        assert all(r.status_code == 200 and r.content == GIF for r in got)  # all answered while it was held
    assert await asyncio.to_thread(recorder.flush, 30.0)  # and written after
    assert _opens(api.store, rids[0]) == (n // 2, n // 2, n // 2)
    assert _opens(api.store, rids[1]) == (n // 2, n // 2, n // 2)
    assert recorder.written == n and recorder.lost == 0
    assert recorder.batches <= 6  # grouped, not one transaction per hit
    recorder.close()


def test_pixel_and_click_served_when_the_store_is_broken(tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    config = make_config(tmp_path)
    broken = Store(create_engine(f"sqlite:///{tmp_path}/missing-dir/nope/x.db"))
    app = create_app(config, broken)
    recorder = Recorder(broken, retry_for=0.2)
    app.state.tracking_recorder = recorder
    client = TestClient(app)
    token = tokens.open_token(config.secret_key, "abc123")
    r = client.get(f"/o/{token}.gif", headers={"User-Agent": UA})
    assert r.status_code == 200 and r.content == GIF and r.headers["content-type"] == "image/gif"
    broken.dispose()  # a disposed engine: still a GIF
    assert client.get(f"/o/{token}.gif").content == GIF
    # a click carries its target: it redirects with the store down
    url = "https://portal.acme.test/invoice/42?x=1"
    r = client.get(f"/c/{tokens.click_url_token(config.secret_key, 'abc123', 0, url)}", follow_redirects=False)
    assert r.status_code == 302 and r.headers["location"] == url
    # an old-style token needs its stored URL: a clear 503, never a traceback
    r = client.get(f"/c/{tokens.click_token(config.secret_key, 'abc123', 0)}", follow_redirects=False)
    assert r.status_code == 503 and "location" not in r.headers
    assert recorder.flush(30.0)
    assert recorder.lost == 3 and recorder.written == 0  # given up after retry_for, and said so
    recorder.close()


def test_hit_answered_while_the_store_is_locked_is_written_when_it_is_free(api: Api) -> None:
    recorder = Recorder(api.store)
    api.app.state.tracking_recorder = recorder
    rid = _recipient(api)
    token = tokens.open_token(api.config.secret_key, rid)
    with api.store.write() as conn:  # holds the writer's lock (SQLite) / the recipient row (PostgreSQL)
        conn.execute(select(recipients.c.id).where(recipients.c.id == rid).with_for_update())
        r = api.client.get(f"/o/{token}.gif", headers={"User-Agent": UA})
        assert r.status_code == 200 and r.content == GIF  # answered without the store
        assert _opens(api.store, rid) == (0, 0, 0)  # answered before any commit
    assert recorder.flush(30.0)
    assert _opens(api.store, rid) == (1, 1, 1)
    recorder.close()


def test_close_flushes_queued_hits(api: Api) -> None:
    from mailtrack.store.hits import Hit

    rid = _recipient(api)
    recorder = Recorder(api.store)
    for _ in range(5):
        recorder.submit(Hit(rid, "opened", time.time(), "203.0.113.1", UA, "human"))
    recorder.close()
    assert _opens(api.store, rid) == (5, 5, 5)
