"""Issue 10 §1: bounces and complaints forged with a bare recipient id change nothing.

The attacker is a recipient (Bob) of an email also sent to Alice: he knows the ids mailtrack uses
(recipient id, email id, bounce domain) from his own copy and its tracking URLs, and sends reports
about Alice to the inbound server. Only ids carrying mailtrack's MAC correlate.
"""

from __future__ import annotations

import email
from email import policy
from pathlib import Path

import pytest

from mailtrack import tokens
from mailtrack.compose import Composer, EmailSource
from mailtrack.config import Config
from mailtrack.store import suppressions
from mailtrack.store.db import Store
from tests.test_inbound_payloads import (
    Sent,
    arf,
    deliver,
    dsn,
    inbound_config,
    inbound_rows,
    running,
    sent_email,
    status_of,
    timeline_of,
)

ALICE = "alice@example.test"
BOB = "bob@example.test"
UNKNOWN = [(ALICE, "failed", "5.1.1", "550 5.1.1 <alice@example.test>: user unknown")]


def _forged_headers(config: Config, sent: Sent, *, message_id: str, mailtrack_id: str | None) -> str:
    lines = ["From: Acme Ops <ops@acme.test>", f"To: {ALICE}", "Subject: Invoice 1001", f"Message-ID: {message_id}"]
    if mailtrack_id is not None:
        lines.append(f"X-Mailtrack-ID: {mailtrack_id}")
    return "\r\n".join(lines) + "\r\n"


def _suppressed(store: Store, sent: Sent, address: str) -> bool:
    with store.read() as conn:
        rows, _ = suppressions.search(conn, sent.account_id, address)
    return any(r["address"] == address for r in rows)


def _forgeries(config: Config, sent: Sent) -> list[tuple[str, str | None]]:
    """(Message-ID, X-Mailtrack-ID) an outsider can build for Alice without the secret."""
    rid, bob_rid, eid, dom = sent.rids[ALICE], sent.rids[BOB], sent.email_id, config.bounce_domain
    bob_mac = tokens.message_id(config.secret_key, bob_rid, eid, dom).split(".")[2].split("@")[0]
    bob_xid_mac = tokens.mailtrack_id(config.secret_key, bob_rid).rpartition("-")[2]
    return [
        (f"<{rid}.{eid}@{dom}>", rid),  # the old, unsigned form
        (f"<{rid}.{eid}@{dom}>", None),
        (f"<{rid}.{eid}.{'0' * 32}@{dom}>", f"{rid}-{'0' * 32}"),  # a made-up MAC
        (f"<{rid}.{eid}.{bob_mac}@{dom}>", f"{rid}-{bob_xid_mac}"),  # Bob's own MACs moved onto Alice's id
    ]


@pytest.mark.parametrize("to", ["postmaster", "verp-wrong-token"])
async def test_forged_dsn_with_a_bare_recipient_id_is_an_orphan(any_store: Store, tmp_path: Path, to: str) -> None:
    config = inbound_config(tmp_path)
    sent = sent_email(any_store, ALICE, BOB)
    rcpt = (f"postmaster@{config.bounce_domain}" if to == "postmaster"
            else f"bounces+{sent.rids[ALICE]}-{'f' * 32}@{config.bounce_domain}")
    forgeries = _forgeries(config, sent)
    async with running(config, any_store) as server:
        for mid, xid in forgeries:
            raw = dsn(rcpt, UNKNOWN, _forged_headers(config, sent, message_id=mid, mailtrack_id=xid))
            assert (await deliver(server, raw, rcpt)).startswith("2.0.0")  # accepted, then kept
        await server.drain()
    rows = inbound_rows(any_store)
    assert [(r["state"], r["recipient_id"]) for r in rows] == [("orphan", None)] * len(forgeries)
    assert status_of(any_store, sent, ALICE)["status"] == "sent"
    assert timeline_of(any_store, sent, ALICE) == ["creating", "spooled", "sent"]
    assert not _suppressed(any_store, sent, ALICE)


async def test_forged_arf_complaint_with_a_bare_recipient_id_is_an_orphan(any_store: Store, tmp_path: Path) -> None:
    config = inbound_config(tmp_path)
    sent = sent_email(any_store, ALICE, BOB)
    fbl = f"fbl@{config.bounce_domain}"
    forgeries = _forgeries(config, sent)
    async with running(config, any_store) as server:
        for mid, xid in forgeries:
            raw = arf(fbl, ALICE, _forged_headers(config, sent, message_id=mid, mailtrack_id=xid))
            await deliver(server, raw, fbl, sender="anyone@attacker.test")
        await server.drain()
    assert [r["state"] for r in inbound_rows(any_store)] == ["orphan"] * len(forgeries)
    alice = status_of(any_store, sent, ALICE)
    assert (alice["status"], alice["complained"]) == ("sent", False)
    assert "complained" not in timeline_of(any_store, sent, ALICE)
    assert not _suppressed(any_store, sent, ALICE)


def _sent_headers(config: Config, sent: Sent, address: str) -> str:
    """The header block of the message mailtrack really composed for ``address``."""
    composer = Composer(secret=config.secret_key, bounce_domain=config.bounce_domain, public_url=config.public_url)
    src = EmailSource(id=sent.email_id, from_addr="Acme Ops <ops@acme.test>", subject="Invoice 1001",
                      to_header=f"{ALICE}, {BOB}", text="Hello")
    out = composer.compose(src, sent.rids[address], address)
    head = out.data.split(b"\r\n\r\n", 1)[0].decode()
    parsed = email.message_from_string(head + "\r\n\r\n", policy=policy.default)
    assert tokens.parse_message_id(config.secret_key, str(parsed["Message-ID"]), config.bounce_domain)
    return head + "\r\n"


async def test_feedback_loop_report_keeping_only_the_message_id_still_works(any_store: Store, tmp_path: Path) -> None:
    config = inbound_config(tmp_path)
    sent = sent_email(any_store, ALICE, BOB)
    # feedback loops strip the return path and often our own headers; the Message-ID stays
    head = "\r\n".join(line for line in _sent_headers(config, sent, ALICE).split("\r\n")
                       if not line.lower().startswith(("x-mailtrack-id", "return-path")))
    fbl = f"fbl@{config.bounce_domain}"
    async with running(config, any_store) as server:
        await deliver(server, arf(fbl, ALICE, head + "\r\n"), fbl, sender="fbl@isp.example.test")
        await server.drain()
    [row] = inbound_rows(any_store)
    assert (row["state"], row["recipient_id"]) == ("applied", sent.rids[ALICE])
    assert row["summary"]["correlated_by"] == "message_id"
    assert status_of(any_store, sent, ALICE)["complained"] is True
    assert status_of(any_store, sent, BOB)["complained"] is False
    assert _suppressed(any_store, sent, ALICE)


async def test_dsn_quoting_the_genuine_headers_still_bounces(any_store: Store, tmp_path: Path) -> None:
    config = inbound_config(tmp_path)
    sent = sent_email(any_store, ALICE, BOB)
    postmaster = f"postmaster@{config.bounce_domain}"
    async with running(config, any_store) as server:
        await deliver(server, dsn(postmaster, UNKNOWN, _sent_headers(config, sent, ALICE)), postmaster)
        await server.drain()
    [row] = inbound_rows(any_store)
    assert row["summary"]["correlated_by"] == "mailtrack_id"
    assert status_of(any_store, sent, ALICE)["status"] == "hard_bounce"
    assert status_of(any_store, sent, BOB)["status"] == "sent"
