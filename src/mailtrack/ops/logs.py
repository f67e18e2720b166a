"""Logs: a request id for every HTTP request, and ``MAILTRACK_LOG_FORMAT=json`` (one object per line).

The request id comes from a sane ``X-Request-ID`` header or is made up, is echoed in the response
and is on every log record written while the request runs, with the email or recipient id that
the path names. Pixel and click hits never reach this middleware (the tracking fast path answers
them first), so they cost no log line.
"""

from __future__ import annotations

import json
import logging
import re
import secrets
import time
from contextvars import ContextVar
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

request_id: ContextVar[str | None] = ContextVar("mailtrack_request_id", default=None)
email_id: ContextVar[str | None] = ContextVar("mailtrack_email_id", default=None)
recipient_id: ContextVar[str | None] = ContextVar("mailtrack_recipient_id", default=None)

_GOOD_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")
_EMAIL_PATH = re.compile(r"/emails/([0-9a-f]{8,32})(?:/|$)")
_RECIPIENT_PATH = re.compile(r"/recipients/([0-9a-f]{8,32})(?:/|$)")
access = logging.getLogger("mailtrack.access")
FIELDS = ("request_id", "email_id", "recipient_id")


class ContextFilter(logging.Filter):
    """Puts the request's ids on each record (a record's own ``extra=`` ids win)."""

    def filter(self, record: logging.LogRecord) -> bool:
        for name, var in (("request_id", request_id), ("email_id", email_id), ("recipient_id", recipient_id)):
            if getattr(record, name, None) is None:
                setattr(record, name, var.get())
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(), "logger": record.name, "message": record.getMessage(),
        }
        for name in FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                out[name] = value
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False, default=str)


def configure(log_format: str) -> None:
    """Apply the format to the root handlers (set up by ``setup_logging``) and add the ids to every record."""
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, ContextFilter) for f in handler.filters):
            handler.addFilter(ContextFilter())
        if log_format == "json":
            handler.setFormatter(JsonFormatter())


class RequestIds:
    """ASGI middleware: a request id per request (echoed as ``X-Request-ID``), and one access line."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"x-request-id"), "")
        rid = given if _GOOD_ID.fullmatch(given) else secrets.token_hex(8)
        path: str = scope.get("path", "")
        m_e, m_r = _EMAIL_PATH.search(path), _RECIPIENT_PATH.search(path)
        tokens = (request_id.set(rid), email_id.set(m_e.group(1) if m_e else None),
                  recipient_id.set(m_r.group(1) if m_r else None))
        status = 500
        t0 = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", rid.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            access.info("%s %s %d %.1fms", scope.get("method", ""), path, status, 1000 * (time.perf_counter() - t0))
            request_id.reset(tokens[0])
            email_id.reset(tokens[1])
            recipient_id.reset(tokens[2])
