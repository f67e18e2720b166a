"""One signed POST and what came of it, as an ``Attempt``; never raises for the network.

The HTTP work (keep-alive pools, the SSRF guard at connect, no redirects, a capped read) is
``webhooks/http.py``'s; this adds the Standard Webhooks headers and turns every outcome into the
attempt row the dispatcher records.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from ..store.webhooks import RESPONSE_KEPT, Attempt
from . import guard, http, payload, signing

_FIXED = b"content-type: application/json\r\nuser-agent: mailtrack-webhooks/1\r\n"


def client(timeout: float, allow_private: bool) -> http.Client:
    """The shared client: keep-alive pools, the guarded connect, answers kept up to RESPONSE_KEPT bytes."""
    return http.Client(timeout, allow_private, keep=RESPONSE_KEPT)


async def post(client: http.Client, endpoint: dict[str, Any], secrets: list[str], msg_id: str, body: Any,
               delivery_ids: list[int]) -> Attempt:
    """POST one event (or a batch) to the endpoint and say what happened.

    ``body`` is the JSON already encoded (bytes), or what to encode.
    """
    fut: asyncio.Future[Attempt] = asyncio.get_running_loop().create_future()
    start(client, endpoint, secrets, msg_id, body, delivery_ids, fut.set_result)
    return await fut


def start(client: http.Client, endpoint: dict[str, Any], secrets: list[str], msg_id: str, body: Any,
          delivery_ids: list[int], on_attempt: Callable[[Attempt], None]) -> None:
    """``post`` by callback: ``on_attempt`` gets the attempt once the POST is over (never before this
    returns). The dispatcher's way: no task or future per POST."""
    started = time.time()
    t0 = time.perf_counter()
    data = body if isinstance(body, bytes) else payload.encode(body)

    def done(result: http.Result) -> None:
        code = response = error = None
        if isinstance(result, http.Response):
            code, response = result.status, result.body.decode("utf-8", "replace")
        elif isinstance(result, guard.UnsafeURL):
            error = f"refused: {result}"
        elif isinstance(result, TimeoutError):
            error = "timed out"
        else:
            error = f"{type(result).__name__}: {result}"[:500]
        on_attempt(Attempt(endpoint["id"], delivery_ids, started, code, int((time.perf_counter() - t0) * 1000),
                           response, error))

    client.send(endpoint["url"], _FIXED + signing.header_lines(secrets, msg_id, int(started), data), data, done)
