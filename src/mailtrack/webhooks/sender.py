"""One signed POST: SSRF re-check, pinned address, no redirects, a capped read of the answer."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx

from ..store.webhooks import RESPONSE_KEPT, Attempt
from . import guard, signing


def client(timeout: float, connections: int = 200) -> httpx.AsyncClient:
    """The shared client: keep-alive pools per address, never following a redirect, no proxies from env."""
    return httpx.AsyncClient(
        follow_redirects=False, trust_env=False, timeout=httpx.Timeout(timeout),
        limits=httpx.Limits(max_connections=connections, max_keepalive_connections=connections),
    )


def _pinned(target: guard.Target, ip: str, url: str) -> tuple[str, dict[str, str], dict[str, Any]]:
    """The URL with the checked address in place of the host, the Host header and the TLS server name."""
    parts = httpx.URL(url)
    host = f"[{ip}]" if ":" in ip else ip
    default = 443 if target.scheme == "https" else 80
    hosthdr = target.host if target.port == default else f"{target.host}:{target.port}"
    ext: dict[str, Any] = {"sni_hostname": target.host} if target.scheme == "https" else {}
    return str(parts.copy_with(host=host.strip("[]"))), {"host": hosthdr}, ext


async def post(http: httpx.AsyncClient, endpoint: dict[str, Any], secrets: list[str], msg_id: str,
               body: Any, delivery_ids: list[int], allow_private: bool) -> Attempt:
    """POST one event (or a batch) to the endpoint and say what happened; never raises for the network."""
    started = time.time()
    t0 = time.perf_counter()
    text = json.dumps(body, separators=(",", ":"), ensure_ascii=False)

    def done(code: int | None, response: str | None, error: str | None) -> Attempt:
        return Attempt(endpoint["id"], delivery_ids, started, code, int((time.perf_counter() - t0) * 1000),
                       response, error)

    try:
        target = guard.parse(endpoint["url"])
        ip = await guard.resolve(target, allow_private)
    except guard.UnsafeURL as e:
        return done(None, None, f"refused: {e}")
    url, host, ext = _pinned(target, ip, endpoint["url"])
    hdrs = {**host, "content-type": "application/json", "user-agent": "mailtrack-webhooks/1",
            **signing.headers(secrets, msg_id, int(started), text)}
    try:
        req = http.build_request("POST", url, content=text.encode(), headers=hdrs, extensions=ext)
        resp = await http.send(req, stream=True)
        try:
            got = b""
            async for chunk in resp.aiter_raw():
                got += chunk
                if len(got) >= RESPONSE_KEPT:
                    break
        finally:
            await resp.aclose()
    except httpx.TimeoutException:
        return done(None, None, "timed out")
    except httpx.HTTPError as e:
        return done(None, None, f"{type(e).__name__}: {e}"[:500])
    return done(resp.status_code, got[:RESPONSE_KEPT].decode("utf-8", "replace"), None)
