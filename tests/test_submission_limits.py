"""Limits and refusals of the submission server, each answered with a code that says what is wrong."""

from __future__ import annotations

import asyncio
import smtplib
import socket
import time
from pathlib import Path

import pytest

from mailtrack.errors import ConfigError
from mailtrack.store import accounts
from mailtrack.store.db import Store
from mailtrack.submission.auth import FailureGuard
from mailtrack.submission.server import Limits, SubmissionServer
from tests.helpers.submission import SIM, running, submission_config
from tests.test_submission import client_tls

MSG = (f"From: ops@acme.test\r\nTo: success@{SIM}\r\nSubject: limits\r\n\r\nhello\r\n").encode()


def authed(port: int, key: str) -> smtplib.SMTP:
    s = smtplib.SMTP("127.0.0.1", port, timeout=30)
    s.starttls(context=client_tls())
    s.login("acme", key)
    return s


async def test_size_is_advertised_and_enforced(sqlite_store: Store, tmp_path: Path) -> None:
    def go(port: int, key: str) -> dict[str, object]:
        out: dict[str, object] = {}
        with authed(port, key) as s:
            out["size"] = s.esmtp_features.get("size")
            out["announced"] = s.mail("app@acme.test", ["SIZE=5000"])
            s.rset()
            s.mail("app@acme.test")
            s.rcpt(f"success@{SIM}")
            out["data"] = s.data(MSG + (b"x" * 70 + b"\r\n") * 70)
            s.rset()
            s.mail("app@acme.test")
            s.rcpt(f"success@{SIM}")
            out["small"] = s.data(MSG)
        return out

    async with running(tmp_path, sqlite_store, worker=False, max_message_size="2KB") as r:
        out = await asyncio.to_thread(go, r.port, r.key)
    assert out["size"] == "2048"
    assert out["announced"][0] == 552 and out["announced"][1].startswith(b"5.3.4")  # type: ignore[index]
    assert out["data"][0] == 552 and out["data"][1].startswith(b"5.3.4")  # type: ignore[index]
    assert out["small"][0] == 250  # type: ignore[index]


async def test_recipient_limit_bad_address_and_bad_headers(sqlite_store: Store, tmp_path: Path) -> None:
    def go(port: int, key: str) -> dict[str, object]:
        out: dict[str, object] = {}
        with authed(port, key) as s:
            s.mail("app@acme.test")
            out["bad_rcpt"] = s.rcpt("not an address@x")
            out["rcpts"] = [s.rcpt(f"u{i}@{SIM}")[0] for i in range(4)]
            out["bad_header"] = s.data(MSG.replace(b"Subject", b"X-Mailtrack-Source-Type: memo\r\nSubject"))
            s.mail("app@acme.test")
            s.rcpt(f"success@{SIM}")
            out["unknown_client"] = s.data(MSG.replace(b"Subject", b"X-Mailtrack-Client: nobody\r\nSubject"))
            out["smtputf8_advertised"] = s.has_extn("smtputf8")
            out["smtputf8"] = s.docmd("MAIL", "FROM:<app@acme.test> SMTPUTF8")
        return out

    async with running(tmp_path, sqlite_store, worker=False, submission_max_recipients="3") as r:
        out = await asyncio.to_thread(go, r.port, r.key)
    assert out["bad_rcpt"][0] == 553  # type: ignore[index]
    assert out["rcpts"] == [250, 250, 250, 452]
    code, text = out["bad_header"]  # type: ignore[misc]
    assert code == 554 and text.startswith(b"5.6.0 X-Mailtrack-Source-Type")
    code, text = out["unknown_client"]  # type: ignore[misc]
    assert code == 554 and b"X-Mailtrack-Client" in text and b"nobody" in text
    assert out["smtputf8_advertised"] is False and out["smtputf8"][0] == 555  # type: ignore[index]


async def test_repeated_auth_failures_are_slowed_then_locked_out(sqlite_store: Store, tmp_path: Path) -> None:
    guard = FailureGuard(slow_after=1, lock_after=3, base_delay=0.2, lockout=60)

    def go(port: int) -> list[object]:
        out: list[object] = []
        with smtplib.SMTP("127.0.0.1", port, timeout=30) as s:
            s.starttls(context=client_tls())
            s.ehlo()
            s.user, s.password = "acme", "mt_wrong"
            for _ in range(3):
                t0 = time.monotonic()
                try:
                    s.auth("PLAIN", s.auth_plain)  # one attempt (login() would try PLAIN and LOGIN)
                except smtplib.SMTPAuthenticationError as e:
                    out.append((e.smtp_code, time.monotonic() - t0))
                except smtplib.SMTPServerDisconnected:
                    out.append("disconnected")
        try:
            with smtplib.SMTP("127.0.0.1", port, timeout=30) as s:
                out.append("connected")
        except (smtplib.SMTPConnectError, smtplib.SMTPServerDisconnected) as e:
            out.append(getattr(e, "smtp_code", "refused"))
        return out

    async with running(tmp_path, sqlite_store, worker=False, guard=guard) as r:
        out = await asyncio.to_thread(go, r.port)
    assert out[0][0] == 535 and out[1][0] == 535  # type: ignore[index]
    assert out[1][1] >= 0.2  # type: ignore[index]  # the second failure waited
    assert out[2] == "disconnected" or out[2][0] == 421  # type: ignore[index]
    assert out[3] == 421


async def test_connections_per_ip_idle_timeout_and_no_relay_without_auth(sqlite_store: Store, tmp_path: Path) -> None:
    def go(port: int) -> dict[str, object]:
        out: dict[str, object] = {}
        first = smtplib.SMTP("127.0.0.1", port, timeout=30)
        first.ehlo()
        out["relay"] = first.mail("app@acme.test")[0]
        second = smtplib.SMTP("127.0.0.1", port, timeout=30)
        try:
            smtplib.SMTP("127.0.0.1", port, timeout=30)
        except smtplib.SMTPConnectError as e:
            out["third"] = e.smtp_code
        # idle: the server closes the connection by itself
        sock = second.sock
        assert sock is not None
        sock.settimeout(20)
        data = b""
        while chunk := sock.recv(4096):
            data += chunk
        out["idle"] = data
        first.close()
        second.close()
        return out

    limits = Limits(max_connections_per_ip=2, idle_timeout=5.0)
    async with running(tmp_path, sqlite_store, worker=False, limits=limits) as r:
        out = await asyncio.to_thread(go, r.port)
    assert out["third"] == 421
    assert out["relay"] == 530
    assert out["idle"].startswith(b"421")  # type: ignore[union-attr]


async def test_pipelined_plaintext_session_for_a_trusted_network(sqlite_store: Store, tmp_path: Path) -> None:
    """Trusted networks submit without AUTH (like Postfix's mynetworks); pipelined commands are answered in order."""
    def go(port: int) -> list[bytes]:
        with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
            f = sock.makefile("rb")
            f.readline()
            sock.sendall(b"EHLO client.test\r\n")
            ehlo = []
            while not (line := f.readline()).startswith(b"250 "):
                ehlo.append(line)
            assert b"250-PIPELINING\r\n" in ehlo
            sock.sendall(b"MAIL FROM:<app@acme.test>\r\nRCPT TO:<success@" + SIM.encode() + b">\r\n"
                         b"RCPT TO:<other@" + SIM.encode() + b">\r\nDATA\r\n")
            replies = [f.readline() for _ in range(4)]
            sock.sendall(MSG + b".\r\nQUIT\r\n")
            replies += [f.readline(), f.readline()]
        return replies

    async with running(tmp_path, sqlite_store, submission_trusted_networks="127.0.0.1/32=acme") as r:
        replies = await asyncio.to_thread(go, r.port)
        assert [x[:3] for x in replies] == [b"250", b"250", b"250", b"354", b"250", b"221"], replies
        email_id = replies[4].decode().split()[-1]
        statuses = await r.wait_statuses(email_id, lambda s: set(s.values()) == {"sent"})
        assert statuses == {f"success@{SIM}": "sent", f"other@{SIM}": "sent"}
        with sqlite_store.read() as conn:
            assert accounts.get_account(conn, r.account)["name"] == "acme"


async def test_a_port_in_use_is_a_clear_error_unless_sharing_is_asked_for(sqlite_store: Store, tmp_path: Path) -> None:
    async with running(tmp_path, sqlite_store, worker=False) as r:
        taken = submission_config(tmp_path, submission_smtp=f"127.0.0.1:{r.port}")
        with pytest.raises(ConfigError, match="MAILTRACK_SUBMISSION_SMTP"):
            await SubmissionServer(taken, sqlite_store, var_dir=tmp_path / "var").start()
    async with running(tmp_path, sqlite_store, worker=False, submission_reuse_port="true") as r:
        shared = SubmissionServer(submission_config(tmp_path, submission_smtp=f"127.0.0.1:{r.port}",
                                                    submission_reuse_port="true"), sqlite_store,
                                  var_dir=tmp_path / "var")
        await shared.start()
        assert shared.port == r.port
        await shared.stop()
