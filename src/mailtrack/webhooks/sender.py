"""One signed POST and what came of it, as an ``Attempt``; never raises for the network.

The HTTP work (keep-alive pools, the SSRF guard at connect, no redirects, a capped read) is
``webhooks/http.py``'s; this adds the Standard Webhooks headers and turns every outcome into the
attempt row the dispatcher records.
"""

from __future__ import annotations

import time
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
    started = time.time()
    t0 = time.perf_counter()
    data = body if isinstance(body, bytes) else payload.encode(body)

    def done(code: int | None, response: str | None, error: str | None) -> Attempt:
        return Attempt(endpoint["id"], delivery_ids, started, code, int((time.perf_counter() - t0) * 1000),
                       response, error)

    try:
        hdrs = signing.header_lines(secrets, msg_id, int(started), data)
        resp = await client.post(endpoint["url"], _FIXED + hdrs, data)
    except guard.UnsafeURL as e:
        return done(None, None, f"refused: {e}")
    except TimeoutError:
        return done(None, None, "timed out")
    except (OSError, http.HTTPError) as e:
        return done(None, None, f"{type(e).__name__}: {e}"[:500])
    return done(resp.status, resp.body.decode("utf-8", "replace"), None)
