"""Pixel and click answered inside uvicorn's HTTP protocol, without an ASGI cycle.

Through ASGI every request costs a scope, a task, two ``send`` awaits and the middleware chain,
several times the work of the answer itself (a verified token, a queued hit, 43 bytes of GIF).
:func:`protocol_class` makes a subclass of uvicorn's httptools protocol that recognises
``GET``/``HEAD`` of ``/o/…`` and ``/c/…`` once the headers are parsed, asks the same
:class:`TrackingFastPath` for the answer and writes it to the socket at once. Everything else —
other paths, a click whose old-form token needs the store, a pipelined request behind one still
being answered, a paused transport, a percent-encoded path, a forwarded client address that cannot
be resolved here — goes on through the normal ASGI path, which gives the same answers (more
slowly). So correctness never depends on this class; it only takes the common case off the slow
path.

uvicorn's ``X-Forwarded-For`` handling (``ProxyHeadersMiddleware``, trusted proxies only) is
applied here too, so the recorded client address is the same on both paths.
"""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from .fastpath import Response, TrackingFastPath

log = logging.getLogger("mailtrack.tracking")

_PREFIXES = (b"/o/", b"/c/")
_METHODS = {b"GET": "GET", b"HEAD": "HEAD"}
_STATUS_LINES = {s.value: f"HTTP/1.1 {s.value} {s.phrase}\r\n".encode() for s in HTTPStatus}


class _Answered:
    """Stands in for uvicorn's request cycle once a request has been answered here."""

    response_complete = True
    disconnected = False
    keep_alive = False
    more_body = False

    class message_event:  # the attribute uvicorn calls ``.set()`` on
        @staticmethod
        def set() -> None:
            return None


ANSWERED: Any = _Answered()


def _serialise(answer: Response, defaults: list[tuple[bytes, bytes]], keep_alive: bool) -> bytes:
    status, headers, body = answer
    parts = [_STATUS_LINES.get(status) or f"HTTP/1.1 {status} \r\n".encode()]
    for name, value in defaults:
        parts += (name, b": ", value, b"\r\n")
    for name, value in headers:
        parts += (name, b": ", value, b"\r\n")
    if not keep_alive:
        parts.append(b"connection: close\r\n")
    parts += (b"\r\n", body)
    return b"".join(parts)


def protocol_class(fast: TrackingFastPath | None) -> type[HttpToolsProtocol]:
    """uvicorn's ``http=`` protocol with the tracking short cut (none when ``fast`` is None)."""

    class TrackingHttpProtocol(HttpToolsProtocol):
        answered = 0  # requests answered here (the rest went through ASGI); tests read it

        def on_headers_complete(self) -> None:
            url: bytes = self.url
            try:
                if url[:3] in _PREFIXES and self._answer_here(url):
                    return
            except Exception:  # never worse than the normal path
                log.exception("tracking short cut failed; answering through ASGI")
            super().on_headers_complete()

        def _answer_here(self, url: bytes) -> bool:
            method = _METHODS.get(self.parser.get_method())
            if (method is None or fast is None or self.pipeline or self.flow.write_paused
                    or self.parser.get_http_version() != "1.1"  # 1.0 and 0.9 are rare: uvicorn words those
                    or (self.cycle is not None and not self.cycle.response_complete)
                    or self.parser.should_upgrade()):
                return False
            path_b = url.partition(b"?")[0]
            if b"%" in path_b or not path_b.isascii():
                return False
            known, ip = self._client_host()
            if not known:
                return False
            path = path_b.decode("ascii")
            if path[1] == "o":
                answer: Response | None = fast.pixel(method, path, self.headers, ip)
            else:
                answer = fast.click(method, path, self.headers, ip)
            if answer is None:
                return False
            # answered (and the hit queued): from here on it never goes to ASGI too, or it would count twice
            self.cycle = ANSWERED
            TrackingHttpProtocol.answered += 1
            try:
                keep_alive = self.parser.should_keep_alive()
                self.transport.write(_serialise(answer, self.server_state.default_headers, keep_alive))
                if keep_alive:
                    self.on_response_complete()
                    return True
            except Exception:
                log.exception("tracking answer not written; closing the connection")
            self.server_state.total_requests += 1
            self.transport.close()
            return True

        def _client_host(self) -> tuple[bool, str | None]:
            """(known, the client's address as uvicorn's proxy-header rules give it); not known: ask them."""
            host = self.client[0] if self.client else None
            proxy = self.app if isinstance(self.app, ProxyHeadersMiddleware) else None
            if proxy is None or host not in proxy.trusted_hosts:
                return True, host
            forwarded = [v for n, v in self.headers if n == b"x-forwarded-for"]
            if not forwarded:
                return True, host
            resolve = getattr(proxy.trusted_hosts, "get_trusted_client_address", None)
            if resolve is None:
                return False, None
            found = resolve(b", ".join(forwarded).decode("latin1"))[0]
            return True, found or host

    return TrackingHttpProtocol

