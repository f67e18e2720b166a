"""The webhook HTTP client (webhooks/http.py) against real servers on loopback that misbehave on purpose."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import pytest

from mailtrack.webhooks import guard, http, sender


async def _read_request(reader: asyncio.StreamReader) -> bytes | None:
    """One request's bytes (head and body by content-length), or None at EOF."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, ConnectionError):
        return None
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    return head + await reader.readexactly(length)


@asynccontextmanager
async def server(handle: Callable[[asyncio.StreamReader, asyncio.StreamWriter], object]) -> AsyncIterator[str]:
    srv = await asyncio.start_server(handle, "127.0.0.1", 0)  # type: ignore[arg-type]
    port = srv.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}/hook?a=1"
    finally:
        srv.close()


def _answer(status: int, body: bytes, extra: bytes = b"") -> bytes:
    return b"HTTP/1.1 %d X\r\ncontent-length: %d\r\n%s\r\n%s" % (status, len(body), extra, body)


async def test_keep_alive_reuses_one_connection_and_the_request_is_well_formed() -> None:
    connections, requests = [], []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(writer)
        while (req := await _read_request(reader)) is not None:
            requests.append(req)
            writer.write(_answer(200, b"ok"))
            await writer.drain()
        writer.close()

    async with server(handle) as url, http.Client(5, True) as client:
        for i in range(5):
            got = await client.post(url, b"x-n: %d\r\n" % i, b'{"n":%d}' % i)
            assert (got.status, got.body) == (200, b"ok")
    assert len(connections) == 1 and len(requests) == 5
    head, _, body = requests[4].partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    assert lines[0] == b"POST /hook?a=1 HTTP/1.1"
    assert lines[1] == b"Host: " + url.split("/")[2].encode()
    assert b"x-n: 4" in lines and b"content-length: 7" in lines and body == b'{"n":4}'


async def test_a_connection_the_server_closed_while_idle_is_replaced_and_the_post_sent_once_more() -> None:
    served = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        req = await _read_request(reader)
        served.append(req)
        writer.write(_answer(200, b"one"))  # keep-alive by HTTP/1.1 default, then closed anyway
        await writer.drain()
        writer.close()

    async with server(handle) as url, http.Client(5, True) as client:
        assert (await client.post(url, b"", b"1")).body == b"one"
        await asyncio.sleep(0)  # nothing to wait for: the next POST finds the close or races it
        for _ in range(3):
            assert (await client.post(url, b"", b"2")).status == 200
    assert len(served) == 4


async def test_chunked_and_until_close_bodies_are_read_and_the_kept_part_is_capped() -> None:
    async def chunked(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        writer.write(b"HTTP/1.1 202 X\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n")
        await writer.drain()
        writer.close()

    async def until_close(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        writer.write(b"HTTP/1.0 500 X\r\n\r\n" + b"y" * 3000)
        await writer.drain()
        writer.close()

    async with server(chunked) as url, http.Client(5, True, keep=8) as client:
        got = await client.post(url, b"", b"{}")
        assert (got.status, got.body) == (202, b"hello wo")
    async with server(until_close) as url, http.Client(5, True, keep=1024) as client:
        got = await client.post(url, b"", b"{}")
        assert (got.status, got.body) == (500, b"y" * 1024)


async def test_a_huge_answer_is_not_drained_and_its_connection_not_reused() -> None:
    conns = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conns.append(writer)
        while await _read_request(reader) is not None:
            writer.write(_answer(200, b"z" * (http.MAX_READ * 4)))
            try:
                await writer.drain()
            except ConnectionError:
                return

    async with server(handle) as url, http.Client(5, True) as client:
        for _ in range(2):
            got = await client.post(url, b"", b"{}")
            assert got.status == 200 and got.body == b"z" * 1024
    assert len(conns) == 2


async def test_no_answer_in_time_is_a_timeout_and_the_connection_is_dropped() -> None:
    conns = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conns.append(writer)
        if len(conns) == 1:
            await _read_request(reader)
            await asyncio.sleep(30)  # never answers
        while await _read_request(reader) is not None:
            writer.write(_answer(204, b""))
            await writer.drain()

    async with server(handle) as url, http.Client(0.5, True) as client:
        with pytest.raises(TimeoutError):
            await client.post(url, b"", b"{}")
        assert (await client.post(url, b"", b"{}")).status == 204
    assert len(conns) == 2  # the timed-out connection was not reused: its answer could still come


async def test_not_http_refused_and_unsafe_urls_become_attempts_with_reasons() -> None:
    async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        writer.write(b"SSH-2.0-OpenSSH\r\n\r\n")
        await writer.drain()
        writer.close()

    ep = {"id": "we_x", "url": ""}
    async with server(garbage) as url, sender.client(5, True) as client:
        a = await sender.post(client, {**ep, "url": url}, ["whsec_" + "A" * 44], "evt_1", b"{}", [1])
        assert a.status_code is None and a.error is not None and a.error.startswith("HTTPError")
    async with server(garbage) as url:
        port = url.split(":")[2].split("/")[0]
    async with sender.client(5, True) as client:  # nothing listens there any more
        a = await sender.post(client, {**ep, "url": f"http://127.0.0.1:{port}/"}, ["whsec_" + "A" * 44], "evt_1",
                              b"{}", [1])
        assert a.status_code is None and a.error is not None and "Error" in a.error
    async with sender.client(5, False) as client:  # private addresses not allowed
        for bad in ("http://127.0.0.1:9/", "http://localhost:9/", "http://[::1]:9/", "ftp://example.com/"):
            a = await sender.post(client, {**ep, "url": bad}, ["whsec_" + "A" * 44], "evt_1", b"{}", [1])
            assert a.error is not None and a.error.startswith("refused:"), (bad, a.error)


async def test_send_calls_back_exactly_once_and_never_before_it_returns() -> None:
    """The dispatcher's path: ``Client.send`` with a callback, for an answer, a stale keep-alive
    connection sent again, an unsafe URL, a refused connection and a timeout."""
    served = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while (req := await _read_request(reader)) is not None:
            served.append(req)
            if req.endswith(b"slow"):
                await asyncio.sleep(30)
            writer.write(_answer(200, b"ok"))
            await writer.drain()
            if req.endswith(b"close-after"):
                writer.close()  # keep-alive by default: the client finds it closed at its next POST
                return

    calls: list[tuple[str, http.Result]] = []
    returned: set[str] = set()

    def start(client: http.Client, tag: str, url: str, body: bytes) -> None:
        def done(result: http.Result) -> None:
            assert tag in returned, "called back before send returned"
            calls.append((tag, result))

        client.send(url, b"", body, done)
        returned.add(tag)

    async def until(n: int) -> None:
        for _ in range(1000):  # 10 s
            if len(calls) >= n:
                return
            await asyncio.sleep(0.01)
        raise AssertionError(f"only {len(calls)} of {n} callbacks: {calls}")

    async with server(handle) as url, http.Client(1, True) as client:
        start(client, "first", url, b"close-after")
        await until(1)
        await asyncio.sleep(0)  # the server closes the idle connection now or later: both are fine
        start(client, "again", url, b"2")
        start(client, "unsafe", "gopher://example.com/", b"3")
        start(client, "slow", url, b"slow")
        await until(4)
    async with http.Client(1, True) as client:
        port = url.split(":")[2].split("/")[0]  # the server is gone: nothing listens there
        start(client, "refused", f"http://127.0.0.1:{port}/", b"4")
        await until(5)
    got = dict(calls)
    assert len(calls) == len(got) == 5, calls  # once each
    assert isinstance(got["first"], http.Response) and got["first"].body == b"ok"
    assert isinstance(got["again"], http.Response) and got["again"].status == 200
    assert isinstance(got["unsafe"], guard.UnsafeURL)
    assert isinstance(got["slow"], TimeoutError)
    assert isinstance(got["refused"], OSError)
    assert [r for r in served if r.endswith(b"2")], "the POST after the close went out (on a new connection)"


def test_urls_are_turned_into_safe_request_lines() -> None:
    o = http.origin("https://Example.com:8443/a b/ü?x=1 2")
    assert o.key == ("https", "example.com", 8443)
    assert o.request_line == b"POST /a%20b/%C3%BC?x=1%202 HTTP/1.1\r\nHost: example.com:8443\r\n"
    assert http.origin("http://[2001:db8::1]/").request_line.endswith(b"Host: [2001:db8::1]\r\n")
    assert http.origin("http://bücher.example/").request_line.endswith(b"Host: xn--bcher-kva.example\r\n")
    for bad in ("http://exa mple.com/", "http://a%0d%0ab.example/", "http://user:pw@example.com/", "gopher://x.example/"):
        with pytest.raises(guard.UnsafeURL):
            http.origin(bad)
