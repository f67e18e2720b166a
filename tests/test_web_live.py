"""The live pages' change stream (Server-Sent Events) through a real uvicorn server: it says "changed"
when an event is recorded, and nothing while nothing happens."""

from __future__ import annotations

import http.client
import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mailtrack.app import create_app
from mailtrack.store.db import Store, open_store
from mailtrack.store.transitions import Change, record
from mailtrack.web import live
from tests.conftest import make_config
from tests.test_browser import ServerThread
from tests.test_web_seed import PASSWORD, add_user, seed_every_status


@pytest.fixture
def served(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[int, Store, str]]:
    monkeypatch.setattr(live, "CHECK_SECONDS", 0.2)
    store = open_store(f"sqlite:///{tmp_path}/live.db")
    add_user(store)
    srv = ServerThread(create_app(make_config(tmp_path), store))
    port = srv.start()
    cookie = _sign_in(port)
    yield port, store, cookie
    srv.stop()
    store.dispose()


def _sign_in(port: int) -> str:
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    c.request("GET", "/login")
    r = c.getresponse()
    pre = r.getheader("set-cookie", "").split(";")[0]
    token = re.search(r'name="csrf" value="([^"]+)"', r.read().decode()).group(1)  # type: ignore[union-attr]
    body = f"email=ops%40acme.test&password={PASSWORD.replace(' ', '+')}&csrf={token}&next=%2Femails"
    c.request("POST", "/login", body=body, headers={"Cookie": pre, "Content-Type": "application/x-www-form-urlencoded"})
    r = c.getresponse()
    r.read()
    assert r.status == 303
    return r.getheader("set-cookie", "").split(";")[0]


def _read_until(resp: http.client.HTTPResponse, want: bytes, seconds: float) -> bytes:
    got = b""
    deadline = time.monotonic() + seconds
    while want not in got and time.monotonic() < deadline:
        line = resp.readline()
        if not line:
            break
        got += line
    return got


def test_stream_says_changed_when_an_event_is_recorded(served: tuple[int, Store, str]) -> None:
    port, store, cookie = served
    eid, ids = seed_every_status(store, 1)
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    c.request("GET", f"/live/stream?email={eid}", headers={"Cookie": cookie})
    resp = c.getresponse()
    assert resp.status == 200 and resp.getheader("content-type", "").startswith("text/event-stream")
    assert b"retry:" in _read_until(resp, b"\n\n", 10)
    with store.write() as conn:
        record(conn, Change(ids["spooled"], "sent"))
    assert b"event: changed" in _read_until(resp, b"event: changed", 20)
    c.close()


def test_stream_needs_a_session(served: tuple[int, Store, str]) -> None:
    port, _store, _cookie = served
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    c.request("GET", "/live/stream")
    r = c.getresponse()
    assert r.status == 303 and r.getheader("location", "").startswith("/login")
