"""Signed delivery end to end: the worker signs once the DKIM record checks out, and an independent
verifier (Perl Mail::DKIM) accepts the captured message against exactly the record `mailtrack domain
show --json` told the user to publish, served by a real DNS server on loopback."""

from __future__ import annotations

import asyncio
import email
import json
import re
from collections.abc import Iterator
from email import policy
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from mailtrack import tokens
from mailtrack.cli import main
from mailtrack.delivery.worker import Worker
from mailtrack.store.db import Store
from tests.conftest import Api, make_config
from tests.helpers.capture import Capture, capture_server
from tests.helpers.dkim import needs_mail_dkim, verify
from tests.helpers.dns_server import Zone, dns_server
from tests.helpers.worker import run_until

FAST = {"retry_schedule": "0.2s", "max_queue_age": "5s", "smtp_timeout": "5s", "delivery_lease": "5s"}
LINKS = "".join(f'<p>Item {i}: <a href="https://acme.example/items/{i}">see item {i}</a></p>' for i in range(5))
HTML = f"<html><body><h1>Invoice INV-7</h1>{LINKS}<p>Thank you — Grüße.</p></body></html>"


@pytest.fixture
def dns() -> Iterator[tuple[Zone, str]]:
    with dns_server() as served:
        yield served


def cli(env: dict[str, str], *args: str) -> Any:
    r = CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)
    assert r.exit_code == 0, r.output
    return r.output


async def deliver(api: Api, store: Store, cap: Capture, n: int) -> list[Any]:
    """Submit one email to ``n`` recipients, run a fresh worker until all are captured."""
    before = len(cap.messages)
    body = {"from": "Acme Billing <billing@acme.example>", "to": [f"c{i}@x.test" for i in range(n)],
            "subject": "Invoice INV-7 — ready", "html": HTML, "text": "Invoice INV-7", "tracking": True,
            "source": {"type": "invoice", "reference": "INV-7"}}
    r = api.post("/api/v1/emails", body)
    assert r.status_code == 202, r.text
    await run_until(Worker(api.config, store), lambda: len(cap.messages) >= before + n)
    return cap.messages[before:]


@needs_mail_dkim
async def test_signing_starts_when_the_record_checks_out(any_store: Store, dns: tuple[Zone, str],
                                                        tmp_path: Path) -> None:
    zone, resolver = dns
    url = any_store.engine.url.render_as_string(hide_password=False)
    async with capture_server() as cap:
        config = make_config(tmp_path, database_url=url, dns_resolver=resolver,
                             transport_map=f"x.test=127.0.0.1:{cap.port}", **FAST)
        api = Api(any_store, config)
        env = {"MAILTRACK_DATABASE_URL": url, "MAILTRACK_SECRET_KEY": "test-secret",
               "MAILTRACK_DNS_RESOLVER": resolver, "MAILTRACK_BOUNCE_DOMAIN": config.bounce_domain}
        await asyncio.to_thread(cli, env, "domain", "add", "acme.example", "--account", "acme",
                                "--return-path", "bounces.acme.example")

        # not published yet: the mail goes out unsigned, with the bounce domain as return path
        [unsigned] = await deliver(api, any_store, cap, 1)
        assert b"DKIM-Signature" not in unsigned.data
        assert unsigned.mail_from.endswith("@" + config.bounce_domain)

        shown = json.loads(await asyncio.to_thread(cli, env, "domain", "show", "acme.example", "--json"))
        for rec in shown["records"]:
            zone.set(rec["name"], rec["type"], rec["value"])
        checked = json.loads(await asyncio.to_thread(cli, env, "domain", "check", "acme.example", "--json"))
        assert checked["signing"] is True, checked

        signed = await deliver(api, any_store, cap, 3)
    for m in signed:
        ok, report = await asyncio.to_thread(verify, m.data, resolver)
        assert ok, report
        assert f"pass d=acme.example s={checked['selector']}" in report
        msg = email.message_from_bytes(m.data, policy=policy.default)
        sig = re.sub(r"\s+", "", str(msg["DKIM-Signature"]))
        assert "c=relaxed/relaxed" in sig and "d=acme.example" in sig and "a=rsa-sha256" in sig
        h = sig.split("h=")[1].split(";")[0].split(":")
        assert h.count("from") == 2  # From over-signed
        assert {"to", "cc", "subject", "date", "message-id", "mime-version", "content-type", "list-unsubscribe",
                "list-unsubscribe-post", "feedback-id"} <= set(h)
        # the aligned return path: VERP at the domain's own return-path host
        rid = tokens.recipient_from_verp("test-secret", m.mail_from)
        assert rid is not None and m.mail_from.endswith("@bounces.acme.example")
        assert msg["Feedback-ID"] is not None and "billing" not in str(msg["Feedback-ID"])
        # the tracked HTML, personalised per recipient, is what was signed
        html = msg.get_body(("html",))
        assert html is not None and str(html.get_content()).count("/c/") == 5

    # the verifier is not a rubber stamp: a changed body or From fails
    tampered = signed[0].data.replace(b"Invoice INV-7</h1>", b"Invoice INV-8</h1>")
    assert tampered != signed[0].data
    ok, report = await asyncio.to_thread(verify, tampered, resolver)
    assert not ok and "fail" in report
    forged = signed[0].data.replace(b"From: Acme Billing", b"From: Evil Billing")
    ok, _ = await asyncio.to_thread(verify, forged, resolver)
    assert not ok


@needs_mail_dkim
async def test_batch_signing_in_worker_processes_verifies(sqlite_store: Store, dns: tuple[Zone, str],
                                                         tmp_path: Path) -> None:
    from mailtrack.compose import Composer, EmailSource
    from mailtrack.domains import service
    from mailtrack.domains.signer import DkimSigner
    from mailtrack.store import accounts

    zone, resolver = dns
    config = make_config(tmp_path, dns_resolver=resolver)
    with sqlite_store.write() as conn:
        acct = accounts.get_or_create_account(conn, "acme")
    view = service.add(sqlite_store, config, acct, "acme.example")
    for rec in view["records"]:
        zone.set(rec["name"], rec["type"], rec["value"])
    assert service.check(sqlite_store, config, "acme.example")["signing"]
    signer = DkimSigner(sqlite_store, config, processes=1, pool_threshold=4)
    composer = Composer(secret="s", bounce_domain="b.test", public_url="https://t.test")
    src = EmailSource(id="e1", from_addr="Acme <billing@acme.example>", subject="Invoice", to_header="c@x.test",
                      html=HTML, text="Invoice", tracking=True, unsubscribe=True, account_id=acct)
    unsigned = EmailSource(id="e2", from_addr="other@elsewhere.example", subject="x", text="y", account_id=acct)
    items = [(src, composer.compose(src, f"r{i:04d}", f"c{i}@x.test")) for i in range(12)]
    items.insert(5, (unsigned, composer.compose(unsigned, "r9999", "z@x.test")))
    try:
        out = await asyncio.to_thread(signer.sign_many, items)
    finally:
        signer.close()
    assert b"DKIM-Signature" not in out[5].data  # a From domain without a verified sending domain
    signed = out[:5] + out[6:]
    assert len({o.recipient_id for o in signed}) == 12
    for o, (_, before) in zip(signed, items[:5] + items[6:], strict=True):
        assert o.recipient_id == before.recipient_id and o.data.endswith(before.data)
        ok, report = await asyncio.to_thread(verify, o.data, resolver)
        assert ok, report


@needs_mail_dkim
async def test_batches_composed_and_signed_in_the_signing_processes_verify(any_store: Store, dns: tuple[Zone, str],
                                                                          tmp_path: Path) -> None:
    """A batch big enough for the signing processes: they compose and sign every recipient's message there;
    each one captured is that recipient's own, personalised, and verifies with Mail::DKIM."""
    from mailtrack.domains.signer import DkimSigner

    zone, resolver = dns
    url = any_store.engine.url.render_as_string(hide_password=False)
    async with capture_server() as cap:
        config = make_config(tmp_path, database_url=url, dns_resolver=resolver,
                             transport_map=f"x.test=127.0.0.1:{cap.port}", **FAST)
        api = Api(any_store, config)
        env = {"MAILTRACK_DATABASE_URL": url, "MAILTRACK_SECRET_KEY": "test-secret",
               "MAILTRACK_DNS_RESOLVER": resolver, "MAILTRACK_BOUNCE_DOMAIN": config.bounce_domain}
        await asyncio.to_thread(cli, env, "domain", "add", "acme.example", "--account", "acme")
        shown = json.loads(await asyncio.to_thread(cli, env, "domain", "show", "acme.example", "--json"))
        for rec in shown["records"]:
            zone.set(rec["name"], rec["type"], rec["value"])
        checked = json.loads(await asyncio.to_thread(cli, env, "domain", "check", "acme.example", "--json"))
        assert checked["signing"] is True, checked
        n = 12
        body = {"from": "Acme Billing <billing@acme.example>", "to": [f"c{i}@x.test" for i in range(n)],
                "subject": "Invoice INV-7 — ready", "html": HTML, "text": "Invoice INV-7", "tracking": True,
                "source": {"type": "invoice", "reference": "INV-7"}}
        r = api.post("/api/v1/emails", body)
        assert r.status_code == 202, r.text
        email_id = r.json()["id"]
        signer = DkimSigner(any_store, config, processes=2, pool_threshold=4)
        worker = Worker(config, any_store, signer=signer)

        def all_sent() -> bool:
            got = api.get(f"/api/v1/emails/{email_id}").json()
            return len(cap.messages) >= n and all(x["status"] == "sent" for x in got["recipients"])

        await run_until(worker, all_sent, timeout=120)
    assert signer.prepared_in_pool == n  # the path under test: none of them was composed in the service
    assert sorted(m.rcpt_tos[0] for m in cap.messages) == sorted(f"c{i}@x.test" for i in range(n))
    ids = set()
    for m in cap.messages:
        ok, report = await asyncio.to_thread(verify, m.data, resolver)
        assert ok, report
        assert f"pass d=acme.example s={checked['selector']}" in report
        msg = email.message_from_bytes(m.data, policy=policy.default)
        rid = tokens.recipient_from_verp("test-secret", m.mail_from)
        assert rid is not None
        assert rid in str(msg["Message-ID"])  # this recipient's own message, not another's
        html = msg.get_body(("html",))
        assert html is not None and str(html.get_content()).count("/c/") == 5
        ids.add(str(msg["Message-ID"]))
    assert len(ids) == n
