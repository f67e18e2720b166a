"""The database cannot take the request right now (disk full, read-only, unreachable): 503, not 500.

Nothing of the refused request was stored (its transaction rolled back), what was acknowledged
before stays, and the same request succeeds once the condition is gone, so the caller is told to
retry later (``Retry-After``).
"""

from __future__ import annotations

import logging

from fastapi import Request
from fastapi.responses import JSONResponse
from sqlalchemy.exc import InterfaceError, OperationalError

log = logging.getLogger("mailtrack.api")

RETRY_AFTER = 30
UNAVAILABLE = (OperationalError, InterfaceError)
_CAUSES = (
    (("disk is full", "disk full", "no space left", "diskfull", "could not extend file"),
     "the database's disk is full"),
    (("readonly", "read-only", "read only"), "the database is read-only"),
    (("locked", "busy"), "the database is busy"),
)


def describe(exc: Exception) -> str:
    text = str(getattr(exc, "orig", exc)).lower()
    for needles, what in _CAUSES:
        if any(n in text for n in needles):
            return what
    return "the database is unavailable"


async def database_unavailable(_req: Request, exc: Exception) -> JSONResponse:
    what = describe(exc)
    log.error("request refused with 503: %s (%s)", what, getattr(exc, "orig", exc))
    body = {"error": {"message": f"{what}; nothing of this request was stored. Retry in {RETRY_AFTER} seconds "
                                 "(requests accepted before are safe).", "field": None}}
    return JSONResponse(body, status_code=503, headers={"Retry-After": str(RETRY_AFTER)})
