"""Pixel and click answered inside uvicorn's HTTP protocol (tracking/protocol.py), through a real
server on loopback as ``mailtrack serve`` runs it: the same answers as the ASGI path, every hit
recorded once, keep-alive, pipelining mixed with ordinary requests, HTTP/1.0, proxies."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from mailtrack import tokens
from mailtrack.app import create_app
from mailtrack.store import accounts
from mailtrack.store.db import Store
from mailtrack.store.schema import events
from mailtrack.tracking.fastpath import GIF
from tests.conftest import email_body, make_config
from tests.test_browser import ServerThread

SECRET = "protocol-test-secret"
HTML = '<p>Invoice</p><a href="https://pay.example.test/i/42?x=1&amp;y=2">pay</a>'


class Served:
    def __init__(self, store: Store, tmp_path: Path) -> None:
        self.store = store
        self.config = make_config(tmp_path, secret_key=SECRET)
        self.app = create_app(self.config, store)
        self.srv = ServerThread(self.app)
        self.port = self.srv.start()
        with store.write() as conn:
            self.key = accounts.create_api_key(conn, accounts.get_or_create_account(conn, "acme"))
        self.http = httpx.Client(base_url=f"http://127.0.0.1:{self.port}", timeout=30,
                                 headers={"Authorization": f"Bearer {self.key}"})

    @property
    def answered_here(self) -> int:
        return int(self.srv.server.config.http_protocol_class.answered)  # type: ignore[attr-defined]

    def recipient(self) -> str:
        r = self.http.post("/api/v1/emails", json=email_body(to=["alice@example.test"], cc=[], bcc=[], html=HTML))
        assert r.status_code == 202, r.text
        return str(r.json()["recipients"][0]["id"])

    def events(self, rid: str, type_: str) -> list[dict[str, Any]]:
        with self.store.read() as conn:
            rows = conn.execute(select(events.c.data_json).where(
                events.c.recipient_id == rid, events.c.type == type_)).all()
        return [json.loads(r[0]) for r in rows]

    def wait_events(self, rid: str, type_: str, n: int, timeout: float = 30.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while True:
            got = self.events(rid, type_)
            if len(got) >= n or time.monotonic() > deadline:
                return got
            time.sleep(0.05)

    def settle(self) -> None:
        """Every hit answered so far is written."""
        recorder = self.app.state.tracking.started_recorder
        assert recorder is None or recorder.flush(30.0), "hits not written within 30 s"

    def close(self) -> None:
        self.http.close()
        fast = getattr(self.app.state, "tracking", None)
        if fast is not None and fast.started_recorder is not None:
            fast.started_recorder.close(timeout=30.0)
        self.srv.stop()


@pytest.fixture
def served(any_store: Store, tmp_path: Path) -> Iterator[Served]:
    s = Served(any_store, tmp_path)
    yield s
    s.close()


def pixel_path(rid: str) -> str:
    return f"/o/{tokens.open_token(SECRET, rid)}.gif"


def click_path(rid: str, url: str) -> str:
    return "/c/" + tokens.click_url_token(SECRET, rid, 0, url)


def read_responses(sock: socket.socket, n: int, timeout: float = 15.0,
                   heads: tuple[int, ...] = ()) -> list[tuple[bytes, dict[bytes, bytes], bytes]]:
    """``n`` HTTP/1.1 responses (Content-Length framed) from the socket, in order; ``heads``: the
    positions of answers to HEAD (no body whatever Content-Length says)."""
    sock.settimeout(timeout)
    buf = b""
    out: list[tuple[bytes, dict[bytes, bytes], bytes]] = []
    while len(out) < n:
        while b"\r\n\r\n" not in buf:
            chunk = sock.recv(65536)
            assert chunk, f"connection closed after {len(out)} of {n} responses"
            buf += chunk
        head, _, buf = buf.partition(b"\r\n\r\n")
        status, *lines = head.split(b"\r\n")
        headers = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(b":") for ln in lines)}
        length = 0 if len(out) in heads else int(headers.get(b"content-length", b"0"))
        while len(buf) < length:
            chunk = sock.recv(65536)
            assert chunk, "connection closed inside a body"
            buf += chunk
        out.append((status, headers, buf[:length]))
        buf = buf[length:]
    return out


def test_pixel_and_click_on_one_connection_answered_here_and_recorded(served: Served) -> None:
    rid = served.recipient()
    before = served.answered_here
    target = "https://pay.example.test/i/42?x=1&y=2"
    with socket.create_connection(("127.0.0.1", served.port)) as s:
        for path in (pixel_path(rid), pixel_path(rid), click_path(rid, target)):
            s.sendall(f"GET {path} HTTP/1.1\r\nHost: t\r\nUser-Agent: Mozilla/5.0 Test\r\n\r\n".encode())
            [(status, headers, body)] = read_responses(s, 1)
            if path.startswith("/o/"):
                assert status == b"HTTP/1.1 200 OK"
                assert headers[b"content-type"] == b"image/gif" and body == GIF
                assert b"no-store" in headers[b"cache-control"]
            else:
                assert status == b"HTTP/1.1 302 Found"
                assert headers[b"location"] == target.encode()
            assert b"date" in headers and b"connection" not in headers  # kept alive
    assert served.answered_here - before == 3
    assert len(served.wait_events(rid, "opened", 2)) == 2
    [click] = served.wait_events(rid, "clicked", 1)
    assert click["ip"] == "127.0.0.1" and click["ua"] == "Mozilla/5.0 Test"
    served.settle()
    assert len(served.events(rid, "opened")) == 2 and len(served.events(rid, "clicked")) == 1  # once each


def test_pipelined_mix_with_ordinary_requests_answered_in_order(served: Served) -> None:
    rid = served.recipient()
    px = pixel_path(rid)
    reqs = (f"GET {px} HTTP/1.1\r\nHost: t\r\n\r\n"
            "GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n"
            f"GET {px} HTTP/1.1\r\nHost: t\r\n\r\n"
            f"HEAD {px} HTTP/1.1\r\nHost: t\r\n\r\n"
            f"GET {px} HTTP/1.1\r\nHost: t\r\n\r\n")
    with socket.create_connection(("127.0.0.1", served.port)) as s:
        s.sendall(reqs.encode())
        got = read_responses(s, 5, heads=(3,))
    assert [g[0] for g in got] == [b"HTTP/1.1 200 OK"] * 5
    assert [g[2] for g in got] == [GIF, got[1][2], GIF, b"", GIF]
    assert json.loads(got[1][2]) and got[1][1][b"content-type"].startswith(b"application/json")
    assert got[3][1][b"content-length"] == str(len(GIF)).encode()  # HEAD: the GIF's headers, no body
    served.wait_events(rid, "opened", 3)
    served.settle()
    assert len(served.events(rid, "opened")) == 3  # the three GETs; HEAD is answered, not counted


def test_connection_close_http10_and_errors_keep_their_answers(served: Served) -> None:
    rid = served.recipient()
    with socket.create_connection(("127.0.0.1", served.port)) as s:
        s.sendall(f"GET {pixel_path(rid)} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n".encode())
        [(status, headers, body)] = read_responses(s, 1)
        assert status == b"HTTP/1.1 200 OK" and headers[b"connection"] == b"close" and body == GIF
        s.settimeout(15)
        assert s.recv(10) == b""  # and closed
    with socket.create_connection(("127.0.0.1", served.port)) as s:  # HTTP/1.0: through ASGI
        s.sendall(f"GET {pixel_path(rid)} HTTP/1.0\r\n\r\n".encode())
        [(status, _, body)] = read_responses(s, 1)
        assert status.endswith(b"200 OK") and body == GIF
    r = served.http.post(pixel_path(rid))
    assert r.status_code == 405 and r.headers["allow"] == "GET, HEAD"
    bad = click_path(rid, "https://pay.example.test/")[:-3] + "AAA"
    r = served.http.get(bad, follow_redirects=False)
    assert r.status_code == 404 and "location" not in r.headers
    served.wait_events(rid, "opened", 2)
    served.settle()
    assert len(served.events(rid, "opened")) == 2  # the two GETs; 405 and 404 count nothing


def test_forwarded_address_from_a_trusted_proxy_is_recorded(served: Served) -> None:
    rid = served.recipient()
    before = served.answered_here
    r = served.http.get(pixel_path(rid), headers={"X-Forwarded-For": "203.0.113.7", "User-Agent": "Mozilla/5.0 P"})
    assert r.status_code == 200 and r.content == GIF
    assert served.answered_here == before + 1
    [hit] = served.wait_events(rid, "opened", 1)
    assert hit["ip"] == "203.0.113.7"  # loopback is uvicorn's default trusted proxy


def test_odd_paths_go_through_asgi_with_the_same_answers(served: Served, caplog: pytest.LogCaptureFixture) -> None:
    rid = served.recipient()
    before = served.answered_here
    with socket.create_connection(("127.0.0.1", served.port)) as s:
        # percent-escapes in the path, a made-up token: a GIF each, nothing counted
        for raw in (b"/o/%41%42.gif", pixel_path(rid).encode() + b"x"):
            s.sendall(b"GET " + raw + b" HTTP/1.1\r\nHost: t\r\n\r\n")
            [(status, _, body)] = read_responses(s, 1)
            assert status == b"HTTP/1.1 200 OK" and body == GIF
    for bad in (b"GET /o/\xc3\xa9t\xc3\xa9.gif HTTP/1.1\r\nHost: t\r\n\r\n",  # raw non-ASCII (browsers escape it)
                b"GET /o/x.gif HTTP/1.1\r\nHost: t\r\nContent-Length: nope\r\n\r\n"):
        with socket.create_connection(("127.0.0.1", served.port)) as s:
            s.sendall(bad)
            s.settimeout(15)
            assert s.recv(4096).startswith(b"HTTP/1.1 400")  # uvicorn's parser refuses it, before any of ours
    assert served.answered_here == before + 1  # only the made-up token took the short cut
    assert not [r for r in caplog.records if r.levelname in ("ERROR", "CRITICAL")]
    served.settle()
    assert served.events(rid, "opened") == []
