"""The HTTP/1.1 client webhook POSTs go out by: keep-alive pools, httptools parsing, the SSRF guard at connect.

Why not aiohttp, which this replaced: a webhook POST must cost little next to what the receiver
spends on it, and aiohttp's own per-request work (URL and header objects, tracing hooks, cookie
and redirect machinery, a task per read) capped single-event delivery at 0.34–0.48× of what the
receiver can take (`bench/webhooks.py`, 2026-12-02), below the 0.5× the dispatcher is asked for
with all its database work on top. A POST here is one ``transport.write`` of bytes built once and a
response parsed by httptools (llhttp, uvicorn's parser) in the protocol's callbacks.

What it does, and nothing more:

- POST only, one request at a time per connection (no pipelining), keep-alive unless the
  response closes it; a connection idle for more than ``IDLE`` seconds is not reused.
- A new connection resolves the host through ``guard.resolve``, which refuses loopback, private …
  addresses (unless allowed), and connects to the address it checked: DNS rebinding cannot move a
  check and its connection apart. IP-literal hosts are checked the same way.
- TLS verifies the certificate against the URL's host name.
- Redirects are never followed: a 3xx is an answer like any other.
- The response body is kept up to ``keep`` bytes and read up to ``MAX_READ``; past that the
  connection is closed rather than drained.
- A request on a reused connection that the server had already closed (no byte of an answer) is
  sent once more on a new connection, as browsers do; a receiver may then see it twice, which
  at-least-once delivery allows.
"""

from __future__ import annotations

import asyncio
import re
import ssl
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import cast
from urllib.parse import quote, urlsplit

import httptools

from . import guard

MAX_READ = 64 * 1024
IDLE = 15.0
MAX_IDLE = 256  # idle connections kept per origin

_HOST_OK = re.compile(r"[A-Za-z0-9.\-_]+")


class HTTPError(Exception):
    """No usable answer: the connection failed, was closed before the answer, or the answer was not HTTP."""


class _Stale(HTTPError):
    """The connection was closed before a single byte of the answer came."""


@dataclass(slots=True)  # one per POST: a frozen dataclass's __init__ costs several times more
class Response:
    status: int
    body: bytes  # its first ``keep`` bytes


@dataclass(frozen=True, slots=True)
class Origin:
    """Where a URL's requests go, and the bytes that name it in the request."""

    target: guard.Target
    request_line: bytes  # b"POST /path?q HTTP/1.1\r\nHost: host[:port]\r\n"

    @property
    def key(self) -> tuple[str, str, int]:
        return self.target.scheme, self.target.host, self.target.port


@lru_cache(maxsize=1024)
def origin(url: str) -> Origin:
    """The URL's origin and request line; ``guard.UnsafeURL`` when it is not one to POST to."""
    target = guard.parse(url)
    parts = urlsplit(url.strip())
    try:
        host = target.host.encode("idna").decode("ascii") if not target.host.isascii() else target.host
    except UnicodeError as e:
        raise guard.UnsafeURL(f"not a valid host name: {target.host!r}") from e
    if ":" in host:  # an IPv6 literal
        shown = f"[{host}]"
    elif _HOST_OK.fullmatch(host):
        shown = host
    else:
        raise guard.UnsafeURL(f"not a valid host name: {target.host!r}")
    if parts.port is not None:
        shown += f":{parts.port}"
    # percent-encode what may not stand in a request line (spaces, controls, non-ASCII), keep the rest
    path = quote(parts.path or "/", safe="/%:@!$&'()*+,;=-._~")
    if parts.query:
        path += "?" + quote(parts.query, safe="/%:@!$&'()*+,;=-._~?")
    return Origin(target, f"POST {path} HTTP/1.1\r\nHost: {shown}\r\n".encode("ascii"))


Result = Response | BaseException
Callback = Callable[[Result], None]


class _Connection(asyncio.Protocol):
    """One keep-alive connection; ``request`` sends and calls back once with the whole answer (or
    ``keep`` of it) or the error — never from inside the parser: by ``call_soon``."""

    def __init__(self, keep: int) -> None:
        self.keep = keep
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.callback: Callback | None = None  # set while a request waits for its answer
        self.timer: asyncio.TimerHandle | None = None
        self.closed = False
        self.idle_since = 0.0
        self._reset()

    def _reset(self) -> None:
        self.status = 0
        self.body = bytearray()
        self.read = 0
        self.answered = False  # a byte of the answer to the current request came
        self.reusable = False

    # -- asyncio.Protocol -------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's are not asyncio.Transport subclasses
        self.loop = asyncio.get_running_loop()

    def data_received(self, data: bytes) -> None:
        if self.callback is None:  # nothing asked: a server talking out of turn is not reused
            self._close()
            return
        self.answered = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as e:
            self._fail(HTTPError(f"not an HTTP response: {e}"))

    def eof_received(self) -> bool:
        return False  # close our side too; connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.callback is None:
            return
        if self.status >= 200:  # a body that runs until the close, or one cut short: the status stands
            self._finish(False)
        elif not self.answered:
            self._deliver(_Stale("the connection was closed before an answer"))
        else:
            self._deliver(HTTPError(f"the connection was closed mid-answer{f': {exc}' if exc else ''}"))

    # -- httptools callbacks ------------------------------------------------------------------------

    def on_headers_complete(self) -> None:
        self.status = self.parser.get_status_code()

    def on_body(self, body: bytes) -> None:
        if self.callback is None:
            return
        room = self.keep - len(self.body)
        if room > 0:
            self.body += body[:room]
        self.read += len(body)
        if self.read > MAX_READ:
            self._finish(False)

    def on_message_complete(self) -> None:
        if self.callback is None:
            return
        if 100 <= self.status < 200:  # an interim answer (100 Continue, 103 Early Hints): the real one follows
            self.status = 0
            return
        self._finish(self.parser.should_keep_alive())

    # -- ours -----------------------------------------------------------------------------------------

    def request(self, data: bytes, deadline: float, callback: Callback) -> None:
        """Send ``data``; ``callback`` gets the answer, or TimeoutError at ``deadline`` (loop time).

        A timer on the loop, not ``asyncio.timeout``, and a callback, not a future awaited by a
        task: this runs once per POST, at thousands a second.
        """
        assert self.transport is not None and self.callback is None
        self._reset()
        self.callback = callback
        self.timer = self.loop.call_at(deadline, self._fail, TimeoutError())
        self.transport.write(data)

    def _deliver(self, result: Result) -> None:
        """Hand the result over, once: later news of this request (a close after a timeout) is dropped."""
        cb, self.callback = self.callback, None
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if cb is not None:
            self.loop.call_soon(cb, result)

    def _finish(self, reusable: bool) -> None:
        self.reusable = reusable
        if self.callback is not None:
            self._deliver(Response(self.status, bytes(self.body)))
        if not reusable:
            self._close()

    def _fail(self, e: BaseException) -> None:
        self._deliver(e)
        self._close()

    def _close(self) -> None:
        self.reusable = False
        if self.transport is not None and not self.closed:
            self.closed = True
            self.transport.close()

    def usable(self, now: float) -> bool:
        return not self.closed and self.callback is None and now - self.idle_since < IDLE


class Client:
    """POSTs with keep-alive pools per origin. Use as ``async with Client(…) as http``.

    ``post`` awaits an answer; ``send`` is the same POST with a callback, for callers that make
    thousands a second (the dispatcher) and need no task or future per POST.
    """

    def __init__(self, timeout: float, allow_private: bool, *, keep: int = 1024,
                 ssl_context: ssl.SSLContext | None = None) -> None:
        self.timeout = timeout
        self.allow_private = allow_private
        self.keep = keep
        self._ssl = ssl_context
        self._idle: dict[tuple[str, str, int], deque[_Connection]] = {}
        self._open: set[_Connection] = set()
        self._connecting: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        for t in list(self._connecting):
            t.cancel()
        for c in list(self._open):
            c._close()
        self._open.clear()
        self._idle.clear()

    async def post(self, url: str, headers: bytes, body: bytes) -> Response:
        """POST ``body`` with ``headers`` (CRLF-terminated ``name: value`` lines, content-length added here).

        Raises ``guard.UnsafeURL``, ``TimeoutError`` (past ``timeout``, connecting included),
        ``OSError`` (connecting, TLS) or ``HTTPError``.
        """
        fut: asyncio.Future[Response] = asyncio.get_running_loop().create_future()

        def done(result: Result) -> None:
            if fut.done():
                return
            if isinstance(result, BaseException):
                fut.set_exception(result)
            else:
                fut.set_result(result)

        self.send(url, headers, body, done)
        return await fut

    def send(self, url: str, headers: bytes, body: bytes, callback: Callback) -> None:
        """``post`` by callback: ``callback`` is called once, never before this returns, with the
        ``Response`` or what ``post`` would raise (``guard.UnsafeURL`` included)."""
        loop = asyncio.get_running_loop()
        try:
            o = origin(url)
        except guard.UnsafeURL as e:
            loop.call_soon(callback, e)
            return
        data = b"".join((o.request_line, headers, b"content-length: %d\r\n\r\n" % len(body), body))
        deadline = loop.time() + self.timeout
        conn = self._take(o.key)
        if conn is not None:
            self._send(o, conn, data, deadline, callback, True)
        else:
            self._connect_then_send(o, data, deadline, callback)

    def _send(self, o: Origin, conn: _Connection, data: bytes, deadline: float, callback: Callback,
              stale_retry: bool) -> None:
        def done(result: Result) -> None:
            if conn.reusable and not conn.closed and conn.callback is None:
                conn.idle_since = time.monotonic()
                pool = self._idle.setdefault(o.key, deque())
                if len(pool) < MAX_IDLE:
                    pool.append(conn)
                else:
                    conn._close()
            else:  # an error, a timeout (the answer may still come: never reuse it) or a close
                conn._close()
            if conn.closed:
                self._open.discard(conn)
            if isinstance(result, _Stale):
                if stale_retry:  # the server had closed it while idle: once more on a new connection
                    self._connect_then_send(o, data, deadline, callback)
                else:
                    callback(HTTPError(str(result)))
                return
            callback(result)

        conn.request(data, deadline, done)

    def _connect_then_send(self, o: Origin, data: bytes, deadline: float, callback: Callback) -> None:
        loop = asyncio.get_running_loop()

        async def connect() -> None:
            try:
                conn = await asyncio.wait_for(self._connect(o), max(deadline - loop.time(), 0))
            except asyncio.CancelledError:
                callback(HTTPError("the client was closed"))
                raise
            except Exception as e:
                callback(e)
                return
            self._send(o, conn, data, deadline, callback, False)

        task = loop.create_task(connect())
        self._connecting.add(task)
        task.add_done_callback(self._connecting.discard)

    def _take(self, key: tuple[str, str, int]) -> _Connection | None:
        pool = self._idle.get(key)
        now = time.monotonic()
        while pool:
            conn = pool.pop()  # the most recently used: the least likely to have been closed
            if conn.usable(now):
                return conn
            conn._close()
            self._open.discard(conn)
        return None

    async def _connect(self, o: Origin) -> _Connection:
        ip = await guard.resolve(o.target, self.allow_private)
        loop = asyncio.get_running_loop()
        tls = None
        if o.target.scheme == "https":
            tls = self._ssl = self._ssl or ssl.create_default_context()
        _, conn = await loop.create_connection(lambda: _Connection(self.keep), ip, o.target.port, ssl=tls,
                                               server_hostname=o.target.host if tls else None)
        self._open.add(conn)
        return conn
