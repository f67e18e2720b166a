"""The inbound SMTP server as an adversary sees it: no relay, limits, smuggling, garbage, crashes."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import aiosmtplib
import pytest

from mailtrack.inbound.limits import Limits
from mailtrack.inbound.server import InboundServer
from mailtrack.store import inbound
from mailtrack.store.db import Store
from mailtrack.store.ids import now
from tests.test_inbound_payloads import (
    deliver,
    dsn,
    inbound_config,
    inbound_rows,
    running,
    sent_email,
    status_of,
)

ALICE = "alice@example.test"
UNKNOWN = [(ALICE, "failed", "5.1.1", "550 5.1.1 user unknown")]


async def _rcpt_reply(server: InboundServer, address: str) -> tuple[int, str]:
    async with aiosmtplib.SMTP(hostname="127.0.0.1", port=server.port, timeout=10) as client:
        await client.ehlo()
        await client.mail("")
        r = await client.execute_command(b"RCPT", f"TO:<{address}>".encode())
        return r.code, r.message


@pytest.mark.parametrize("address", [
    "someone@example.com", "bounces+abc-123@other.test", "postmaster@sub.bounces.example.test",
    "fbl@bounces.example.test.evil.test", "a@[127.0.0.1]",
])
async def test_other_domains_are_relaying_denied(sqlite_store: Store, tmp_path: Path, address: str) -> None:
    async with running(inbound_config(tmp_path), sqlite_store) as server:
        assert await _rcpt_reply(server, address) == (550, "5.7.1 relaying denied")


@pytest.mark.parametrize("local", ["root", "bounces", "bounces+", "bounces+abc def", "alice"])
async def test_other_local_parts_of_the_bounce_domain_are_refused(sqlite_store: Store, tmp_path: Path,
                                                                  local: str) -> None:
    async with running(inbound_config(tmp_path), sqlite_store) as server:
        code, _ = await _rcpt_reply(server, f"{local}@bounces.example.test")
        assert code == 550


@pytest.mark.parametrize("local", ["fbl", "ABUSE", "postmaster", "bounces+0123abc-ffee00"])
async def test_feedback_and_verp_addresses_are_accepted(sqlite_store: Store, tmp_path: Path, local: str) -> None:
    async with running(inbound_config(tmp_path), sqlite_store) as server:
        assert (await _rcpt_reply(server, f"{local}@Bounces.Example.Test"))[0] == 250


async def test_too_many_recipients_are_refused(sqlite_store: Store, tmp_path: Path) -> None:
    config = inbound_config(tmp_path)
    async with running(config, sqlite_store, limits=Limits(max_recipients=2)) as server:
        async with aiosmtplib.SMTP(hostname="127.0.0.1", port=server.port, timeout=10) as client:
            await client.ehlo()
            await client.mail("")
            codes = [(await client.execute_command(b"RCPT", f"TO:<{a}@bounces.example.test>".encode())).code
                     for a in ("fbl", "abuse", "postmaster")]
    assert codes == [250, 250, 452]


async def test_oversize_message_gets_552(any_store: Store, tmp_path: Path) -> None:
    config = inbound_config(tmp_path, inbound_max_size="4KB")
    async with running(config, any_store) as server:
        # with SIZE= declared the refusal comes at MAIL FROM; without it, at the end of DATA
        with pytest.raises(aiosmtplib.SMTPResponseException) as declared:
            await deliver(server, b"Subject: big\r\n\r\n" + b"y" * 8000, "fbl@bounces.example.test")
        assert declared.value.code == 552
        async with aiosmtplib.SMTP(hostname="127.0.0.1", port=server.port, timeout=10) as client:
            await client.ehlo()
            await client.mail("")
            await client.rcpt("fbl@bounces.example.test")
            with pytest.raises(aiosmtplib.SMTPDataError) as undeclared:
                await client.data(b"\r\n".join([b"Subject: big", b""] + [b"z" * 70] * 100))
            assert (undeclared.value.code, undeclared.value.message) == (552, "5.3.4 message too big")
            # the session survives and a small message still goes through
            await client.mail("")
            await client.rcpt("fbl@bounces.example.test")
            assert (await client.data(b"Subject: small\r\n\r\nok\r\n"))[0] == 250
        await server.drain()
    assert [r["state"] for r in inbound_rows(any_store)] == ["unparsed"]


async def test_header_and_mime_limits_refuse_at_data(sqlite_store: Store, tmp_path: Path) -> None:
    config = inbound_config(tmp_path)
    limits = Limits(max_header_bytes=2000, max_mime_depth=3, max_mime_parts=10)
    huge_header = b"".join(b"X-Filler-%d: %s\r\n" % (i, b"h" * 60) for i in range(60)) + b"\r\nbody\r\n"
    nested = b""
    for depth in range(5, 0, -1):
        nested = (b'Content-Type: multipart/mixed; boundary="b%d"\r\n\r\n--b%d\r\n' % (depth, depth)
                  + (nested or b"Content-Type: text/plain\r\n\r\nleaf\r\n") + b"--b%d--\r\n" % depth)
    many = b'Content-Type: multipart/mixed; boundary="m"\r\n\r\n' + b"--m\r\n\r\npart\r\n" * 20 + b"--m--\r\n"
    async with running(config, sqlite_store, limits=limits) as server:
        for raw, expected in ((huge_header, "5.3.4 message header too large"),
                              (nested, "5.3.4 MIME structure too complex"),
                              (many, "5.3.4 MIME structure too complex")):
            with pytest.raises(aiosmtplib.SMTPDataError) as refused:
                await deliver(server, raw, "fbl@bounces.example.test")
            assert (refused.value.code, refused.value.message) == (552, expected)
    assert inbound_rows(sqlite_store) == []


SMUGGLING = [b"\n.\n", b"\r.\r", b"\n.\r\n", b"\r.\r\n", b"\r\n.\n", b"\r\n.\r"]


async def _raw_session(port: int, lines: list[bytes], data: bytes) -> list[bytes]:
    """Speak SMTP byte for byte (a client library would repair the line endings); returns all replies."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        replies = [await reader.readline()]
        for line in lines:
            writer.write(line + b"\r\n")
            await writer.drain()
            while True:
                reply = await reader.readline()
                replies.append(reply)
                if reply[3:4] != b"-":
                    break
        writer.write(data + b"QUIT\r\n")
        await writer.drain()
        replies += (await asyncio.wait_for(reader.read(), 10)).splitlines(keepends=True)
    finally:
        writer.close()
    return replies


async def test_smtp_smuggling_cannot_inject_a_second_message(any_store: Store, tmp_path: Path) -> None:
    config = inbound_config(tmp_path)
    async with running(config, any_store) as server:
        for i, sep in enumerate(SMUGGLING):
            smuggled = (b"MAIL FROM:<>\r\nRCPT TO:<abuse@bounces.example.test>\r\nDATA\r\n"
                        b"Subject: smuggled %d\r\n\r\nsecond\r\n" % i)
            data = b"Subject: first %d\r\n\r\nfirst" % i + sep + smuggled + b".\r\n"
            replies = await _raw_session(server.port, [b"EHLO client.test", b"MAIL FROM:<>",
                                                       b"RCPT TO:<fbl@bounces.example.test>", b"DATA"], data)
            codes = [r[:3] for r in replies]
            assert codes.count(b"354") == 1, (sep, replies)
            assert codes[-2:] == [b"250", b"221"], (sep, replies)
        await server.drain()
    rows = inbound_rows(any_store)
    assert len(rows) == len(SMUGGLING)  # one message per session, never two
    assert all(r["rcpt_to"] == ["fbl@bounces.example.test"] for r in rows)
    with any_store.read() as conn:
        raws = [inbound.raw_of(conn, r["id"]) or b"" for r in rows]
    # the would-be second message is stored as part of the first one's body
    assert all(b"Subject: smuggled" in raw and b"RCPT TO:<abuse@" in raw for raw in raws)


async def test_garbage_is_kept_unparsed_and_the_server_lives_on(any_store: Store, tmp_path: Path) -> None:
    config = inbound_config(tmp_path)
    sent = sent_email(any_store, ALICE)
    rnd = os.urandom(3000)
    garbage = b"\r\n".join(rnd[i:i + 60].replace(b"\r", b"").replace(b"\n", b"") for i in range(0, 3000, 60))
    async with running(config, any_store) as server:
        assert (await deliver(server, garbage, sent.verp(config, ALICE))).startswith("2.0.0")
        assert (await deliver(server, b"\x00\xff\xfe", "fbl@bounces.example.test")).startswith("2.0.0")
        await server.drain()
        # still serving: a real bounce after the garbage is applied
        await deliver(server, dsn(sent.verp(config, ALICE), UNKNOWN, sent.headers(config, ALICE)),
                      sent.verp(config, ALICE))
        await server.drain()
    rows = sorted(inbound_rows(any_store), key=lambda r: r["id"])
    assert [r["state"] for r in rows] == ["unparsed", "unparsed", "applied"]
    assert rows[0]["recipient_id"] == sent.rids[ALICE]  # the VERP token still says whose it was
    with any_store.read() as conn:
        assert inbound.raw_of(conn, rows[1]["id"]) == b"\x00\xff\xfe\r\n"
    assert status_of(any_store, sent, ALICE)["status"] == "hard_bounce"


async def test_messages_left_stored_are_processed_at_start(any_store: Store, tmp_path: Path) -> None:
    config = inbound_config(tmp_path)
    sent = sent_email(any_store, ALICE)
    verp = sent.verp(config, ALICE)
    with any_store.write() as conn:  # as if the process died right after the 250
        left = inbound.save(conn, "", [verp], dsn(verp, UNKNOWN, sent.headers(config, ALICE)))
    async with running(config, any_store) as server:
        await server.drain()
    assert [(r["id"], r["state"]) for r in inbound_rows(any_store)] == [(left, "applied")]
    assert status_of(any_store, sent, ALICE)["status"] == "hard_bounce"


async def test_retention_purges_old_messages(any_store: Store, tmp_path: Path) -> None:
    config = inbound_config(tmp_path, inbound_retention="30d")
    with any_store.write() as conn:
        old = inbound.save(conn, "", ["fbl@x"], b"old", received_at=now() - 31 * 86400)
        recent = inbound.save(conn, "", ["fbl@x"], b"recent", received_at=now() - 29 * 86400)
        inbound.mark(conn, old, "unparsed")
        inbound.mark(conn, recent, "unparsed")
    async with running(config, any_store):
        pass
    assert [r["id"] for r in inbound_rows(any_store)] == [recent]


async def test_reply_only_after_storage_and_451_when_the_store_fails(sqlite_store: Store, tmp_path: Path) -> None:
    config = inbound_config(tmp_path)
    async with running(config, sqlite_store) as server:
        with sqlite_store.write() as conn:
            conn.exec_driver_sql("ALTER TABLE inbound_messages RENAME TO inbound_gone")
        with pytest.raises(aiosmtplib.SMTPDataError) as failed:
            await deliver(server, b"Subject: x\r\n\r\ny\r\n", "fbl@bounces.example.test")
        assert failed.value.code == 451  # the sender keeps the message and retries
        with sqlite_store.write() as conn:
            conn.exec_driver_sql("ALTER TABLE inbound_gone RENAME TO inbound_messages")
        assert (await deliver(server, b"Subject: x\r\n\r\ny\r\n", "fbl@bounces.example.test")).startswith("2.0.0")
    assert len(inbound_rows(sqlite_store)) == 1


async def test_session_and_command_limits_close_the_connection(sqlite_store: Store, tmp_path: Path) -> None:
    config = inbound_config(tmp_path)
    async with running(config, sqlite_store, limits=Limits(max_commands=3, max_session=0.5)) as server:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        await reader.readline()
        for _ in range(4):
            writer.write(b"NOOP\r\n")
        await writer.drain()
        out = await asyncio.wait_for(reader.read(), 5)
        writer.close()
        assert out.splitlines()[-1].startswith(b"421 4.7.0")
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        await reader.readline()
        t0 = asyncio.get_running_loop().time()
        out = await asyncio.wait_for(reader.read(), 5)  # an idle-but-slow client is cut at max_session
        writer.close()
        assert out.startswith(b"421 4.4.2") and asyncio.get_running_loop().time() - t0 < 2
