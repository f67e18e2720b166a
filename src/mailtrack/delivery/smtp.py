"""SMTP sending: a queue and a few reused connections per destination, under global and per-host caps.

Each message is its own transaction (one recipient each, since every recipient gets its own
message), so a refusal of one recipient is answered with RSET and the connection goes on with the
next message. A connection opens when its destination has queued messages, is reused while more
come, and closes after a short idle time.

``Reply`` is what the worker classifies: the server's own code and text, or ``code=None`` with a
description when there was no reply (refused, reset, timeout).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aiosmtplib
from aiosmtplib import SMTPResponseException

from .. import metrics
from ..compose import Outgoing
from .routing import Route
from .throttle import Throttle, group_of

log = logging.getLogger(__name__)

IDLE_KEEPALIVE = 2.0


@dataclass(frozen=True)
class Reply:
    code: int | None
    text: str  # "550 5.1.1 <x@y>: Recipient address rejected" or a description when no reply came
    stage: str  # connect, tls, mail, rcpt, data; "throttle" when not attempted because the provider is paused
    host: str = ""
    retry_at: float | None = None  # for "throttle": when the pause ends

    @property
    def ok(self) -> bool:
        return self.code is not None and 200 <= self.code < 300


@dataclass
class Job:
    out: Outgoing
    route: Route
    tag: Any = None  # the caller's own data, handed back with the reply


def _reply_text(code: int, message: str) -> str:
    return f"{code} {' '.join(message.split())}"


def _no_reply(stage: str, host: str, e: BaseException) -> Reply:
    what = {"connect": "could not connect to", "tls": "TLS with"}.get(stage, f"connection lost at {stage.upper()} with")
    detail = str(e) or type(e).__name__
    if isinstance(e, TimeoutError | asyncio.TimeoutError):
        detail = f"timed out ({detail})" if "time" not in detail.lower() else detail
    return Reply(None, f"{what} {host}: {detail}", stage, host)


class _Broken(Exception):
    """The connection is unusable; carries the reply for the message in hand."""

    def __init__(self, reply: Reply) -> None:
        super().__init__(reply.text)
        self.reply = reply


class _Destination:
    def __init__(self, route: Route) -> None:
        self.route = route
        # providers are grouped by MX host; any other destination is a group of its own
        host = route.hosts[0][0].lower().rstrip(".")
        provider = group_of(host)
        self.group = provider if provider != host else route.key
        self.queue: asyncio.Queue[Job] = asyncio.Queue()
        self.active = 0  # connection tasks, connected or connecting
        self.connected = 0
        self.idle = 0  # connection tasks waiting for a job


class Sender:
    """Sends ``Job``s; ``on_reply(job, reply)`` is called once for every job submitted."""

    def __init__(self, *, on_reply: Callable[[Job, Reply], None], timeout: float, helo: str,
                 max_connections: int = 100, max_per_host: int = 10, require_tls: bool = False,
                 keepalive: float = IDLE_KEEPALIVE, throttle: Throttle | None = None) -> None:
        self.on_reply = on_reply
        self.timeout = timeout
        self.helo = helo
        self.max_per_host = max(1, max_per_host)
        self.require_tls = require_tls
        self.keepalive = keepalive
        self.throttle = throttle
        self._slots = asyncio.Semaphore(max(1, max_connections))
        self._dests: dict[str, _Destination] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._closing = False
        self._idle_tasks: set[asyncio.Task[Any]] = set()
        self.messages_per_connection: list[int] = []

    def submit(self, job: Job) -> None:
        dest = self._dests.get(job.route.key)
        if dest is None:
            dest = self._dests[job.route.key] = _Destination(job.route)
        dest.queue.put_nowait(job)
        # another connection only when the idle ones cannot take what is queued
        if dest.active < self.max_per_host and dest.queue.qsize() > dest.idle:
            self._spawn(dest)

    def _spawn(self, dest: _Destination) -> None:
        dest.active += 1
        task = asyncio.create_task(self._connection(dest), name=f"smtp {dest.route.key}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    @property
    def busy(self) -> bool:
        return bool(self._tasks)

    async def close(self, grace: float = 0.0) -> None:
        """Stop: messages in the middle of a transaction get ``grace`` seconds to finish, then every
        connection is closed. Call ``drain_queued`` first; jobs left queued get no reply."""
        self._closing = True
        for t in list(self._tasks):
            if t in self._idle_tasks:
                t.cancel()
        if grace > 0 and self._tasks:
            await asyncio.wait(list(self._tasks), timeout=grace)
        for t in list(self._tasks):
            t.cancel()
        for t in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t

    def drain_queued(self) -> list[Job]:
        """Take every job that has not started yet out of the queues."""
        out: list[Job] = []
        for dest in self._dests.values():
            while not dest.queue.empty():
                out.append(dest.queue.get_nowait())
        return out

    # --- one connection ----------------------------------------------------------------------

    async def _connection(self, dest: _Destination) -> None:
        smtp: aiosmtplib.SMTP | None = None
        host = ""
        sent = 0
        group_slots = self.throttle.semaphore(dest.group) if self.throttle else contextlib.nullcontext()
        try:
            async with self._slots, group_slots:
                while True:
                    try:
                        job = dest.queue.get_nowait()
                    except asyncio.QueueEmpty:
                        if self._closing:
                            return
                        me = asyncio.current_task()
                        assert me is not None
                        dest.idle += 1
                        self._idle_tasks.add(me)
                        try:
                            job = await asyncio.wait_for(dest.queue.get(), self.keepalive)
                        except TimeoutError:
                            return
                        finally:
                            dest.idle -= 1
                            self._idle_tasks.discard(me)
                    if self.throttle is not None:
                        pause = self.throttle.paused(dest.group)
                        if pause is not None:
                            self._report(job, Reply(None, f"not attempted: {dest.group} is paused after a rate-limit "
                                                    f"reply ({pause.reason})", "throttle", retry_at=pause.until))
                            continue
                        await self.throttle.pace(dest.group)
                    if smtp is None:
                        try:
                            smtp, host = await self._open(dest.route)
                        except _Broken as e:
                            self._observe(dest, e.reply)
                            self._connect_failed(dest, job, e.reply)
                            return
                        dest.connected += 1
                    broken = True
                    t0 = time.monotonic()
                    try:
                        reply = await self._send(smtp, host, job.out)
                        broken = False
                        metrics.SMTP_SECONDS.observe(time.monotonic() - t0)
                    except _Broken as e:
                        reply = e.reply
                    except Exception as e:  # a bug: still answer the job, and start a fresh connection
                        log.exception("unexpected error sending to %s", host)
                        reply = Reply(None, f"unexpected error while sending: {e!r}", "data", host)
                    if broken:
                        dest.connected -= 1
                        smtp.close()
                        smtp = None
                    sent += 1
                    self._observe(dest, reply)
                    self._report(job, reply)
        finally:
            dest.active -= 1
            if smtp is not None:
                dest.connected -= 1
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(smtp.quit(), min(self.timeout, 5.0))
                smtp.close()
            if sent:
                self.messages_per_connection.append(sent)
            if dest.queue.qsize() and dest.active == 0 and not self._closing:
                # a job arrived while this task was finishing: keep the destination served
                self._spawn(dest)

    def _observe(self, dest: _Destination, reply: Reply) -> None:
        if self.throttle is not None and self.throttle.observe(dest.group, reply.code, reply.text):
            log.warning("pausing %s: rate-limit reply %s", dest.group, reply.text[:200])

    def _report(self, job: Job, reply: Reply) -> None:
        try:
            self.on_reply(job, reply)
        except Exception:  # a bug in the callback must not kill the connection and strand the others
            log.exception("delivery result handler failed for %s", job.out.recipient_id)

    def _connect_failed(self, dest: _Destination, job: Job, reply: Reply) -> None:
        if dest.connected:
            # other connections to this destination work (e.g. a per-client connection limit): let them
            dest.queue.put_nowait(job)
            return
        # the destination is unreachable: everything queued for it would fail the same way now
        self._report(job, reply)
        while not dest.queue.empty():
            self._report(dest.queue.get_nowait(), reply)

    async def _open(self, route: Route) -> tuple[aiosmtplib.SMTP, str]:
        last: Reply | None = None
        for hostname, port in route.hosts:
            name = f"{hostname}:{port}"
            smtp = aiosmtplib.SMTP(hostname=hostname, port=port, timeout=self.timeout, start_tls=False,
                                   local_hostname=self.helo, validate_certs=route.verify_tls)
            try:
                await smtp.connect()
                await smtp.ehlo()
                await self._maybe_tls(smtp, route, name)
                if route.auth is not None:
                    await smtp.login(*route.auth)
                return smtp, name
            except _Broken as e:
                last = e.reply
            except SMTPResponseException as e:
                last = Reply(e.code, _reply_text(e.code, e.message), "connect", name)
            except (OSError, aiosmtplib.SMTPException) as e:
                last = _no_reply("connect", name, e)
            smtp.close()
        assert last is not None, "a route has at least one host"
        raise _Broken(last)

    async def _maybe_tls(self, smtp: aiosmtplib.SMTP, route: Route, name: str) -> None:
        if smtp.supports_extension("starttls"):
            try:
                await smtp.starttls(validate_certs=route.verify_tls)
            except (OSError, aiosmtplib.SMTPException) as e:
                raise _Broken(_no_reply("tls", name, e)) from e
            return
        if self.require_tls or route.auth is not None:
            why = "MAILTRACK_REQUIRE_TLS is set" if self.require_tls else "AUTH needs TLS"
            raise _Broken(Reply(None, f"{name} does not offer STARTTLS and {why}; not sending in plaintext",
                                "tls", name))

    async def _send(self, smtp: aiosmtplib.SMTP, host: str, out: Outgoing) -> Reply:
        stage = "mail"
        try:
            opts = [f"SIZE={len(out.data)}"] if smtp.supports_extension("size") else []
            await smtp.mail(out.mail_from, options=opts)
            stage = "rcpt"
            await smtp.rcpt(out.rcpt_to)
            stage = "data"
            # RFC 5321 §4.5.3.2: 5 min per command, but 10 min for the reply to the final "."
            resp = await smtp.data(out.data, timeout=2 * self.timeout)
            return Reply(resp.code, _reply_text(resp.code, resp.message), "data", host)
        except SMTPResponseException as e:
            if e.code in (421, -1):  # the server is closing the connection
                raise _Broken(Reply(e.code if e.code > 0 else None, _reply_text(e.code, e.message), stage, host)) \
                    from e
            reply = Reply(e.code, _reply_text(e.code, e.message), stage, host)
        except (OSError, aiosmtplib.SMTPException) as e:
            raise _Broken(_no_reply(stage, host, e)) from e
        try:
            await smtp.rset()
        except (OSError, aiosmtplib.SMTPException) as e:
            raise _Broken(reply) from e
        return reply
