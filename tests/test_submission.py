"""SMTP submission with Python's smtplib: STARTTLS + AUTH, recipient kinds, metadata headers, per-recipient statuses."""

from __future__ import annotations

import asyncio
import smtplib
import ssl
import time
from email.message import EmailMessage
from pathlib import Path

from mailtrack.store.db import Store
from tests.helpers.submission import SIM, Running, running, settled

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4
PDF = b"%PDF-1.4\n" + bytes(range(256)) * 8


def client_tls() -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE  # the server's self-signed certificate
    return ctx


def rich_message() -> EmailMessage:
    """multipart/mixed(alternative(text, related(html, inline png)), pdf) with metadata headers and a Bcc."""
    msg = EmailMessage()
    msg["From"] = "Acme Ops <ops@acme.test>"
    msg["To"] = f"Alice <success@{SIM}>"
    msg["Cc"] = f"bounce@{SIM}"
    msg["Bcc"] = f"archive@{SIM}"
    msg["Subject"] = "Invoice 1001 — Überweisung"
    msg["X-Mailtrack-Source-Type"] = "invoice"
    msg["X-Mailtrack-Source-Reference"] = "INV-1001"
    msg["X-Mailtrack-Metadata-Order"] = "PO-7"
    msg["X-Custom"] = "kept"
    msg.set_content("Grüße, your invoice is attached.\n")
    msg.add_alternative('<p>Grüße, <a href="https://portal.acme.test/inv/1001">view online</a>'
                        '<img src="cid:logo"></p>', subtype="html")
    msg.get_payload()[1].add_related(PNG, "image", "png", cid="<logo>")
    msg.add_attachment(PDF, maintype="application", subtype="pdf", filename="invoice-1001.pdf")
    return msg


def send(port: int, user: str, key: str, msg: EmailMessage, rcpts: list[str]) -> tuple[int, bytes]:
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as s:
        s.starttls(context=client_tls())
        s.login(user, key)
        s.mail("app@acme.test")
        for r in rcpts:
            code, reply = s.rcpt(r)
            assert code == 250, reply
        return s.data(msg.as_bytes(policy=msg.policy.clone(linesep="\r\n")))


async def test_smtplib_starttls_auth_ends_in_each_recipients_status(any_store: Store, tmp_path: Path) -> None:
    async with running(tmp_path, any_store) as r:
        rcpts = [f"success@{SIM}", f"bounce@{SIM}", f"archive@{SIM}"]
        code, reply = await asyncio.to_thread(send, r.port, "acme", r.key, rich_message(), rcpts)
        assert code == 250 and reply.startswith(b"2.0.0 Ok: queued as "), reply
        email_id = reply.decode().rsplit(" ", 1)[1]
        statuses = await r.wait_statuses(email_id, settled)
        assert statuses == {f"success@{SIM}": "sent", f"bounce@{SIM}": "hard_bounce", f"archive@{SIM}": "sent"}
        view = r.view(email_id)
        assert {x["address"]: x["kind"] for x in view["recipients"]} == {
            f"success@{SIM}": "to", f"bounce@{SIM}": "cc", f"archive@{SIM}": "bcc"}
        assert view["source"]["type"] == "invoice" and view["source"]["reference"] == "INV-1001"
        assert view["subject"] == "Invoice 1001 — Überweisung"
        got = {m.rcpt_tos[0]: m.headers for m in r.sim.state.messages}
        assert set(got) == {f"success@{SIM}", f"archive@{SIM}"}  # one copy each; the bounce was refused at RCPT
        ids = {x["address"]: x["id"] for x in view["recipients"]}
        for address, headers in got.items():
            assert headers["X-Mailtrack-ID"].partition("-")[0] == ids[address]  # RID-MAC
            assert headers["Bcc"] is None and headers["X-Custom"] == "kept"
            assert not [k for k in headers if k.lower().startswith("x-mailtrack-") and k != "X-Mailtrack-ID"]
            assert headers["To"] == f"Alice <success@{SIM}>" and headers["Cc"] == f"bounce@{SIM}"
        assert {m.mail_from.split("@")[0].split("+")[0] for m in r.sim.state.messages} == {"bounces"}  # VERP


def _dialogue(port: int, key: str) -> dict[str, object]:
    out: dict[str, object] = {}
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as s:
        s.ehlo()
        out["plain_ehlo_auth"] = s.has_extn("auth")
        out["plain_auth"] = s.docmd("AUTH", "PLAIN AGFjbWUAeA==")
        out["mail_without_auth"] = s.mail("app@acme.test")
        s.rset()
        s.starttls(context=client_tls())
        s.ehlo()
        out["tls_ehlo_auth"] = s.esmtp_features.get("auth", "")
        out["size"] = s.esmtp_features.get("size", "")
        try:
            s.login("acme", "mt_wrong")
        except smtplib.SMTPAuthenticationError as e:
            out["wrong_key"] = (e.smtp_code, e.smtp_error)
        try:
            s.login("other-account", key)
        except smtplib.SMTPAuthenticationError as e:
            out["wrong_account"] = (e.smtp_code, e.smtp_error)
    return out


async def test_auth_only_after_tls_and_only_with_the_accounts_key(any_store: Store, tmp_path: Path) -> None:
    async with running(tmp_path, any_store, worker=False) as r:
        out = await asyncio.to_thread(_dialogue, r.port, r.key)
    assert out["plain_ehlo_auth"] is False
    assert out["plain_auth"][0] == 538  # type: ignore[index]
    code, text = out["mail_without_auth"]  # type: ignore[misc]
    assert code == 530 and text.startswith(b"5.7.0")
    assert set(str(out["tls_ehlo_auth"]).split()) == {"PLAIN", "LOGIN"}
    assert out["size"] == str(25 * 1024 * 1024)
    assert out["wrong_key"][0] == 535 and out["wrong_key"][1].startswith(b"5.7.8")  # type: ignore[index]
    assert out["wrong_account"][0] == 535  # type: ignore[index]


async def test_implicit_tls_with_auth_login(any_store: Store, tmp_path: Path) -> None:
    def go(port: int, key: str) -> tuple[int, bytes]:
        msg = EmailMessage()
        msg["From"], msg["To"], msg["Subject"] = "ops@acme.test", f"success@{SIM}", "Implicit TLS"
        msg.set_content("hello")
        with smtplib.SMTP_SSL("127.0.0.1", port, context=client_tls(), timeout=30) as s:
            s.ehlo()
            s.user, s.password = "acme", key
            s.auth("LOGIN", s.auth_login)
            s.mail("app@acme.test")
            s.rcpt(f"success@{SIM}")
            return s.data(msg.as_bytes())

    async with running(tmp_path, any_store, submission_smtp="", submissions_smtp="127.0.0.1:0") as r:
        assert r.server.port is None and r.server.tls_port is not None
        code, reply = await asyncio.to_thread(go, r.server.tls_port, r.key)
        assert code == 250, reply
        email_id = reply.decode().rsplit(" ", 1)[1]
        assert await r.wait_statuses(email_id, settled) == {f"success@{SIM}": "sent"}


async def test_self_signed_certificate_is_made_once(sqlite_store: Store, tmp_path: Path) -> None:
    async with running(tmp_path, sqlite_store, worker=False):
        cert = (tmp_path / "var" / "submission-cert.pem").read_bytes()
    async with running(tmp_path, sqlite_store, worker=False):
        assert (tmp_path / "var" / "submission-cert.pem").read_bytes() == cert
    assert oct((tmp_path / "var" / "submission-key.pem").stat().st_mode & 0o777) == "0o600"


async def test_tracking_header_off_and_a_text_only_message(sqlite_store: Store, tmp_path: Path) -> None:
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = "ops@acme.test", f"success@{SIM}", "Untracked"
    msg["X-Mailtrack-Tracking"] = "off"
    msg.set_content("plain text")
    async with running(tmp_path, sqlite_store) as r:
        code, reply = await asyncio.to_thread(send, r.port, "acme", r.key, msg, [f"success@{SIM}"])
        assert code == 250
        email_id = reply.decode().rsplit(" ", 1)[1]
        await r.wait_statuses(email_id, settled)
        assert r.view(email_id)["tracking"] is False


def rcpts_of(r: Running, email_id: str) -> dict[str, str]:
    return {x["address"]: x["kind"] for x in r.view(email_id)["recipients"]}


async def test_opens_and_clicks_of_a_submitted_html_message_are_recorded(sqlite_store: Store, tmp_path: Path) -> None:
    """The simulator's 'click' recipient loads the pixel and follows the first link of its own copy."""
    import uvicorn

    from mailtrack.app import create_app
    from tests.conftest import make_config

    app = create_app(make_config(tmp_path), sqlite_store)
    http = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="off",
                                         access_log=False))
    serving = asyncio.create_task(http.serve())
    try:
        deadline = time.monotonic() + 15
        while not http.started:
            assert time.monotonic() < deadline and not serving.done(), "uvicorn did not start"
            await asyncio.sleep(0.02)
        port = http.servers[0].sockets[0].getsockname()[1]
        msg = rich_message()
        msg.replace_header("To", f"click@{SIM}")
        del msg["Cc"], msg["Bcc"]
        async with running(tmp_path, sqlite_store, public_url=f"http://127.0.0.1:{port}") as r:
            code, reply = await asyncio.to_thread(send, r.port, "acme", r.key, msg, [f"click@{SIM}", f"success@{SIM}"])
            assert code == 250, reply
            email_id = reply.decode().rsplit(" ", 1)[1]
            deadline = time.monotonic() + 30
            while True:
                rows = {x["address"]: x for x in (await asyncio.to_thread(r.view, email_id))["recipients"]}
                if rows[f"click@{SIM}"]["clicks"]["total"] >= 1 and rows[f"click@{SIM}"]["opens"]["total"] >= 1:
                    break
                assert time.monotonic() < deadline, (rows, list(r.sim.state.followups))
                await asyncio.sleep(0.1)
            assert rows[f"success@{SIM}"]["opens"]["total"] == 0  # attributed to the one who opened
            assert [(f.action, f.detail) for f in r.sim.state.followups] == [("open", "200"), ("click", "302")]
    finally:
        http.should_exit = True
        await asyncio.wait_for(serving, 15)
