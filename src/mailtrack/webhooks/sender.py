"""One signed POST: SSRF check at connect time, no redirects, a capped read of the answer.

aiohttp, because a webhook POST must cost little next to what the receiver spends on it. Every
new connection resolves through ``GuardedResolver``, which refuses private addresses, so the
address connected to is the one that was checked (no DNS rebinding between check and connect);
IP-literal hosts skip resolvers, so ``post`` checks those itself.
"""

from __future__ import annotations

import ipaddress
import socket
import time
from functools import lru_cache
from typing import Any

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult

from ..store.webhooks import RESPONSE_KEPT, Attempt
from . import guard, payload, signing


class GuardedResolver(AbstractResolver):
    """The default resolver, refusing names that resolve to loopback, private … addresses."""

    def __init__(self, allow_private: bool) -> None:
        self.allow_private = allow_private
        self._inner = aiohttp.ThreadedResolver()

    async def resolve(self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET,
                      ) -> list[ResolveResult]:
        found = await self._inner.resolve(host, port, family)
        if not self.allow_private:
            for r in found:
                why = guard.refused(r["host"])
                if why is not None:
                    raise guard.UnsafeURL(f"{host} resolves to a {why} address ({r['host']})")
        return found

    async def close(self) -> None:
        await self._inner.close()


def client(timeout: float, allow_private: bool, connections: int = 200) -> aiohttp.ClientSession:
    """The shared session: keep-alive pools, the guarded resolver, no cookies, no proxies from env."""
    connector = aiohttp.TCPConnector(limit=connections, resolver=GuardedResolver(allow_private), ttl_dns_cache=10)
    return aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=timeout),
                                 cookie_jar=aiohttp.DummyCookieJar(), auto_decompress=False)


def _literal_refused(host: str) -> str | None:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return None
    return guard.refused(host)


@lru_cache(maxsize=1024)
def _url_refused(url: str, allow_private: bool) -> str | None:
    """Why this URL may not be posted to before any DNS (its form, an IP-literal host), or None.

    A function of the URL alone, so it is worked out once per URL, not once per POST.
    """
    try:
        target = guard.parse(url)
    except guard.UnsafeURL as e:
        return str(e)
    why = None if allow_private else _literal_refused(target.host)
    return None if why is None else f"{target.host} is a {why} address"


async def post(http: aiohttp.ClientSession, endpoint: dict[str, Any], secrets: list[str], msg_id: str,
               body: Any, delivery_ids: list[int], allow_private: bool) -> Attempt:
    """POST one event (or a batch) to the endpoint and say what happened; never raises for the network.

    ``body`` is the JSON already encoded (bytes), or what to encode.
    """
    started = time.time()
    t0 = time.perf_counter()
    data = body if isinstance(body, bytes) else payload.encode(body)

    def done(code: int | None, response: str | None, error: str | None) -> Attempt:
        return Attempt(endpoint["id"], delivery_ids, started, code, int((time.perf_counter() - t0) * 1000),
                       response, error)

    try:
        why = _url_refused(endpoint["url"], allow_private)
        if why is not None:
            raise guard.UnsafeURL(why)
        hdrs = {"content-type": "application/json", "user-agent": "mailtrack-webhooks/1",
                **signing.headers(secrets, msg_id, int(started), data.decode())}
        async with http.post(endpoint["url"], data=data, headers=hdrs, allow_redirects=False) as resp:
            got = await resp.content.read(RESPONSE_KEPT)
            code = resp.status
    except guard.UnsafeURL as e:
        return done(None, None, f"refused: {e}")
    except TimeoutError:
        return done(None, None, "timed out")
    except aiohttp.ClientError as e:
        cause = e.__cause__ if isinstance(e.__cause__, guard.UnsafeURL) else None
        return done(None, None, f"refused: {cause}" if cause else f"{type(e).__name__}: {e}"[:500])
    return done(code, got.decode("utf-8", "replace"), None)
