"""Report payloads and helpers for the inbound tests (no tests here).

The payloads follow RFC 3464 (DSN), RFC 5965 (ARF) and RFC 3834 (auto-reply); they are written
out here rather than taken from the simulator, so the inbound side is tested against the RFCs.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiosmtplib

from mailtrack import tokens
from mailtrack.config import Config
from mailtrack.inbound.server import InboundServer
from mailtrack.store import accounts, inbound, queries
from mailtrack.store.db import Store
from mailtrack.store.submit import NewEmail, NewRecipient, submit
from mailtrack.store.transitions import Change, record
from tests.conftest import make_config

BOUNCE_DOMAIN = "bounces.example.test"


def inbound_config(tmp_path: Path, **over: Any) -> Config:
    return make_config(tmp_path, inbound_smtp="127.0.0.1:0", bounce_domain=BOUNCE_DOMAIN, **over)


@dataclass
class Sent:
    """One submitted email whose recipients were all marked sent."""

    account_id: int
    email_id: str
    rids: dict[str, str]  # address → recipient id

    def verp(self, config: Config, address: str) -> str:
        return tokens.verp_address(config.secret_key, self.rids[address], config.bounce_domain)

    def headers(self, config: Config, address: str, *, message_id: bool = True, mailtrack_id: bool = True,
                verp: bool = True) -> str:
        """The original message's headers as a report quotes them."""
        rid = self.rids[address]
        lines = []
        if verp:
            lines.append(f"Return-Path: <{self.verp(config, address)}>")
        lines += ["From: Acme Ops <ops@acme.test>", f"To: {address}", "Subject: Invoice 1001",
                  "Date: Mon, 06 Jan 2025 10:00:00 +0000"]
        if message_id:
            lines.append(f"Message-ID: {tokens.message_id(config.secret_key, rid, self.email_id, config.bounce_domain)}")
        if mailtrack_id:
            lines.append(f"X-Mailtrack-ID: {tokens.mailtrack_id(config.secret_key, rid)}")
        return "\r\n".join(lines) + "\r\n"


def sent_email(store: Store, *addresses: str, account: str = "acme") -> Sent:
    """Submit an email to ``addresses`` and record each recipient as sent."""
    with store.write() as conn:
        acct = accounts.get_or_create_account(conn, account)
        new = NewEmail(from_addr="ops@acme.test", subject="Invoice 1001", text="Hello",
                       recipients=[NewRecipient("", a, "to") for a in addresses])
        [(eid, _)] = submit(conn, acct, [new])
        rows = inbound.recipients_of(conn, eid)
        for r in rows:
            record(conn, Change(r["id"], "sent"))
    return Sent(acct, eid, {r["address"]: r["id"] for r in rows})


def view(store: Store, sent: Sent) -> dict[str, Any]:
    with store.read() as conn:
        return queries.get_email(conn, sent.account_id, sent.email_id)


def timeline_of(store: Store, sent: Sent, address: str) -> list[str]:
    rid = sent.rids[address]
    return [e["type"] for e in view(store, sent)["timeline"] if e["recipient_id"] == rid]


def status_of(store: Store, sent: Sent, address: str) -> dict[str, Any]:
    return next(r for r in view(store, sent)["recipients"] if r["address"] == address)


def inbound_rows(store: Store, state: str | None = None) -> list[dict[str, Any]]:
    with store.read() as conn:
        rows, _ = inbound.search(conn, state=state, limit=1000)
    return rows


@asynccontextmanager
async def running(config: Config, store: Store, **kw: Any) -> AsyncIterator[InboundServer]:
    server = InboundServer(config, store, **kw)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


async def deliver(server: InboundServer, raw: bytes, rcpt: str, sender: str = "") -> str:
    """Send one message to the server over SMTP; returns the final reply text."""
    async with aiosmtplib.SMTP(hostname="127.0.0.1", port=server.port, timeout=10) as client:
        _, reply = await client.sendmail(sender, [rcpt], raw)
    return reply


# --- payloads ---------------------------------------------------------------------------------

def dsn(to: str, results: list[tuple[str, str, str, str]], original_headers: str, *,
        subject: str = "Undelivered Mail Returned to Sender") -> bytes:
    """A multipart/report delivery-status message; results are (address, action, status, diagnostic)."""
    blocks = [
        f"Final-Recipient: rfc822; {addr}\r\nAction: {action}\r\nStatus: {status}\r\n"
        f"Remote-MTA: dns; mx.example.test\r\nDiagnostic-Code: smtp; {diag}\r\n"
        for addr, action, status, diag in results
    ]
    human = "\r\n".join(f"<{addr}>: {diag}" for addr, _, _, diag in results)
    return (
        "From: Mail Delivery System <MAILER-DAEMON@mx.example.test>\r\n"
        f"To: {to}\r\nSubject: {subject}\r\nDate: Mon, 06 Jan 2025 10:05:00 +0000\r\n"
        "Message-ID: <dsn.1@mx.example.test>\r\nAuto-Submitted: auto-replied\r\nMIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="BOUND"\r\n\r\n'
        "--BOUND\r\nContent-Type: text/plain\r\n\r\n"
        f"Your message could not be delivered.\r\n\r\n{human}\r\n\r\n"
        "--BOUND\r\nContent-Type: message/delivery-status\r\n\r\n"
        "Reporting-MTA: dns; mx.example.test\r\n\r\n" + "\r\n".join(blocks) + "\r\n"
        "--BOUND\r\nContent-Type: text/rfc822-headers\r\n\r\n"
        f"{original_headers}\r\n--BOUND--\r\n"
    ).encode()


def arf(to: str, recipient: str, original_headers: str, feedback_type: str = "abuse") -> bytes:
    """An RFC 5965 feedback report with the original's headers and body attached."""
    return (
        "From: Feedback Loop <fbl@isp.example.test>\r\n"
        f"To: {to}\r\nSubject: Abuse report\r\nDate: Mon, 06 Jan 2025 11:00:00 +0000\r\n"
        "Message-ID: <arf.1@isp.example.test>\r\nMIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=feedback-report; boundary="ARF"\r\n\r\n'
        "--ARF\r\nContent-Type: text/plain\r\n\r\nThis is an email abuse report.\r\n\r\n"
        "--ARF\r\nContent-Type: message/feedback-report\r\n\r\n"
        f"Feedback-Type: {feedback_type}\r\nUser-Agent: isp-fbl/2.0\r\nVersion: 1\r\n"
        f"Original-Rcpt-To: <{recipient}>\r\nReported-Domain: acme.test\r\n\r\n"
        "--ARF\r\nContent-Type: message/rfc822\r\nContent-Disposition: inline\r\n\r\n"
        f"{original_headers}\r\nHello\r\n\r\n--ARF--\r\n"
    ).encode()


def auto_reply(to: str, from_addr: str, in_reply_to: str | None = None) -> bytes:
    refs = f"In-Reply-To: {in_reply_to}\r\nReferences: {in_reply_to}\r\n" if in_reply_to else ""
    return (
        f"From: {from_addr}\r\nTo: {to}\r\nSubject: Out of office: Invoice 1001\r\n"
        "Date: Mon, 06 Jan 2025 10:01:00 +0000\r\nMessage-ID: <ooo.1@example.test>\r\n"
        f"{refs}Auto-Submitted: auto-replied\r\nPrecedence: auto_reply\r\n\r\n"
        "I am out of the office until Monday.\r\n"
    ).encode()
