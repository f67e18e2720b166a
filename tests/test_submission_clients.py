"""Real clients through SMTP submission: swaks (STARTTLS + AUTH) and Postfix as a null client relaying with SASL."""

from __future__ import annotations

import asyncio
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from mailtrack.store.db import Store
from tests.helpers import postfix
from tests.helpers.submission import SIM, running, settled

SWAKS = shutil.which("swaks")


def swaks(port: int, key: str, auth: str, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [SWAKS or "swaks", "--server", f"127.0.0.1:{port}", "--tls", "--auth", auth, "--auth-user", "acme",
         "--auth-password", key, "--from", "app@acme.test", *extra],
        capture_output=True, text=True, timeout=60,
    )


def queued_id(transcript: str) -> str:
    found = re.search(r"<~\s+250 2\.0\.0 Ok: queued as (\S+)", transcript)
    assert found, transcript
    return found.group(1)


@pytest.mark.skipif(SWAKS is None, reason="swaks not installed (scripts/system-deps.sh installs it)")
async def test_swaks_starttls_auth_plain_and_login(any_store: Store, tmp_path: Path) -> None:
    async with running(tmp_path, any_store) as r:
        plain = await asyncio.to_thread(
            swaks, r.port, r.key, "PLAIN", "--to", f"success@{SIM},bounce@{SIM}",
            "--header", "To: Dispatch <dispatch@acme.test>", "--header", f"Cc: bounce@{SIM}", "--header", "X-Mailtrack-Source-Type: task_sheet",
            "--header", "X-Mailtrack-Source-Reference: T-1042", "--header", "Subject: Task sheet T-1042",
            "--body", "Your technician arrives at 9:00.")
        assert plain.returncode == 0, plain.stdout + plain.stderr
        email_id = queued_id(plain.stdout)
        assert await r.wait_statuses(email_id, settled) == {f"success@{SIM}": "sent", f"bounce@{SIM}": "hard_bounce"}
        view = r.view(email_id)
        assert {x["address"]: x["kind"] for x in view["recipients"]} == {f"success@{SIM}": "bcc", f"bounce@{SIM}": "cc"}
        assert view["source"]["reference"] == "T-1042"

        login = await asyncio.to_thread(swaks, r.port, r.key, "LOGIN", "--to", f"success+2@{SIM}",
                                        "--attach", "@" + str(Path(__file__)))
        assert login.returncode == 0, login.stdout + login.stderr
        assert await r.wait_statuses(queued_id(login.stdout), settled) == {f"success+2@{SIM}": "sent"}

        wrong = await asyncio.to_thread(swaks, r.port, "mt_not-a-key", "PLAIN", "--to", f"success@{SIM}")
        assert wrong.returncode != 0 and "535 5.7.8" in wrong.stdout


@pytest.mark.skipif(not postfix.available(), reason="postfix not installed or not root (scripts/system-deps.sh)")
async def test_postfix_null_client_relays_with_sasl_over_starttls(sqlite_store: Store, tmp_path: Path) -> None:
    raw = (f"From: Acme Ops <ops@acme.test>\r\nTo: success@{SIM}\r\nCc: bounce@{SIM}\r\n"
           f"Subject: Purchase order PO-7\r\nX-Mailtrack-Source-Type: purchase_order\r\n"
           f"X-Mailtrack-Source-Reference: PO-7\r\n\r\nPlease deliver 40 units.\r\n").encode()
    async with running(tmp_path, sqlite_store) as r:
        with postfix.null_client(("127.0.0.1", r.port), "acme", r.key) as pf:
            await asyncio.to_thread(pf.sendmail, raw, "app@app.test",
                                    [f"success@{SIM}", f"bounce@{SIM}", f"archive@{SIM}"])
            deadline = time.monotonic() + 60
            while not pf.relayed():
                assert time.monotonic() < deadline, pf.log()[-3000:]
                await asyncio.sleep(0.2)
            log = pf.log()
        # one SMTP transaction for the three recipients: Postfix logs the same reply for each
        [reply] = set(re.findall(r"status=sent \((250 [^)]*)\)", log))
        assert reply.startswith("250 2.0.0 Ok: queued as "), log
        assert "TLS connection established to 127.0.0.1" in log, log
        email_id = reply.rsplit(" ", 1)[1]
        statuses = await r.wait_statuses(email_id, settled)
        assert statuses == {f"success@{SIM}": "sent", f"bounce@{SIM}": "hard_bounce", f"archive@{SIM}": "sent"}
        assert {x["address"]: x["kind"] for x in r.view(email_id)["recipients"]} == {
            f"success@{SIM}": "to", f"bounce@{SIM}": "cc", f"archive@{SIM}": "bcc"}


def test_mailtrack_serve_role_submission_on_uvloop(tmp_path: Path) -> None:
    """The command line wiring: `mailtrack serve --role submission` alone, STARTTLS on the CLI's uvloop."""
    import os
    import smtplib
    import sys
    from email.message import EmailMessage

    from mailtrack.store import accounts, queries
    from mailtrack.store.db import open_store
    from tests.test_submission import client_tls

    db = f"sqlite:///{tmp_path}/db.sqlite"
    store = open_store(db)
    with store.write() as conn:
        acct = accounts.get_or_create_account(conn, "acme")
        key = accounts.create_api_key(conn, acct)
    env = {**os.environ, "MAILTRACK_DATABASE_URL": db, "MAILTRACK_SECRET_KEY": "test-secret",
           "MAILTRACK_SUBMISSION_SMTP": "127.0.0.1:0", "MAILTRACK_LOG_LEVEL": "info"}
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([str(Path(sys.executable).parent / "mailtrack"), "serve", "--role", "submission"],
                                env=env, cwd=tmp_path, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while not (found := re.search(r"SMTP submission \(STARTTLS\) on 127\.0\.0\.1:(\d+)", log.read_text())):
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        msg = EmailMessage()
        msg["From"], msg["To"], msg["Subject"] = "ops@acme.test", "customer@example.test", "via the CLI"
        msg.set_content("hello")
        with smtplib.SMTP("127.0.0.1", int(found.group(1)), timeout=30) as s:
            s.starttls(context=client_tls())
            s.login("acme", key)
            s.mail("app@acme.test")
            s.rcpt("customer@example.test")
            code, reply = s.data(msg.as_bytes())
        assert code == 250, reply
        with store.read() as conn:
            view = queries.get_email(conn, acct, reply.decode().rsplit(" ", 1)[1])
        assert [(r["address"], r["status"]) for r in view["recipients"]] == [("customer@example.test", "spooled")]
        assert "self-signed certificate" in log.read_text() and (tmp_path / "var" / "submission-cert.pem").exists()
    finally:
        proc.terminate()
        proc.wait(30)
        store.dispose()
