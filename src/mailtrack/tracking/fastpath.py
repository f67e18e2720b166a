"""``GET /o/TOKEN.gif`` and ``GET /c/TOKEN`` as a bare ASGI app in front of FastAPI routing.

The pixel never fails for the reader: a bad token, a slow or broken store, any error — the GIF is
served (errors logged). Neither waits for a commit: the hit is handed to the recorder and written
afterwards. The click redirects to the URL carried in its token, which is MAC'd together with the
recipient and link index, so the redirect needs no database read and still goes only where
mailtrack sent it; nothing else in the request can choose the target, and a bad token is a 404
without ``Location``. Tokens of mail sent before URLs were carried (``/c/RID-IDX-MAC``) are looked
up in the store. ``HEAD`` and prefetches (``Purpose``/``Sec-Purpose``/``X-Purpose``/``X-Moz``
saying prefetch or preview) are answered but not counted. Both send ``Cache-Control: no-store``
and never set cookies.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

from starlette.types import ASGIApp, Receive, Scope, Send

from .. import tokens
from ..domain.status import EventType
from ..store import hits as store_hits
from ..store.db import Store
from .classify import BURST_WINDOW, ClickContext, classify_click, classify_open
from .recorder import Recorder

log = logging.getLogger("mailtrack.tracking")

GIF = (b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\xff\xff\xff!\xf9\x04\x01\x00\x00\x00\x00"
       b",\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;")
_NO_STORE = (b"cache-control", b"no-store, no-cache, must-revalidate, max-age=0")
_PIXEL_HEADERS = [
    (b"content-type", b"image/gif"), (b"content-length", str(len(GIF)).encode()), _NO_STORE,
    (b"pragma", b"no-cache"), (b"expires", b"0"), (b"x-content-type-options", b"nosniff"),
]
_NOT_FOUND = b"no such link\n"
_PREFETCH_HEADERS = (b"purpose", b"sec-purpose", b"x-purpose", b"x-moz")
_ALLOWED = (b"allow", b"GET, HEAD")
_URL_SAFE = "!#$%&'()*+,/:;=?@[]~-._"
_MEMO = 4096  # entries per memo (cleared when full: the hot ones come straight back)


def location(url: str) -> str:
    """A Location header value: IDNA host, percent-encoded non-ASCII, no control characters."""
    if url.isascii() and url.isprintable() and " " not in url:
        return url
    parts = urlsplit(url)
    netloc = parts.netloc
    host = parts.hostname or ""
    if host and not host.isascii():
        try:
            netloc = netloc.replace(host, host.encode("idna").decode("ascii")) if host in netloc else netloc
        except UnicodeError:
            pass
    rest = urlunsplit(("", "", parts.path, parts.query, parts.fragment))
    return f"{parts.scheme}://{quote(netloc, safe=_URL_SAFE)}{quote(rest, safe=_URL_SAFE)}"


def _headers(headers: Iterable[tuple[bytes, bytes]]) -> tuple[str | None, bool]:
    """(User-Agent, is a prefetch) from the raw header list."""
    ua = None
    prefetch = False
    for name, value in headers:
        if name == b"user-agent":
            ua = value.decode("latin-1")
        elif name in _PREFETCH_HEADERS:
            v = value.lower()
            prefetch = prefetch or b"prefetch" in v or b"preview" in v
    return ua, prefetch


def _client_ip(scope: Scope) -> str | None:
    client = scope.get("client")
    return client[0] if client else None


Response = tuple[int, list[tuple[bytes, bytes]], bytes]


class TrackingFastPath:
    """Handles /o/ and /c/ itself; everything else goes on to ``app``."""

    def __init__(self, app: ASGIApp, *, store: Store, secret: str, recorder: Recorder | None = None) -> None:
        self.app = app
        self.store = store
        self.secret = secret
        self._recorder = recorder
        self._recent: dict[str, list[tuple[float, int]]] = {}
        self._recent_pruned = 0.0
        # pixel loads repeat tokens and (UA, IP) pairs: both answers are pure functions of them
        self._verified: dict[str, str] = {}
        self._open_cls: dict[tuple[str | None, str | None], str] = {}

    @property
    def recorder(self) -> Recorder:
        if self._recorder is None:  # lazily: serve.py runs the app with lifespan="off"
            self._recorder = Recorder(self.store)
        return self._recorder

    @property
    def started_recorder(self) -> Recorder | None:
        """The recorder if a hit has made one (tests wait on it with ``flush``)."""
        return self._recorder

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path: str = scope["path"]
            if path.startswith("/o/"):
                await _send(send, self.pixel(scope["method"], path, scope["headers"], _client_ip(scope)))
                return
            if path.startswith("/c/"):
                await self._click_safely(scope, send, path)
                return
        await self.app(scope, receive, send)

    # -- open pixel ---------------------------------------------------------------------------

    def pixel(self, method: str, path: str, headers: Iterable[tuple[bytes, bytes]], ip: str | None) -> Response:
        """The answer to ``/o/TOKEN.gif``: always the GIF (the hit queued first), or a 405."""
        if method not in ("GET", "HEAD"):
            return _plain(405, b"method not allowed\n", [_ALLOWED])
        try:
            if method == "GET":
                self._count_open(path, headers, ip)
        except Exception:
            log.exception("pixel hit not recorded")
        return 200, _PIXEL_HEADERS, GIF if method == "GET" else b""

    def _count_open(self, path: str, headers: Iterable[tuple[bytes, bytes]], ip: str | None) -> None:
        token = path[3:]
        if token.endswith(".gif"):
            token = token[:-4]
        rid = self._verified.get(token)
        if rid is None:
            rid = tokens.verify(self.secret, "open", token)
            if rid is None:
                return
            if len(self._verified) >= _MEMO:
                self._verified.clear()
            self._verified[token] = rid
        ua, prefetch = _headers(headers)
        if prefetch:
            return
        cls = self._open_cls.get((ua, ip))
        if cls is None:
            if len(self._open_cls) >= _MEMO:
                self._open_cls.clear()
            cls = self._open_cls[(ua, ip)] = classify_open(ua, ip)
        self.recorder.submit(store_hits.Hit(rid, EventType.OPENED, time.time(), ip, ua, cls))

    # -- click redirect -----------------------------------------------------------------------

    async def _click_safely(self, scope: Scope, send: Send, path: str) -> None:
        try:
            answer = self.click(scope["method"], path, scope["headers"], _client_ip(scope))
            if answer is None:  # a token of the old form: its URL is in the store
                answer = await self._legacy_click(scope, path)
            await _send(send, answer)
        except Exception:
            log.exception("click failed")
            try:
                await _send(send, _plain(503, b"temporarily unavailable, please try again\n",
                                         [(b"retry-after", b"5")]))
            except Exception as e:  # the response had started, or the client went away
                log.debug("click error response not delivered: %s", e)

    def click(self, method: str, path: str, headers: Iterable[tuple[bytes, bytes]], ip: str | None) -> Response | None:
        """The answer to ``/c/TOKEN`` from the token alone, or None when it needs the store (old tokens)."""
        if method not in ("GET", "HEAD"):
            return _plain(405, b"method not allowed\n", [_ALLOWED])
        carried = tokens.parse_click_url(self.secret, path[3:])
        if carried is None:
            return None
        rid, idx, url = carried
        return self._redirect(method, headers, ip, rid, idx, url)

    async def _legacy_click(self, scope: Scope, path: str) -> Response:
        legacy = await self._legacy_target(path[3:])
        if legacy is None:
            return _plain(404, _NOT_FOUND)
        return self._redirect(scope["method"], scope["headers"], _client_ip(scope), *legacy)

    def _redirect(self, method: str, headers: Iterable[tuple[bytes, bytes]], ip: str | None,
                  rid: str, idx: int, url: str) -> Response:
        at = time.time()
        answer: Response = (302, [(b"location", location(url).encode("ascii")), _NO_STORE,
                                  (b"referrer-policy", b"no-referrer"), (b"content-length", b"0")], b"")
        ua, prefetch = _headers(headers)
        if method == "GET" and not prefetch:  # last: nothing after the hit is queued can fail
            # provisional: the writer re-applies the rules that need the recipient's history
            ctx = ClickContext(None, 0, tuple(self._remember(rid, at, idx)))
            self.recorder.submit(store_hits.Hit(rid, EventType.CLICKED, at, ip, ua,
                                                classify_click(ua, ip, at, idx, ctx), idx))
        return answer

    async def _legacy_target(self, token: str) -> tuple[str, int, str] | None:
        """The stored URL of a ``RID-IDX-MAC`` token (mail sent before tokens carried URLs)."""
        parsed = tokens.parse_click(self.secret, token)
        if parsed is None:
            return None
        rid, idx = parsed
        loop = asyncio.get_running_loop()
        url = await asyncio.wait_for(loop.run_in_executor(None, self._lookup, rid, idx), timeout=5.0)
        return None if url is None else (rid, idx, url)

    def _lookup(self, rid: str, idx: int) -> str | None:
        with self.store.read() as conn:
            return store_hits.link_url(conn, rid, idx)

    def _remember(self, rid: str, at: float, idx: int) -> list[tuple[float, int]]:
        """This process's recent clicks by the recipient (ones not yet committed included), pruned."""
        if at - self._recent_pruned > BURST_WINDOW:
            self._recent = {r: v for r, v in self._recent.items() if v and v[-1][0] >= at - BURST_WINDOW}
            self._recent_pruned = at
        mine = [c for c in self._recent.get(rid, []) if c[0] >= at - BURST_WINDOW]
        self._recent[rid] = [*mine, (at, idx)]
        return mine


def _plain(status: int, body: bytes, extra: list[tuple[bytes, bytes]] | None = None) -> Response:
    headers: list[Any] = [(b"content-type", b"text/plain; charset=utf-8"),
                          (b"content-length", str(len(body)).encode()), _NO_STORE, *(extra or [])]
    return status, headers, body


async def _send(send: Send, answer: Response) -> None:
    status, headers, body = answer
    try:
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})
    except Exception as e:  # the client went away (how depends on the server)
        log.debug("tracking response not delivered: %s", e)
