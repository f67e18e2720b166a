"""Issue 10 §2: one client cannot lock up bounce intake (connection caps, idle and progress deadlines)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import aiosmtplib
import pytest

from mailtrack.inbound.limits import Limits
from mailtrack.store.db import Store
from tests.test_inbound_payloads import inbound_config, inbound_rows, running

FBL = "fbl@bounces.example.test"


async def _open(port: int, source: str = "127.0.0.1") -> tuple[asyncio.StreamReader, asyncio.StreamWriter, bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))
    return reader, writer, await asyncio.wait_for(reader.readline(), 10)


async def _until_closed(reader: asyncio.StreamReader, timeout: float = 15) -> bytes:
    return await asyncio.wait_for(reader.read(), timeout)


async def _send_report(port: int, source: str) -> tuple[int, str]:
    async with aiosmtplib.SMTP(hostname="127.0.0.1", port=port, timeout=10, source_address=(source, 0)) as client:
        _, reply = await client.sendmail("", [FBL], b"Subject: report\r\n\r\nhello\r\n")
    return 250, reply


async def test_idle_connections_from_one_address_cannot_starve_others(sqlite_store: Store, tmp_path: Path) -> None:
    config = inbound_config(tmp_path)
    async with running(config, sqlite_store, limits=Limits(max_per_ip=5, max_connections=50)) as server:
        held = []
        for _ in range(5):  # the attacker holds as many as he may, keeping them alive with NOOP
            reader, writer, banner = await _open(server.port)
            assert banner.startswith(b"220 ")
            writer.write(b"NOOP\r\n")
            await writer.drain()
            assert (await asyncio.wait_for(reader.readline(), 10)).startswith(b"250")
            held.append(writer)
        reader, writer, refused = await _open(server.port)  # one more from the same address
        assert refused == b"421 4.7.0 too many connections from your address, try again later\r\n"
        assert await _until_closed(reader) == b""
        writer.close()
        # a legitimate sender elsewhere gets a banner and delivers
        assert (await _send_report(server.port, "127.0.0.2"))[1].startswith("2.0.0")
        for w in held:
            w.close()
        await server.drain()
    assert len(inbound_rows(sqlite_store)) == 1


async def test_total_connection_cap_answers_421(sqlite_store: Store, tmp_path: Path) -> None:
    config = inbound_config(tmp_path)
    async with running(config, sqlite_store, limits=Limits(max_per_ip=2, max_connections=4)) as server:
        held = [await _open(server.port, f"127.0.0.{2 + i // 2}") for i in range(4)]
        assert all(banner.startswith(b"220 ") for *_, banner in held)
        _reader, writer, refused = await _open(server.port, "127.0.0.9")
        assert refused == b"421 4.7.0 too many connections, try again later\r\n"
        writer.close()
        for _, w, _ in held:
            w.close()
        # the slots free up once they close
        deadline = time.monotonic() + 10
        while server.connections and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert (await _send_report(server.port, "127.0.0.9"))[1].startswith("2.0.0")


async def test_noop_keepalive_does_not_hold_a_connection(sqlite_store: Store, tmp_path: Path) -> None:
    config = inbound_config(tmp_path)
    async with running(config, sqlite_store, limits=Limits(progress_timeout=1.0)) as server:
        reader, writer, _ = await _open(server.port)
        got = b""

        async def keepalive() -> None:
            while True:
                writer.write(b"NOOP\r\n")
                await writer.drain()
                await asyncio.sleep(0.2)

        task = asyncio.create_task(keepalive())
        try:
            got = await _until_closed(reader)
        finally:
            task.cancel()
            writer.close()
        assert got.splitlines()[-1] == b"421 4.4.2 no message in time, closing"


async def test_noop_budget_is_small(sqlite_store: Store, tmp_path: Path) -> None:
    config = inbound_config(tmp_path)
    async with running(config, sqlite_store, limits=Limits(max_idle_commands=3)) as server:
        reader, writer, _ = await _open(server.port)
        writer.write(b"NOOP\r\n" * 5)
        await writer.drain()
        lines = (await _until_closed(reader)).splitlines()
        writer.close()
    assert lines[:3] == [b"250 OK"] * 3 and lines[-1].startswith(b"421 4.7.0 NOOP")


async def test_silent_client_is_told_why_it_is_closed(sqlite_store: Store, tmp_path: Path) -> None:
    config = inbound_config(tmp_path)
    async with running(config, sqlite_store, limits=Limits(idle_timeout=0.5)) as server:
        reader, writer, _ = await _open(server.port)
        assert await _until_closed(reader) == b"421 4.4.2 idle too long, closing\r\n"
        writer.close()


@pytest.mark.parametrize("rcpt", ["<postmaster>", "<POSTMASTER>", "<Postmaster>"])
async def test_bare_postmaster_is_accepted(sqlite_store: Store, tmp_path: Path, rcpt: str) -> None:
    config = inbound_config(tmp_path)
    async with running(config, sqlite_store) as server:
        async with aiosmtplib.SMTP(hostname="127.0.0.1", port=server.port, timeout=10) as client:
            await client.ehlo()
            await client.mail("")
            r = await client.execute_command(b"RCPT", f"TO:{rcpt}".encode())
            assert (r.code, r.message) == (250, "2.1.5 OK")
            code, _ = await client.data(b"Subject: to the postmaster\r\n\r\nhello\r\n")
            assert code == 250
        await server.drain()
    [row] = inbound_rows(sqlite_store)
    assert row["rcpt_to"] == [rcpt.strip("<>")]
