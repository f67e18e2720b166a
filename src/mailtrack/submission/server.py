"""The SMTP submission server: aiosmtpd with STARTTLS (and optionally implicit TLS), AUTH, limits.

    connect ─▶ per-IP connection cap, locked-out IP → 421
    EHLO ─▶ SIZE, 8BITMIME, PIPELINING (aiosmtpd reads ahead), STARTTLS; AUTH PLAIN LOGIN once on TLS
    AUTH ─▶ account name + API key (checked in a thread); failures slowed, then 421 for a while
    MAIL/RCPT ─▶ 530 5.7.0 without AUTH (it never relays); 452 past the recipient limit
    DATA ─▶ message.to_new_email (554 5.6.0 naming a bad header) ─▶ store.submit through a group
            writer ─▶ commit ─▶ 250 2.0.0 Ok: queued as EMAIL_ID (the API's email id)
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import ipaddress
import logging
import re
import ssl
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, AnyStr

from aiosmtpd.smtp import (
    ALLOWED_BEFORE_STARTTLS,
    BOGUS_LIMIT,
    SMTP,
    AuthResult,
    Envelope,
    LoginPassword,
    Session,
    TLSSetupException,
    _AuthMechAttr,
    sanitized_log,
)
from sqlalchemy import Connection
from sqlalchemy.exc import SQLAlchemyError

from ..config import Config
from ..domain.addresses import AddressError, parse_address
from ..errors import ConfigError, NotFound
from ..store import accounts, submit
from ..store.db import Store
from ..store.writer import GroupWriter
from .auth import FailureGuard, account_for
from .data import LINE_TOO_LONG, TOO_BIG, read_data
from .message import Refused, to_new_email
from .tls import server_context

log = logging.getLogger("mailtrack.submission")
session_log = logging.getLogger("mail.log")  # aiosmtpd's

IDENT = "ESMTP mailtrack submission"
QUEUED = "250 2.0.0 Ok: queued as {email_id}"
RCPT_OK = "250 2.1.5 OK"
AUTH_REQUIRED = "530 5.7.0 Authentication required"
AUTH_FAILED = "535 5.7.8 Authentication credentials invalid"
LOCKED_OUT = "421 4.7.0 too many failed authentications from your address, try again later"
IDLE_TIMEOUT = "421 4.4.2 idle for too long, closing"
TOO_MANY_CONNECTIONS = "421 4.7.0 too many connections from your address, try again later"
TOO_MANY_RCPTS = "452 4.5.3 too many recipients (at most {limit} per message)"
BAD_ADDRESS = "553 5.1.3 {error}"
TRY_LATER = "451 4.3.0 temporary failure storing the message, try again later"
# aiosmtpd's own replies that carry no enhanced status code, and what we answer instead
_REWORDED = {
    "552 Error: message size exceeds fixed maximum message size": TOO_BIG,
    "501 Error: SMTPUTF8 disabled": "555 5.6.7 SMTPUTF8 is not supported: use ASCII addresses (RFC 2047 headers)",
    "500 Line too long (see RFC5321 4.5.3.1.6)": LINE_TOO_LONG,
    "500 Error: strict ASCII mode": "500 5.6.7 non-ASCII command: SMTPUTF8 is not supported",
}
_SIMPLE_PATH = re.compile(r"[ \t]*<([A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]{1,64}@[A-Za-z0-9.-]{1,255})>(.*)", re.DOTALL)
_INLINE_PARSE = 256 * 1024  # bigger messages are parsed in a thread, off the event loop
_DIR_CACHE: dict[tuple[type, tuple[str, ...]], list[str]] = {}
_AUTH_NAMES: dict[type, list[tuple[str, str]]] = {}
_TRUSTED_IPS = 4096  # peer addresses whose trusted-network answer is kept
# commands whose replies may wait while the client has already sent the next command (RFC 2920 pipelining):
# none of them reads from the client or waits on anything but the handler's own quick checks
_HOLDABLE = frozenset({"HELO", "EHLO", "MAIL", "RCPT", "RSET", "NOOP", "VRFY", "HELP", "EXPN"})


def _listed(obj: object, prefixes: tuple[str, ...]) -> list[str]:
    """The attribute names of ``obj`` with these prefixes, sorted, worked out once per class."""
    key = (type(obj), prefixes)
    names = _DIR_CACHE.get(key)
    if names is None:
        names = _DIR_CACHE[key] = sorted(n for n in dir(type(obj)) if n.startswith(prefixes))
    return names


@dataclass(frozen=True)
class Limits:
    max_connections_per_ip: int = 50
    idle_timeout: float = 120.0  # per command (aiosmtpd's timeout)
    max_commands: int = 1000  # each command name, per connection


class _QuietAiosmtpd(logging.Filter):
    """Drops aiosmtpd's warning about its own API at every successful AUTH (it sets a deprecated attribute)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Session.login_data is deprecated")


_QUIET = _QuietAiosmtpd()


class _Capture:
    """aiosmtpd's authenticator hook, used only to hand the decoded credentials back (checked async)."""

    def __call__(self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any) -> AuthResult:
        return AuthResult(success=True, auth_data=data)


_CAPTURE = _Capture()


def _auth_names(obj: object) -> list[tuple[str, str]]:
    """(mechanism, attribute) of each auth_* method, named as aiosmtpd names them (sorted, as getmembers is)."""
    return [(getattr(getattr(obj, name), "__auth_mechanism_name__", name.replace("auth_", "").replace("__", "-")),
             name) for name in _listed(obj, ("auth_",))]


class _SubmissionSMTP(SMTP):
    """aiosmtpd's SMTP protocol with its per-connection set-up and command loop made cheaper.

    ``__init__`` sets what aiosmtpd 1.4.6's sets (tests/test_submission_protocol.py compares the two), from
    names worked out once per class and hooks once per handler, instead of dir(), inspect.getmembers() and
    inspect.signature() on every connection. ``_handle_client`` is aiosmtpd's loop without its per-line debug
    logging, with the idle timer moved instead of re-created per command, and with replies held back while
    the client has already sent the next command (pipelining): they go out in one write with the first reply
    that is not held, or as soon as nothing complete is left to read.
    """

    def __init__(self, handler: SubmissionHandler, owner: SubmissionServer, *, data_size_limit: int | None,
                 hostname: str, ident: str, tls_context: ssl.SSLContext | None, auth_require_tls: bool,
                 timeout: float, command_call_limit: int, loop: asyncio.AbstractEventLoop) -> None:
        # what SMTP.__init__ sets for these arguments (authenticator=_Capture(), no PROXY, no SMTPUTF8)
        self.__ident__ = ident
        self.loop = loop
        asyncio.StreamReaderProtocol.__init__(
            self, asyncio.StreamReader(loop=loop, limit=self.line_length_limit),
            client_connected_cb=self._cb_client_connected, loop=loop)
        self.event_handler = handler
        self.data_size_limit = data_size_limit
        self.enable_SMTPUTF8 = False
        self._decode_data = False
        # aiosmtpd keeps this on the class (every session shares it, and clears it per connection): one each
        self.command_size_limits = collections.defaultdict(lambda: SMTP.command_size_limit)
        self.hostname = hostname
        self.tls_context = tls_context  # server_context(): CERT_NONE, no hostname check (aiosmtpd warns otherwise)
        self.require_starttls = False
        self._timeout_duration = timeout
        self._timeout_handle: asyncio.TimerHandle | None = None
        self._tls_handshake_okay = True
        self._tls_protocol = None
        self._original_transport = None
        self.session = None
        self.envelope = None
        self.transport = None
        self._handler_coroutine = None
        self._auth_require_tls = auth_require_tls
        self._proxy_timeout = None
        self._authenticator = _CAPTURE
        self._auth_callback = None
        self._auth_required = False
        own = _AUTH_NAMES.get(type(self))
        if own is None:
            own = _AUTH_NAMES[type(self)] = _auth_names(self)
        self._auth_methods = {mech: _AuthMechAttr(getattr(self, name), True) for mech, name in own}
        self._auth_methods.update(handler.mechanisms)
        self._handle_hooks = handler.hooks
        self._ehlo_hook_ver = "new"
        self._smtp_methods = {name[5:]: getattr(self, name) for name in _listed(self, ("smtp_",))}
        self._enforce_call_limit = True
        self._call_limit_base = {}
        self._call_limit_default = command_call_limit
        # ours
        self._owner = owner
        self._ip: str | None = None
        self._deadline = 0.0  # the idle timer fires at or after this; it moves on with each command
        self._held: list[bytes] = []  # replies waiting for the end of a pipelined group
        self._holding = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        first = self.transport is None  # runs again after STARTTLS, with a fresh session
        super().connection_made(transport)
        peer = transport.get_extra_info("peername")
        ip = str(peer[0]) if peer else ""
        trusted = self._owner.trusted_account(ip)
        if trusted is not None and self.session is not None:
            self.session.authenticated = True
            self.session.auth_data = trusted  # type: ignore[assignment]  # aiosmtpd's stub says None
        if not first:
            return
        owner = self._owner
        if owner.guard.locked(ip):
            self._refuse(LOCKED_OUT)
        elif owner.per_ip[ip] >= owner.limits.max_connections_per_ip:
            self._refuse(TOO_MANY_CONNECTIONS)
        else:
            owner.per_ip[ip] += 1
            owner.connections.add(self)
            self._ip = ip

    def _refuse(self, reply: str) -> None:
        self._holding = False
        self._flush_held()
        if self.transport is not None and not self.transport.is_closing():
            if isinstance(self.transport, asyncio.WriteTransport):
                self.transport.write(reply.encode() + b"\r\n")
            self.transport.close()

    def _reset_timeout(self, duration: float | None = None) -> None:
        # called per command: the deadline moves, and the timer is re-armed only when it would fire too late
        # (aiosmtpd cancels and re-creates it each time); a timer that fires early re-arms itself
        self._deadline = self.loop.time() + (duration or self._timeout_duration)
        handle = self._timeout_handle
        if handle is None or handle.cancelled() or handle.when() > self._deadline:
            if handle is not None:
                handle.cancel()
            self._timeout_handle = self.loop.call_at(self._deadline, self._timeout_cb)

    def _timeout_cb(self) -> None:
        if self.loop.time() < self._deadline:
            self._timeout_handle = self.loop.call_at(self._deadline, self._timeout_cb)
            return
        self._refuse(IDLE_TIMEOUT)  # aiosmtpd just closes; say why first
        super()._timeout_cb()

    def connection_lost(self, error: Exception | None) -> None:
        if self._ip is not None:
            self._owner.per_ip[self._ip] -= 1
            if self._owner.per_ip[self._ip] <= 0:
                del self._owner.per_ip[self._ip]
            self._ip = None
        self._owner.connections.discard(self)
        super().connection_lost(error)

    def _getaddr(self, arg: str) -> tuple[str | None, str | None]:
        # the common '<local@domain> PARAMS' without aiosmtpd's full RFC 5322 parser (a tenth of the cost)
        simple = _SIMPLE_PATH.fullmatch(arg) if arg else None
        if simple is not None:
            return simple.group(1), simple.group(2)
        return super()._getaddr(arg)

    async def push(self, status: AnyStr) -> None:
        # aiosmtpd's push without its debug log; held while a pipelined group is being answered
        if isinstance(status, str):
            if status in _REWORDED:
                status = _REWORDED[status].format(size=self.data_size_limit)
            reply = status.encode("ascii") + b"\r\n"
        else:
            reply = status + b"\r\n"
        if self._holding:
            self._held.append(reply)
            return
        if self._held:
            self._held.append(reply)
            reply = b"".join(self._held)
            self._held.clear()
        writer = self._writer
        writer.write(reply)
        transport = writer.transport
        if transport.is_closing() or transport.get_write_buffer_size():
            await writer.drain()  # raises if the connection is gone, waits if the client reads slowly

    def _flush_held(self) -> None:
        if self._held:
            reply = b"".join(self._held)
            self._held.clear()
            if self.transport is not None and not self.transport.is_closing():
                self._writer.write(reply)

    async def _handle_client(self) -> None:
        # aiosmtpd 1.4.6's loop (without PROXY, which this server does not take), replies held while pipelined
        assert self.session is not None
        await self.push(f"220 {self.hostname} {self.__ident__}")
        call_limit: collections.defaultdict[str, int] = collections.defaultdict(
            lambda: self._call_limit_default, self._call_limit_base)
        bogus_budget = BOGUS_LIMIT
        reader = self._reader
        while self.transport is not None:
            try:
                self._holding = False
                if b"\n" not in reader._buffer:  # type: ignore[attr-defined]
                    self._flush_held()  # nothing more was pipelined: the client waits for these replies
                try:
                    line: bytes = await reader.readuntil()
                except asyncio.LimitOverrunError as error:
                    # Line too long. Read until end of line before sending 500.
                    await reader.read(error.consumed)
                    while True:
                        try:
                            await reader.readuntil()
                            break
                        except asyncio.LimitOverrunError as e:
                            await reader.read(e.consumed)
                    await self.push("500 Command line too long")
                    continue
                # a complete command already follows: the client pipelines, so this one's replies can wait
                self._holding = b"\n" in reader._buffer  # type: ignore[attr-defined]
                line = line.rstrip(b"\r\n")
                if session_log.isEnabledFor(logging.INFO):
                    sanitized_log(session_log.info, "%r >> %r", self.session.peer, line)
                if not line:
                    await self.push("500 Error: bad syntax")
                    continue
                command_bytes, _, arg_bytes = line.partition(b" ")
                try:
                    command = command_bytes.upper().decode(encoding="ascii")
                except UnicodeDecodeError:
                    await self.push("500 Error: bad syntax")
                    continue
                arg: str | None = None
                if arg_bytes:
                    try:
                        arg = str(arg_bytes.strip(), encoding="ascii", errors="strict")
                    except UnicodeDecodeError:
                        await self.push("500 Error: strict ASCII mode")
                        continue
                max_sz = (self.command_size_limits[command] if self.session.extended_smtp
                          else self.command_size_limit)
                if len(line) > max_sz:
                    await self.push("500 Command line too long")
                    continue
                if not self._tls_handshake_okay and command != "QUIT":
                    await self.push("554 Command refused due to lack of security")
                    continue
                if self.require_starttls and not self._tls_protocol and command not in ALLOWED_BEFORE_STARTTLS:
                    await self.push("530 Must issue a STARTTLS command first")
                    continue
                budget = call_limit[command]
                if budget < 1:
                    session_log.warning("%r over limit for %s", self.session.peer, command)
                    self._holding = False
                    await self.push(f"421 4.7.0 {command} sent too many times")
                    self.transport.close()
                    continue
                call_limit[command] = budget - 1
                method = self._smtp_methods.get(command)
                if method is None:
                    session_log.warning("%r unrecognised: %s", self.session.peer, command)
                    bogus_budget -= 1
                    if bogus_budget < 1:
                        session_log.warning("%r too many bogus commands", self.session.peer)
                        self._holding = False
                        await self.push("502 5.5.1 Too many unrecognized commands, goodbye.")
                        self.transport.close()
                        continue
                    await self.push(f'500 Error: command "{command}" not recognized')
                    continue
                self._reset_timeout()
                if command not in _HOLDABLE:
                    self._holding = False  # it reads from the client (DATA, AUTH), switches to TLS or closes
                await method(arg)
            except asyncio.CancelledError:
                # QUIT, EOF, or the connection went away: what was answered is still sent
                self._holding = False
                self._flush_held()
                session_log.info("%r Connection lost during _handle_client()", self.session.peer)
                self._writer.close()
                raise
            except ConnectionResetError:
                session_log.info("%r Connection lost during _handle_client()", self.session.peer)
                self._writer.close()
                raise
            except Exception as error:
                self._holding = False
                status = None
                try:
                    status = await self.handle_exception(error)
                except Exception as inner_error:
                    try:
                        session_log.exception("%r Exception in handle_exception()", self.session.peer)
                        status = f"500 Error: ({inner_error.__class__.__name__}) {inner_error}"
                    except Exception:
                        status = "500 Error: Cannot describe error"
                finally:
                    if isinstance(error, TLSSetupException):
                        self.transport.close()
                        self.connection_lost(error)
                    else:
                        await self.push(status)  # type: ignore[type-var]

    async def smtp_DATA(self, arg: str) -> None:
        # aiosmtpd's smtp_DATA with the data read in bulk (data.py): its per-line loop was a tenth of the
        # server's time at 4 KB messages. No decode_data, no SMTPUTF8: the content stays bytes, as before.
        if await self.check_helo_needed() or await self.check_auth_needed("DATA"):
            return
        assert self.envelope is not None
        if not self.envelope.rcpt_tos:
            await self.push("503 Error: need RCPT command")
            return
        if arg:
            await self.push("501 Syntax: DATA")
            return
        await self.push("354 End data with <CR><LF>.<CR><LF>")
        try:
            data = await read_data(self._reader, self.data_size_limit, self.line_length_limit)
        except asyncio.CancelledError:  # the connection went away during DATA
            self._writer.close()
            raise
        if data.refusal is not None:
            self._set_post_data_state()
            await self.push(data.refusal)
            return
        self.envelope.content = self.envelope.original_content = data.content
        status = await self._call_handler_hook("DATA")
        self._set_post_data_state()
        await self.push(status)

    async def auth_PLAIN(self, _: Any, args: list[str]) -> AuthResult:
        return await self._verify(await super().auth_PLAIN(_, args))

    async def auth_LOGIN(self, _: Any, args: list[str]) -> AuthResult:
        return await self._verify(await super().auth_LOGIN(_, args))

    async def _verify(self, captured: AuthResult) -> AuthResult:
        if not captured.success or not isinstance(captured.auth_data, LoginPassword):
            return captured  # bad base64, '*' abort: aiosmtpd has answered already
        ip = self._ip or ""
        name = captured.auth_data.login.decode("utf-8", "replace")
        key = captured.auth_data.password.decode("utf-8", "replace")
        try:
            found = await asyncio.to_thread(account_for, self._owner.store, name, key)
        except SQLAlchemyError:
            log.exception("cannot check SMTP credentials")
            return AuthResult(success=False, handled=False, message="454 4.7.0 temporary authentication failure")
        if found is not None:
            self._owner.guard.succeeded(ip)
            return AuthResult(success=True, auth_data=found)
        delay, locked = self._owner.guard.failed(ip)
        log.warning("SMTP AUTH failed for %r from %s%s", name[:100], ip, " (now locked out)" if locked else "")
        if locked:
            self._refuse(LOCKED_OUT)
            return AuthResult(success=False, handled=True)
        if delay:
            await asyncio.sleep(delay)
        return AuthResult(success=False, handled=False, message=AUTH_FAILED)


class SubmissionHandler:
    """RCPT checks and DATA → the API's submission path."""

    def __init__(self, server: SubmissionServer) -> None:
        self.server = server
        # what aiosmtpd's __init__ looks up on the handler for every connection, looked up once
        self.hooks: dict[str, Callable[..., Any]] = {
            name[7:]: getattr(self, name) for name in _listed(self, ("handle_",))}
        self.mechanisms = {mech: _AuthMechAttr(getattr(self, name), False) for mech, name in _auth_names(self)}

    async def handle_EHLO(
        self, server: SMTP, session: Session, envelope: Envelope, hostname: str, responses: list[str]
    ) -> list[str]:
        session.host_name = hostname
        # aiosmtpd answers pipelined commands in order (and drops what was pipelined before TLS)
        return [*responses[:-1], "250-PIPELINING", responses[-1]]

    async def handle_MAIL(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, mail_options: list[str]
    ) -> str:
        # checked here rather than with aiosmtpd's auth_required, which logs a warning per connection when
        # AUTH may run without STARTTLS (implicit TLS, ALLOW_PLAINTEXT); RCPT and DATA need a MAIL first
        if not session.authenticated:
            return AUTH_REQUIRED
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 2.1.0 OK"

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, rcpt_options: list[str]
    ) -> str:
        limit = self.server.config.submission_max_recipients
        if len(envelope.rcpt_tos) >= limit:
            return TOO_MANY_RCPTS.format(limit=limit)
        try:
            _, normalised = parse_address(address, "recipient")
        except AddressError as e:
            return BAD_ADDRESS.format(error=e)
        envelope.rcpt_tos.append(normalised)
        envelope.rcpt_options.extend(rcpt_options)
        return RCPT_OK

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        account = session.auth_data
        if not session.authenticated or not isinstance(account, int):
            return AUTH_REQUIRED
        return await self.server.accept(account, list(envelope.rcpt_tos), envelope.original_content or b"")




def _submit_many(conn: Connection, requests: list[tuple[int, submit.NewEmail]]) -> list[str]:
    """Every queued message of one account in one store.submit() call (the API's own function)."""
    done = submit.submit(conn, requests[0][0], [new for _, new in requests])
    return [email_id for email_id, _ in done]


class SubmissionServer:
    """``await start()`` listens on SUBMISSION_SMTP (STARTTLS) and SUBMISSIONS_SMTP (implicit TLS)."""

    def __init__(self, config: Config, store: Store, *, on_spooled: Callable[[], None] | None = None,
                 limits: Limits | None = None, guard: FailureGuard | None = None,
                 var_dir: Path = Path("var")) -> None:
        self.config = config
        self.store = store
        self.on_spooled = on_spooled or (lambda: None)
        self.limits = limits or Limits()
        self.guard = guard or FailureGuard()
        self.var_dir = var_dir
        self.writer = GroupWriter(store)
        self.per_ip: Counter[str] = Counter()
        self.connections: set[_SubmissionSMTP] = set()
        self.port: int | None = None  # read back after start (port 0 in tests)
        self.tls_port: int | None = None
        self._servers: list[asyncio.Server] = []
        self._trusted: list[tuple[Any, int]] = []
        self._trusted_ips: dict[str, int | None] = {}

    def trusted_account(self, ip: str) -> int | None:
        if not self._trusted or not ip:
            return None
        if ip not in self._trusted_ips:  # parsing the address is a good part of a connection's set-up
            if len(self._trusted_ips) >= _TRUSTED_IPS:
                self._trusted_ips.clear()
            self._trusted_ips[ip] = self._trusted_for(ip)
        return self._trusted_ips[ip]

    def _trusted_for(self, ip: str) -> int | None:
        try:
            addr = ipaddress.ip_address(ip)
        except ValueError:
            return None
        return next((acct for net, acct in self._trusted if addr in net), None)

    async def start(self) -> None:
        cfg = self.config
        if cfg.submission_smtp is None and cfg.submissions_smtp is None:
            return
        ctx = server_context(cfg, self.var_dir)
        if cfg.submission_trusted_networks:
            self._trusted = await asyncio.to_thread(self._resolve_trusted)
        if cfg.submission_allow_plaintext:
            log.warning("SMTP submission accepts AUTH without TLS (MAILTRACK_SUBMISSION_ALLOW_PLAINTEXT)")
        if cfg.submission_smtp is not None:
            srv = await self._listen(cfg.submission_smtp, starttls=ctx)
            self.port = int(srv.sockets[0].getsockname()[1])
            log.info("SMTP submission (STARTTLS) on %s:%s", cfg.submission_smtp[0], self.port)
        if cfg.submissions_smtp is not None:
            srv = await self._listen(cfg.submissions_smtp, implicit=ctx)
            self.tls_port = int(srv.sockets[0].getsockname()[1])
            log.info("SMTP submission (implicit TLS) on %s:%s", cfg.submissions_smtp[0], self.tls_port)

    def _resolve_trusted(self) -> list[tuple[Any, int]]:
        with self.store.write() as conn:
            return [(net, accounts.get_or_create_account(conn, name))
                    for net, name in self.config.submission_trusted_networks]

    def protocol_factory(self, loop: asyncio.AbstractEventLoop, *, starttls: ssl.SSLContext | None,
                         require_tls: bool) -> Callable[[], _SubmissionSMTP]:
        """One SMTP protocol per connection, sharing one handler."""
        handler = SubmissionHandler(self)

        def protocol() -> _SubmissionSMTP:
            return _SubmissionSMTP(
                handler, self, data_size_limit=self.config.max_message_size, hostname=self.config.bounce_domain,
                ident=IDENT, tls_context=starttls, auth_require_tls=require_tls,
                timeout=self.limits.idle_timeout, command_call_limit=self.limits.max_commands, loop=loop,
            )

        return protocol

    async def _listen(self, where: tuple[str, int], *, starttls: ssl.SSLContext | None = None,
                      implicit: ssl.SSLContext | None = None) -> asyncio.Server:
        loop = asyncio.get_running_loop()
        if session_log.level == logging.NOTSET:
            session_log.setLevel(logging.WARNING)  # aiosmtpd logs every command at INFO
        if _QUIET not in session_log.filters:
            session_log.addFilter(_QUIET)
        # with implicit TLS every session is encrypted, which aiosmtpd cannot see: AUTH is allowed outright
        protocol = self.protocol_factory(loop, starttls=starttls,
                                         require_tls=implicit is None and not self.config.submission_allow_plaintext)

        # SO_REUSEPORT (opt-in): more `serve --role submission` processes share the port and the kernel spreads
        # connections, which is how submission uses more than one core. Off by default, so that a second
        # instance on the same port fails loudly instead of quietly taking half of the mail.
        try:
            server = await loop.create_server(protocol, where[0], where[1], ssl=implicit,
                                              reuse_port=self.config.submission_reuse_port or None)
        except OSError as e:
            setting = "SUBMISSIONS_SMTP" if implicit is not None else "SUBMISSION_SMTP"
            raise ConfigError(f"cannot listen on {where[0]}:{where[1]} for SMTP submission ({e.strerror}): "
                              f"set MAILTRACK_{setting} to a free HOST:PORT, or empty to turn it off") from e
        self._servers.append(server)
        return server

    async def accept(self, account: int, rcpt_tos: list[str], raw: bytes) -> str:
        """Store one message durably (the API's submission) and answer with its email id."""
        try:
            if len(raw) > _INLINE_PARSE:
                new = await asyncio.to_thread(to_new_email, raw, rcpt_tos)
            else:
                new = to_new_email(raw, rcpt_tos)
        except Refused as e:
            return e.reply
        try:
            email_id = await asyncio.wrap_future(self.writer.enqueue(("submit", account), _submit_many,
                                                                     (account, new)))
        except NotFound as e:  # an unknown X-Mailtrack-Client
            return f"554 5.6.0 X-Mailtrack-Client: {e.message}"
        except SQLAlchemyError:
            log.exception("cannot store a submitted message; the client will retry")
            return TRY_LATER
        self.on_spooled()
        return QUEUED.format(email_id=email_id)

    async def stop(self) -> None:
        servers, self._servers = self._servers, []
        for s in servers:
            s.close()
        for conn in list(self.connections):
            if conn.transport is not None:
                conn.transport.close()
        for s in servers:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(s.wait_closed(), 10)
        await asyncio.to_thread(self.writer.close)
