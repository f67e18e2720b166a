"""The inbound server and sending domains: VERP at every return-path host (and nothing else there), and
List-Unsubscribe by mail (``unsubscribe+TOKEN@`` the bounce domain)."""

from __future__ import annotations

from pathlib import Path

import aiosmtplib
from sqlalchemy import select

from mailtrack import tokens
from mailtrack.domains import service
from mailtrack.store import accounts, suppressions
from mailtrack.store.db import Store
from mailtrack.store.schema import events
from tests.test_inbound_payloads import deliver, inbound_config, running, sent_email


async def rcpt(port: int, address: str) -> int:
    async with aiosmtplib.SMTP(hostname="127.0.0.1", port=port, timeout=10) as client:
        await client.ehlo()
        await client.mail("")
        return (await client.execute_command(b"RCPT", f"TO:<{address}>".encode())).code


async def test_verp_at_return_path_hosts_and_mailto_unsubscribe(any_store: Store, tmp_path: Path) -> None:
    config = inbound_config(tmp_path)
    with any_store.write() as conn:
        acct = accounts.get_or_create_account(conn, "acme")
    service.add(any_store, config, acct, "acme.example", return_path="bounces.acme.example")
    sent = sent_email(any_store, "alice@example.test")
    rid = sent.rids["alice@example.test"]
    async with running(config, any_store) as server:
        verp = tokens.verp_address("test-secret", rid, "bounces.acme.example")
        assert await rcpt(server.port, verp) == 250
        assert await rcpt(server.port, "postmaster@bounces.acme.example") == 550  # only VERP at a return path
        assert await rcpt(server.port, "bounces+x@acme.example") == 550  # the From domain itself is not ours
        assert await rcpt(server.port, "bounces+x@other-bounces.acme.example") == 550

        tok = tokens.unsubscribe_token("test-secret", rid)
        msg = (b"From: alice@example.test\r\nTo: unsubscribe@x\r\nSubject: unsubscribe\r\n\r\nplease\r\n")
        reply = await deliver(server, msg, f"unsubscribe+{tok}@{config.bounce_domain}", "alice@example.test")
        assert reply.startswith("2.0.0")
        # a forged token is accepted (a report like any other) and changes nothing
        await deliver(server, msg, f"unsubscribe+{rid}-{'0' * 32}@{config.bounce_domain}", "x@example.test")
    with any_store.read() as conn:
        found = suppressions.suppressed_among(conn, acct, {"alice@example.test"})
        kinds = conn.execute(select(events.c.type).where(events.c.recipient_id == rid)).scalars().all()
        rows, _ = suppressions.search(conn, acct, q="alice")
    assert "alice@example.test" in found and rows[0]["source"] == "unsubscribe"
    assert kinds.count("unsubscribed") == 1
