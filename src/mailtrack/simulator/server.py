"""The simulator's SMTP server: aiosmtpd's protocol, a tiny handler, and the start/stop wrapper."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import signal
from typing import Any, AnyStr

from aiosmtpd.smtp import SMTP, Envelope, Session

from . import replies
from .behaviours import (
    DEFERRALS_BEFORE_ACCEPT,
    FOLLOWUPS,
    REFUSALS,
    Behaviour,
    behaviour_of,
    normalise_domain,
)
from .followup import Followups
from .state import DISCONNECTED, KEEP_DEFAULT, RELAY_DENIED, TOO_BIG, SimulatorState

log = logging.getLogger(__name__)

IDENT = "ESMTP mailtrack-simulator"
# How long a "disconnect" DATA waits for aiosmtpd to notice the aborted transport and cancel it.
_ABORT_GRACE = 5.0


class SimulatorHandler:
    """The aiosmtpd handler: decides RCPT replies and what happens at the end of DATA."""

    def __init__(self, domain: str, state: SimulatorState, followups: Followups, slow_delay: float) -> None:
        self.domain = domain
        self.state = state
        self.followups = followups
        self.slow_delay = slow_delay
        self._queue_ids = itertools.count(int.from_bytes(os.urandom(3), "big") << 16)

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, rcpt_options: list[str]
    ) -> str:
        behaviour = behaviour_of(address, self.domain)
        if behaviour is None:
            self.state.counts[RELAY_DENIED] += 1
            return replies.RELAY_DENIED.format(address=address)
        self.state.counts[behaviour] += 1
        refusal = REFUSALS.get(behaviour)
        if behaviour is Behaviour.DEFER_THEN_ACCEPT:
            if self.state.attempt(address) <= DEFERRALS_BEFORE_ACCEPT:
                refusal = replies.TRY_AGAIN
        if refusal is not None:
            return refusal.format(address=address)
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return replies.RCPT_OK

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        behaviours = tuple(behaviour_of(r, self.domain) or Behaviour.SUCCESS for r in envelope.rcpt_tos)
        if Behaviour.DISCONNECT in behaviours:
            self.state.counts[DISCONNECTED] += 1
            return await _drop(server)
        if Behaviour.SLOW in behaviours:
            await asyncio.sleep(self.slow_delay)
        content = envelope.original_content or b""
        mail_from = envelope.mail_from or ""
        self.state.record_message(mail_from, tuple(envelope.rcpt_tos), behaviours, content)
        for recipient, behaviour in zip(envelope.rcpt_tos, behaviours, strict=True):
            if behaviour in FOLLOWUPS:
                self.followups.schedule(behaviour, recipient, mail_from, content)
        return replies.QUEUED.format(queue_id=f"{next(self._queue_ids):010X}")


async def _drop(server: SMTP) -> str:
    """Cut the connection with no reply, the way a crashing or overloaded MX does."""
    transport = server.transport
    if isinstance(transport, asyncio.WriteTransport):
        transport.abort()
    elif transport is not None:
        transport.close()
    # connection_lost() cancels the session task, so this sleep ends in CancelledError.
    await asyncio.sleep(_ABORT_GRACE)
    return replies.DROPPED


class _SimulatorSMTP(SMTP):
    """aiosmtpd's SMTP, tracked for stop(), with enhanced codes on its size-limit replies."""

    def __init__(self, handler: SimulatorHandler, connections: set[_SimulatorSMTP], **kwargs: Any) -> None:
        super().__init__(handler, **kwargs)
        self._connections = connections
        self._state = handler.state

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._connections.add(self)
        super().connection_made(transport)

    def connection_lost(self, error: Exception | None) -> None:
        self._connections.discard(self)
        super().connection_lost(error)

    async def push(self, status: AnyStr) -> None:
        # aiosmtpd answers an over-size SIZE= or DATA with "552 Error: ..." and no enhanced code.
        if isinstance(status, str) and status.startswith("552 Error"):
            self._state.counts[TOO_BIG] += 1
            await super().push(replies.MESSAGE_TOO_BIG)
            return
        await super().push(status)


class Simulator:
    """A recipient-side SMTP server for a test domain; see ``Behaviour`` for the local parts."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        domain: str = "sim.mailtrack.test",
        report_to: tuple[str, int] | None = None,
        followup_delay: float = 0.5,
        slow_delay: float = 3.0,
        max_size: int = 25 * 1024 * 1024,
        keep: int = KEEP_DEFAULT,
    ) -> None:
        self.host = host
        self.port = port
        self.domain = normalise_domain(domain)
        self.report_to = report_to
        self.slow_delay = slow_delay
        self.max_size = max_size
        self.state = SimulatorState(keep)
        self.followups = Followups(self.state, self.domain, report_to, followup_delay)
        self._server: asyncio.Server | None = None
        self._connections: set[_SimulatorSMTP] = set()

    async def start(self) -> None:
        """Bind and listen; with port 0 the real port is read back into ``self.port``."""
        if self._server is not None:
            raise RuntimeError("simulator already started")
        loop = asyncio.get_running_loop()
        handler = SimulatorHandler(self.domain, self.state, self.followups, self.slow_delay)

        def protocol() -> _SimulatorSMTP:
            return _SimulatorSMTP(
                handler,
                self._connections,
                data_size_limit=self.max_size,
                hostname=f"mx.{self.domain}",  # also spares a getfqdn() DNS lookup per connection
                ident=IDENT,
                enable_SMTPUTF8=True,
                loop=loop,
            )

        self._server = await loop.create_server(protocol, self.host, self.port)
        self.port = int(self._server.sockets[0].getsockname()[1])
        log.info("simulator listening on %s:%d for @%s", self.host, self.port, self.domain)

    async def stop(self) -> None:
        """Stop listening, close open sessions and cancel follow-ups not yet done."""
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        for connection in list(self._connections):
            if connection.transport is not None:
                connection.transport.close()
        await server.wait_closed()
        deadline = asyncio.get_running_loop().time() + 5.0
        while self._connections and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.01)
        await self.followups.cancel()

    async def drain(self, timeout: float = 30.0) -> None:
        """Wait until the follow-ups scheduled so far (reports, opens, clicks) are done."""
        await self.followups.drain(timeout)

    async def serve_forever(self) -> None:
        """Start if needed and run until cancelled."""
        if self._server is None:
            await self.start()
        try:
            await asyncio.Event().wait()
        finally:
            await self.stop()

    async def __aenter__(self) -> Simulator:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()


def parse_hostport(value: str, default_port: int = 25) -> tuple[str, int]:
    """``"127.0.0.1:2526"``, ``"[::1]:2526"`` or ``"localhost"`` → (host, port)."""
    value = value.strip()
    if value.startswith("["):
        host, _, rest = value[1:].partition("]")
        port_text = rest.removeprefix(":")
    elif value.count(":") == 1:
        host, _, port_text = value.partition(":")
    else:
        host, port_text = value, ""
    if not host:
        raise ValueError(f"no host in {value!r}; expected HOST:PORT such as 127.0.0.1:2526")
    try:
        port = int(port_text) if port_text else default_port
    except ValueError:
        raise ValueError(f"bad port in {value!r}; expected HOST:PORT such as 127.0.0.1:2526") from None
    if not 0 <= port <= 65535:
        raise ValueError(f"port out of range in {value!r}")
    return host, port


def run_simulator(
    listen: str,
    domain: str,
    report_to: str | None,
    followup_delay: float = 0.5,
    slow_delay: float = 3.0,
    max_size: int = 25 * 1024 * 1024,
) -> None:
    """Run a simulator until interrupted (blocking; starts its own event loop). For the CLI."""
    host, port = parse_hostport(listen)
    simulator = Simulator(
        host=host,
        port=port,
        domain=domain,
        report_to=parse_hostport(report_to) if report_to else None,
        followup_delay=followup_delay,
        slow_delay=slow_delay,
        max_size=max_size,
    )
    # aiosmtpd logs every command at INFO on "mail.log": far too much for thousands of messages.
    logging.getLogger("mail.log").setLevel(logging.WARNING)

    async def serve() -> None:
        main = asyncio.current_task()
        if main is not None:
            with contextlib.suppress(NotImplementedError):  # no signal handlers on Windows loops
                asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, main.cancel)
        await simulator.serve_forever()

    try:
        asyncio.run(serve())
    except (KeyboardInterrupt, asyncio.CancelledError):
        pass
    log.info("simulator stopped")
