"""The inbound SMTP server: aiosmtpd in the running loop, storage before 250, processing after it.

A message is answered 250 only once its raw bytes are committed (state "stored"). A single
background consumer then parses and applies it off the event loop. On start, and every sweep
interval, messages left "stored" (a crash, a database outage) are queued again, and messages older
than the retention period are purged.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any, AnyStr

from aiosmtpd.smtp import SMTP
from sqlalchemy.exc import SQLAlchemyError

from ..config import Config
from ..domains.inbound import ReturnPathHosts, mailto_unsubscribe
from ..store import inbound
from ..store.db import Store
from ..store.ids import now
from . import handler as replies
from .apply import process
from .handler import InboundHandler
from .limits import Limits, check

log = logging.getLogger("mailtrack.inbound")

IDENT = "ESMTP mailtrack inbound"
_LIMIT_REPLIES = {"header": replies.HEADER_TOO_BIG, "depth": replies.TOO_COMPLEX, "parts": replies.TOO_COMPLEX}
# A message still "stored" this long after arrival was missed (crash, outage): the sweep retries it.
_STALE_AFTER = 30.0


class _InboundSMTP(SMTP):
    """aiosmtpd's SMTP with connection caps (total, per client address), a whole-session deadline,
    a deadline for progress that keep-alive commands cannot push back, and enhanced size codes."""

    def __init__(self, smtp_handler: InboundHandler, owner: InboundServer, **kwargs: Any) -> None:
        super().__init__(smtp_handler, **kwargs)
        self._owner = owner
        self._deadline: asyncio.TimerHandle | None = None
        self._stall: asyncio.TimerHandle | None = None
        self._ip: str | None = None  # set once the connection is counted

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        first = self.transport is None  # connection_made runs again after STARTTLS
        super().connection_made(transport)
        if not first:
            return
        lim, conns, per_ip = self._owner.limits, self._owner.connections, self._owner.per_ip
        peer = transport.get_extra_info("peername")
        ip = str(peer[0]) if isinstance(peer, tuple) and peer else "?"
        if len(conns) >= lim.max_connections:
            self._refuse(replies.TOO_MANY_CONNECTIONS)
            return
        if per_ip.get(ip, 0) >= lim.max_per_ip:
            log.warning("inbound: refused a connection from %s: %d already open", ip, per_ip[ip])
            self._refuse(replies.TOO_MANY_FROM_YOU)
            return
        conns.add(self)
        per_ip[ip] = per_ip.get(ip, 0) + 1
        self._ip = ip
        self._deadline = self.loop.call_later(lim.max_session, self._refuse, replies.SESSION_TOO_LONG)
        self.progressed()

    def progressed(self) -> None:
        """A recipient or a message was accepted: the session may stay for another progress_timeout."""
        if self._stall is not None:
            self._stall.cancel()
        self._stall = self.loop.call_later(self._owner.limits.progress_timeout, self._refuse, replies.NO_PROGRESS)

    def _timeout_cb(self) -> None:
        # aiosmtpd closes a silent connection without a word; say why (RFC 5321 §4.2.2: 421)
        self._refuse(replies.IDLE_TIMEOUT)

    def _refuse(self, reply: str) -> None:
        if self.transport is not None and not self.transport.is_closing():
            if isinstance(self.transport, asyncio.WriteTransport):
                self.transport.write(reply.encode() + b"\r\n")
            self.transport.close()

    def connection_lost(self, error: Exception | None) -> None:
        self._owner.connections.discard(self)
        if self._ip is not None:
            left = self._owner.per_ip.get(self._ip, 1) - 1
            if left > 0:
                self._owner.per_ip[self._ip] = left
            else:
                self._owner.per_ip.pop(self._ip, None)
            self._ip = None
        for timer in (self._deadline, self._stall):
            if timer is not None:
                timer.cancel()
        super().connection_lost(error)

    async def push(self, status: AnyStr) -> None:
        # aiosmtpd's own size replies ("552 Error: ...") carry no enhanced status code
        if isinstance(status, str) and status.startswith("552 Error"):
            await super().push(replies.TOO_BIG)
            return
        await super().push(status)


class InboundServer:
    """Receives bounces, feedback reports and auto-replies for ``config.bounce_domain``."""

    def __init__(self, config: Config, store: Store, *, limits: Limits | None = None,
                 sweep_interval: float = 60.0) -> None:
        self.config = config
        self.store = store
        self.limits = limits or Limits.from_config(config)
        self.sweep_interval = sweep_interval
        self.host, self.port = config.inbound_smtp
        self.connections: set[_InboundSMTP] = set()
        self.per_ip: dict[str, int] = {}  # open connections per client address
        self._server: asyncio.Server | None = None
        self._queue: asyncio.Queue[int] = asyncio.Queue()
        self._queued: set[int] = set()
        self._tasks: list[asyncio.Task[None]] = []
        self._current: asyncio.Future[str | None] | None = None  # the message being applied

    async def start(self) -> None:
        """Listen (with port 0 the real port is read back into ``self.port``), then process what is pending."""
        if self._server is not None:
            raise RuntimeError("inbound server already started")
        loop = asyncio.get_running_loop()
        session_log = logging.getLogger("mail.log")
        if session_log.level == logging.NOTSET:
            # aiosmtpd logs every SMTP command at INFO: far too much next to our own log
            session_log.setLevel(logging.WARNING)
        smtp_handler = InboundHandler(self.config.bounce_domain, self._accept, self.limits.max_recipients,
                                      return_paths=ReturnPathHosts(self.store))
        lim = self.limits

        def protocol() -> _InboundSMTP:
            return _InboundSMTP(
                smtp_handler, self, data_size_limit=lim.max_size, hostname=self.config.bounce_domain,
                ident=IDENT, enable_SMTPUTF8=True, timeout=lim.idle_timeout,
                command_call_limit=lim.command_budget(), loop=loop,
            )

        self._server = await loop.create_server(protocol, self.host, self.port)
        self.port = int(self._server.sockets[0].getsockname()[1])
        self._tasks = [loop.create_task(self._consume(), name="inbound-apply")]
        await self._sweep_once(everything=True)  # what a crash left "stored" is queued before we return
        self._tasks.append(loop.create_task(self._maintain(), name="inbound-sweep"))

    async def stop(self) -> None:
        """Stop listening, close sessions, finish the message being applied; the rest stays "stored"."""
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        for conn in list(self.connections):
            if conn.transport is not None:
                conn.transport.close()
        await server.wait_closed()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        if self._current is not None and not self._current.done():
            # its thread holds a transaction: let it commit before the caller disposes of the store
            await asyncio.wait([self._current], timeout=10)

    async def drain(self, timeout: float = 30.0) -> None:
        """Wait until every message queued so far has been processed (for tests and the demo)."""
        await asyncio.wait_for(self._queue.join(), timeout)

    async def _accept(self, mail_from: str, rcpt_tos: list[str], raw: bytes) -> str:
        """Store one message durably and queue it; the reply for the end of DATA."""
        try:
            broken, message_id = await asyncio.to_thread(self._check_and_store, mail_from, rcpt_tos, raw)
        except SQLAlchemyError:
            log.exception("cannot store an inbound message; the sender will retry")
            return replies.TRY_LATER
        if broken is not None:
            log.warning("inbound message from %r refused: %s limit", mail_from, broken)
            return _LIMIT_REPLIES[broken]
        if message_id is not None:
            self._enqueue(message_id)
        return replies.QUEUED

    def _enqueue(self, message_id: int) -> None:
        if message_id not in self._queued:
            self._queued.add(message_id)
            self._queue.put_nowait(message_id)

    def _check_and_store(self, mail_from: str, rcpt_tos: list[str], raw: bytes) -> tuple[str | None, int | None]:
        broken = check(raw, self.limits)
        if broken is not None:
            return broken, None
        if mailto_unsubscribe(self.store, self.config.secret_key, rcpt_tos):
            return None, None  # List-Unsubscribe by mail: applied, nothing to parse
        with self.store.write() as conn:
            return None, inbound.save(conn, mail_from, rcpt_tos, raw)

    async def _consume(self) -> None:
        while True:
            message_id = await self._queue.get()
            self._current = asyncio.ensure_future(asyncio.to_thread(process, self.store, self.config, message_id))
            try:
                await asyncio.shield(self._current)
            except SQLAlchemyError:
                log.exception("database error applying inbound message %s; it will be retried", message_id)
            except Exception:
                log.exception("unexpected error applying inbound message %s", message_id)
            finally:
                self._queued.discard(message_id)
                self._queue.task_done()

    async def _maintain(self) -> None:
        while True:
            await asyncio.sleep(self.sweep_interval)
            await self._sweep_once(everything=False)

    async def _sweep_once(self, everything: bool) -> None:
        """Purge what retention allows and queue messages still "stored" (all of them, or the stale ones)."""
        try:
            for message_id in await asyncio.to_thread(self._sweep, everything):
                self._enqueue(message_id)
        except SQLAlchemyError:
            log.exception("inbound sweep failed; will try again")

    def _sweep(self, everything: bool) -> list[int]:
        t = now()
        with self.store.write() as conn:
            purged = inbound.purge(conn, t - self.config.inbound_retention)
        with self.store.read() as conn:
            stale = inbound.pending(conn, None if everything else t - _STALE_AFTER)
        if purged:
            log.info("purged %d inbound messages older than the retention period", purged)
        return stale
