"""The submission protocol's own set-up and command loop (server.py): the same state as aiosmtpd's, and replies
to pipelined commands held back and sent together, never held while the client waits for them.

The protocol runs against an in-memory transport here, so that what arrives in one read and what leaves in one
write is decided by the test, not by the kernel.
"""

from __future__ import annotations

import asyncio
import ipaddress
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.smtp import SMTP

from mailtrack.store import accounts, queries
from mailtrack.store.db import Store
from mailtrack.submission.server import _CAPTURE, SubmissionServer, _SubmissionSMTP
from mailtrack.submission.tls import server_context
from tests.helpers.submission import SIM, submission_config

MSG = f"From: ops@acme.test\r\nTo: success@{SIM}\r\nSubject: pipelined\r\n\r\nhello\r\n".encode()


class Wire(asyncio.Transport):
    """A transport that keeps each write apart; close() ends the connection as a socket transport does."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__()
        self.loop = loop
        self.writes: list[bytes] = []
        self.closed = False
        self.protocol: asyncio.Protocol | None = None

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 40000) if name == "peername" else default

    def write(self, data: bytes | bytearray | memoryview) -> None:
        assert not self.closed, "written after close"
        self.writes.append(bytes(data))

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            assert self.protocol is not None
            self.loop.call_soon(self.protocol.connection_lost, None)

    def get_write_buffer_size(self) -> int:
        return 0

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def replies(self) -> list[bytes]:
        return b"".join(self.writes).splitlines()


async def until(what: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not what():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.005)


def trusted_server(tmp_path: Path, store: Store) -> tuple[SubmissionServer, int]:
    with store.write() as conn:
        account = accounts.get_or_create_account(conn, "acme")
    server = SubmissionServer(submission_config(tmp_path), store, var_dir=tmp_path / "var")
    server._trusted = [(ipaddress.ip_network("127.0.0.1/32"), account)]  # as start() resolves TRUSTED_NETWORKS
    return server, account


async def connect(server: SubmissionServer) -> tuple[_SubmissionSMTP, Wire]:
    loop = asyncio.get_running_loop()
    proto = server.protocol_factory(loop, starttls=None, require_tls=False)()
    wire = Wire(loop)
    wire.protocol = proto
    proto.connection_made(wire)
    await until(lambda: len(wire.writes) == 1)  # the greeting
    assert wire.writes[0].startswith(b"220 ")
    return proto, wire


async def test_set_up_matches_aiosmtpds_own(any_store: Store, tmp_path: Path) -> None:
    """Every attribute aiosmtpd's __init__ sets is set, to the same value (methods bound to the same functions)."""
    server, _ = trusted_server(tmp_path, any_store)
    loop = asyncio.get_running_loop()
    ctx = server_context(server.config, tmp_path / "var")
    ours = server.protocol_factory(loop, starttls=ctx, require_tls=True)()
    theirs = _SubmissionSMTP.__new__(_SubmissionSMTP)
    SMTP.__init__(theirs, ours.event_handler, authenticator=_CAPTURE, data_size_limit=ours.data_size_limit,
                  hostname=ours.hostname, ident=ours.__ident__, tls_context=ctx, auth_require_tls=True,
                  timeout=ours._timeout_duration, command_call_limit=ours._call_limit_default, loop=loop)
    mine, base = vars(ours), vars(theirs)
    assert set(base) <= set(mine), f"not set: {set(base) - set(mine)}"
    assert set(mine) - set(base) == {"_owner", "_ip", "_deadline", "_held", "_holding", "command_size_limits"}

    def same(a: Any, b: Any) -> bool:
        if hasattr(a, "__func__"):
            return (a.__func__ is b.__func__ and a.__self__ is b.__self__) or (
                a.__func__ is b.__func__ and a.__self__ is ours and b.__self__ is theirs)
        if isinstance(a, tuple) and hasattr(a, "_fields"):  # _AuthMechAttr
            return same(a.method, b.method) and a.is_builtin == b.is_builtin
        if isinstance(a, dict):
            return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
        if isinstance(a, (str, int, float, bool, type(None), ssl_context_type)):
            return bool(a == b)
        return type(a) is type(b)

    ssl_context_type = type(ctx)
    for name in base:
        assert same(mine[name], base[name]), name
    assert ours.command_size_limits["MAIL"] == SMTP.command_size_limit
    assert ours._auth_methods.keys() == {"LOGIN", "PLAIN"}


async def test_pipelined_commands_are_answered_in_one_write(any_store: Store, tmp_path: Path) -> None:
    server, account = trusted_server(tmp_path, any_store)
    try:
        proto, wire = await connect(server)
        proto.data_received(b"EHLO client.test\r\nMAIL FROM:<app@acme.test>\r\nRCPT TO:<success@" + SIM.encode()
                            + b">\r\nRCPT TO:<other@" + SIM.encode() + b">\r\nDATA\r\n")
        await until(lambda: wire.replies()[-1:] == [b"354 End data with <CR><LF>.<CR><LF>"])
        # the EHLO lines, three 250s and the 354 left together, when the 354 was due
        assert len(wire.writes) == 2, wire.writes
        codes = [r[:4] for r in wire.replies()[1:]]
        assert codes[-5:] == [b"250 ", b"250 ", b"250 ", b"250 ", b"354 "] and codes[0] == b"250-"
        proto.data_received(MSG + b".\r\nRSET\r\nNOOP\r\nQUIT\r\n")
        await until(lambda: wire.closed)
        assert [r[:3] for r in wire.replies()[-4:]] == [b"250", b"250", b"250", b"221"]
        # the 250 after DATA is never held (it waits on the store); RSET's and NOOP's went out with QUIT's 221
        assert len(wire.writes) == 4, wire.writes
        email_id = wire.replies()[-4].split()[-1].decode()
        with any_store.read() as conn:
            view = queries.get_email(conn, account, email_id)
        assert {r["address"] for r in view["recipients"]} == {f"success@{SIM}", f"other@{SIM}"}
    finally:
        await server.stop()


async def test_a_reply_is_not_held_for_a_command_that_has_not_fully_arrived(any_store: Store,
                                                                            tmp_path: Path) -> None:
    """Held only while a whole command is waiting: a partial line may be all the client sends until it is answered."""
    server, _ = trusted_server(tmp_path, any_store)
    try:
        proto, wire = await connect(server)
        proto.data_received(b"HELO client.test\r\nMAIL FROM:<app@acme.test>\r\nRCPT TO:<succ")
        await until(lambda: len(wire.replies()) == 3)
        assert [r[:3] for r in wire.replies()] == [b"220", b"250", b"250"]
        assert len(wire.writes) == 2  # HELO's and MAIL's replies together: MAIL had arrived whole
        proto.data_received(b"ess@" + SIM.encode() + b">\r\n")
        await until(lambda: len(wire.replies()) == 4)
        assert wire.replies()[3].startswith(b"250 ")
        # one command at a time (no pipelining): one write per reply, at once
        proto.data_received(b"RSET\r\n")
        await until(lambda: len(wire.replies()) == 5)
        proto.data_received(b"NOOP\r\n")
        await until(lambda: len(wire.replies()) == 6)
        assert len(wire.writes) == 5
        proto.data_received(b"QUIT\r\n")
        await until(lambda: wire.closed)
    finally:
        await server.stop()


@pytest.mark.parametrize("refusal", ["bogus", "limit"])
async def test_held_replies_go_out_before_a_refusal_closes_the_connection(any_store: Store, tmp_path: Path,
                                                                          refusal: str) -> None:
    server, _ = trusted_server(tmp_path, any_store)
    try:
        proto, wire = await connect(server)
        if refusal == "bogus":  # the fifth unknown command closes the connection
            proto.data_received(b"HELO client.test\r\n" + b"FOO\r\n" * 5 + b"NOOP\r\n")
            expected = [b"220", b"250"] + [b"500"] * 4 + [b"502"]
        else:  # over the per-command limit (max_commands)
            proto._call_limit_default = 2
            proto.data_received(b"HELO client.test\r\nNOOP\r\nNOOP\r\nNOOP\r\nNOOP\r\n")
            expected = [b"220", b"250", b"250", b"250", b"421"]
        await until(lambda: wire.closed)
        assert [r[:3] for r in wire.replies()] == expected, wire.replies()
    finally:
        await server.stop()


async def test_idle_timer_moves_with_each_command_and_closes_when_idle(any_store: Store, tmp_path: Path) -> None:
    """The timer is moved, not re-created, per command; firing before the deadline it re-arms, after it closes."""
    server, _ = trusted_server(tmp_path, any_store)
    try:
        proto, wire = await connect(server)
        loop = asyncio.get_running_loop()
        proto.data_received(b"NOOP\r\n")
        await until(lambda: len(wire.replies()) == 2)
        timer, deadline = proto._timeout_handle, proto._deadline
        assert timer is not None and not timer.cancelled()
        await until(lambda: loop.time() > deadline - proto._timeout_duration)  # the clock moves on
        proto.data_received(b"NOOP\r\n")
        await until(lambda: len(wire.replies()) == 3)
        assert proto._timeout_handle is timer and proto._deadline > deadline
        proto._timeout_cb()  # as if the timer fired at the first deadline: the session was not idle that long
        assert not wire.closed
        rearmed = proto._timeout_handle
        assert rearmed is not None and rearmed is not timer and rearmed.when() == pytest.approx(proto._deadline)
        proto._deadline = loop.time() - 1  # idle past the deadline: closed, and the client is told why
        proto._timeout_cb()
        assert wire.closed and wire.replies()[-1].startswith(b"421 4.4.2")
    finally:
        await server.stop()
