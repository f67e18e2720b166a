"""An aiosmtpd server on port 0 that keeps every whole message (envelope and raw bytes)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from aiosmtpd.smtp import SMTP, Envelope, Session


@dataclass
class Captured:
    mail_from: str
    rcpt_tos: list[str]
    data: bytes


@dataclass
class Capture:
    port: int = 0
    messages: list[Captured] = field(default_factory=list)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.messages.append(Captured(envelope.mail_from or "", list(envelope.rcpt_tos),
                                      envelope.original_content or b""))
        return "250 2.0.0 Ok: captured"


@asynccontextmanager
async def capture_server() -> AsyncIterator[Capture]:
    handler = Capture()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: SMTP(handler, hostname="capture.test"), "127.0.0.1", 0)
    handler.port = int(server.sockets[0].getsockname()[1])
    try:
        yield handler
    finally:
        server.close()
        await server.wait_closed()
