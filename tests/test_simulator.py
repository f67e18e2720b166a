"""The mailbox simulator, spoken to over real SMTP on loopback (aiosmtplib client, port 0)."""

from __future__ import annotations

import asyncio
import email
import re
import signal
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from email import policy
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import cast

import aiosmtplib
import pytest
from aiosmtpd.smtp import SMTP, Envelope, Session
from click.testing import CliRunner

from mailtrack.simulator import BROWSER_USER_AGENT, Behaviour, Simulator, behaviour_of, parse_hostport
from mailtrack.simulator.command import simulator_command
from mailtrack.simulator.followup import find_pixel_and_link

DOMAIN = "sim.mailtrack.test"
SENDER = "bounces+tok123@bounce.example"
SLOW = 0.3


def addr(local: str) -> str:
    return f"{local}@{DOMAIN}"


def make_message(to: str, subject: str = "Invoice 42", html: str | None = None, size: int = 0) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = "Acme Billing <billing@acme.example>"
    msg["To"] = to
    msg["Subject"] = subject
    msg["Message-ID"] = f"<{subject.replace(' ', '-')}.{time.monotonic_ns()}@acme.example>"
    msg.set_content("Hello,\n\nyour invoice is attached.\n" + "x" * size)
    if html is not None:
        msg.add_alternative(html, subtype="html")
    return msg


def parts(msg: EmailMessage) -> list[EmailMessage]:
    """The sub-parts of a multipart, or the blocks of a message/delivery-status or feedback-report."""
    payload = msg.get_payload()
    assert isinstance(payload, list)
    assert all(isinstance(part, EmailMessage) for part in payload)
    return cast(list[EmailMessage], payload)


def client(sim: Simulator) -> aiosmtplib.SMTP:
    return aiosmtplib.SMTP(hostname="127.0.0.1", port=sim.port, start_tls=False, timeout=10)


async def rcpt_reply(sim: Simulator, address: str) -> tuple[int, str]:
    async with client(sim) as smtp:
        await smtp.mail(SENDER)
        try:
            response = await smtp.rcpt(address)
        except aiosmtplib.SMTPRecipientRefused as refused:
            return refused.code, refused.message
        return response.code, response.message


async def deliver(sim: Simulator, msg: EmailMessage, sender: str = SENDER) -> aiosmtplib.SMTPResponse:
    async with client(sim) as smtp:
        await smtp.mail(sender)
        await smtp.rcpt(str(msg["To"]))
        return await smtp.data(msg.as_bytes())


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    async with Simulator(followup_delay=0.01, slow_delay=SLOW, max_size=20_000) as simulator:
        yield simulator


# --- a stand-in for mailtrack's inbound server, and for its tracking HTTP endpoints ---------------


class Receiver:
    def __init__(self) -> None:
        self.envelopes: list[Envelope] = []

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.envelopes.append(envelope)
        return "250 2.0.0 OK"

    def parsed(self, index: int = 0) -> EmailMessage:
        content = self.envelopes[index].original_content or b""
        return email.message_from_bytes(content, _class=EmailMessage, policy=policy.default)


@pytest.fixture
async def receiver() -> AsyncIterator[tuple[Receiver, int]]:
    loop = asyncio.get_running_loop()
    handler = Receiver()
    server = await loop.create_server(lambda: SMTP(handler, hostname="inbound.test", loop=loop), "127.0.0.1", 0)
    yield handler, server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()


@pytest.fixture
async def reporting_sim(receiver: tuple[Receiver, int]) -> AsyncIterator[Simulator]:
    async with Simulator(report_to=("127.0.0.1", receiver[1]), followup_delay=0.01) as simulator:
        yield simulator


class Hits:
    def __init__(self) -> None:
        self.requests: list[tuple[str, str]] = []
        self.lock = threading.Lock()


@pytest.fixture
def web() -> Iterator[tuple[Hits, str]]:
    hits = Hits()
    landing = "/landing"

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            with hits.lock:
                hits.requests.append((self.path, self.headers.get("User-Agent", "")))
            if self.path.startswith("/o/"):
                body = b"GIF89a"
                self.send_response(200)
                self.send_header("Content-Type", "image/gif")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            else:
                self.send_response(302)
                self.send_header("Location", landing)
                self.send_header("Content-Length", "0")
                self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield hits, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join()


# --- replies --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("local", "code", "enhanced", "text"),
    [
        ("bounce", 550, "5.1.1", "Recipient address rejected: User unknown"),
        ("mailbox-full", 552, "5.2.2", "Mailbox full"),
        ("blocked", 550, "5.7.1", "Message rejected due to local policy"),
        ("defer", 451, "4.7.1", "Try again later"),
    ],
)
async def test_refusals_at_rcpt(sim: Simulator, local: str, code: int, enhanced: str, text: str) -> None:
    reply_code, message = await rcpt_reply(sim, addr(local))
    assert reply_code == code
    assert message.startswith(enhanced + " ")
    assert text in message
    assert sim.state.counts[local] == 1
    assert sim.state.accepted_total == 0


@pytest.mark.parametrize("local", ["bounce", "mailbox-full", "defer"])
async def test_refusal_names_the_address(sim: Simulator, local: str) -> None:
    _code, message = await rcpt_reply(sim, addr(local + "+x7"))
    assert f"<{addr(local + '+x7')}>" in message


@pytest.mark.parametrize("local", ["success", "slow", "late-bounce", "complaint", "ooto", "open", "click"])
async def test_accepted_with_250_at_end_of_data(sim: Simulator, local: str) -> None:
    response = await deliver(sim, make_message(addr(local)))
    assert response.code == 250
    assert response.message.startswith("2.0.0 ")
    [received] = sim.state.messages
    assert received.rcpt_tos == (addr(local),)
    assert received.behaviours == (Behaviour(local),)
    assert received.mail_from == SENDER
    assert received.headers["Subject"] == "Invoice 42"


async def test_label_and_case_do_not_change_the_behaviour(sim: Simulator) -> None:
    assert (await rcpt_reply(sim, f"BOUNCE+invoice-42@{DOMAIN.upper()}"))[0] == 550
    assert (await rcpt_reply(sim, f"Mailbox-Full+a+b@{DOMAIN}"))[0] == 552
    assert (await rcpt_reply(sim, f"success+label@{DOMAIN}"))[0] == 250
    assert sim.state.counts["bounce"] == 1
    assert sim.state.counts["mailbox-full"] == 1


@pytest.mark.parametrize("local", ["jane.doe", "postmaster", "bounces", "+bounce", "bounce-x", "unknown+bounce"])
async def test_unknown_local_part_behaves_like_success(sim: Simulator, local: str) -> None:
    assert (await deliver(sim, make_message(addr(local)))).code == 250
    assert sim.state.counts["success"] == 1


@pytest.mark.parametrize(
    "address",
    [
        "bounce@example.com",
        f"success@{DOMAIN}.evil.example",
        f"success@mx.{DOMAIN}",
        f'"success@{DOMAIN}"@evil.example',
        "success",
    ],
)
async def test_other_domains_are_never_relayed(sim: Simulator, address: str) -> None:
    code, message = await rcpt_reply(sim, address)
    assert (code, message.split()[0]) == (550, "5.7.1")
    assert "Relaying denied" in message
    assert sim.state.counts["relay_denied"] == 1


async def test_refused_recipient_does_not_stop_the_others(sim: Simulator) -> None:
    msg = make_message(addr("success"))
    async with client(sim) as smtp:
        errors, _ = await smtp.sendmail(SENDER, [addr("success"), "x@example.com", addr("bounce")], msg.as_bytes())
    assert set(errors) == {"x@example.com", addr("bounce")}
    [received] = sim.state.messages
    assert received.rcpt_tos == (addr("success"),)


async def test_several_messages_rset_and_noop_on_one_connection(sim: Simulator) -> None:
    async with client(sim) as smtp:
        for n in range(3):
            msg = make_message(addr(f"success+{n}"), subject=f"Task {n}")
            errors, reply = await smtp.send_message(msg, sender=SENDER)
            assert errors == {} and reply.startswith("2.0.0")
        assert (await smtp.noop()).code == 250
        await smtp.mail(SENDER)
        assert (await smtp.rset()).code == 250
        await smtp.send_message(make_message(addr("success"), subject="Task 3"), sender=SENDER)
    assert [m.headers["Subject"] for m in sim.state.messages] == ["Task 0", "Task 1", "Task 2", "Task 3"]
    assert sim.state.accepted_total == 4


async def test_defer_is_always_451(sim: Simulator) -> None:
    for _ in range(4):
        assert (await rcpt_reply(sim, addr("defer")))[0] == 451


async def test_defer_then_accept_counts_attempts_per_address(sim: Simulator) -> None:
    first, other = addr("defer-then-accept+a"), addr("defer-then-accept+b")
    async with client(sim) as smtp:
        for _ in range(2):
            await smtp.mail(SENDER)
            with pytest.raises(aiosmtplib.SMTPRecipientRefused) as refused:
                await smtp.rcpt(first)
            assert (refused.value.code, refused.value.message.split()[0]) == (451, "4.7.1")
            await smtp.rset()
        errors, _ = await smtp.send_message(make_message(first), sender=SENDER)
        assert errors == {}
        errors, _ = await smtp.send_message(make_message(first), sender=SENDER)
        assert errors == {}
    assert (await rcpt_reply(sim, other))[0] == 451  # its own count
    assert [m.rcpt_tos for m in sim.state.messages] == [(first,), (first,)]


async def test_slow_answers_data_after_the_delay(sim: Simulator) -> None:
    started = time.monotonic()
    assert (await deliver(sim, make_message(addr("success")))).code == 250
    fast = time.monotonic() - started
    started = time.monotonic()
    assert (await deliver(sim, make_message(addr("slow+1")))).code == 250
    assert time.monotonic() - started >= SLOW > fast


async def test_disconnect_drops_the_connection_during_data(sim: Simulator) -> None:
    smtp = client(sim)
    await smtp.connect()
    await smtp.mail(SENDER)
    await smtp.rcpt(addr("disconnect"))
    with pytest.raises(aiosmtplib.SMTPServerDisconnected):
        await smtp.data(make_message(addr("disconnect")).as_bytes())
    assert not smtp.is_connected
    assert sim.state.accepted_total == 0
    assert sim.state.counts["disconnected"] == 1
    assert (await deliver(sim, make_message(addr("success")))).code == 250  # the server lives on


async def test_too_big_announced_with_size_is_refused_at_mail(sim: Simulator) -> None:
    async with client(sim) as smtp:
        with pytest.raises(aiosmtplib.SMTPSenderRefused) as refused:
            await smtp.send_message(make_message(addr("success"), size=30_000), sender=SENDER)
    assert refused.value.code == 552
    assert refused.value.message.startswith("5.3.4 ")


async def test_too_big_without_size_is_refused_after_data_and_the_session_goes_on(sim: Simulator) -> None:
    async with client(sim) as smtp:
        await smtp.mail(SENDER)  # no SIZE= parameter
        await smtp.rcpt(addr("success"))
        with pytest.raises(aiosmtplib.SMTPDataError) as refused:
            await smtp.data(make_message(addr("success"), size=30_000).as_bytes())
        assert (refused.value.code, refused.value.message.split()[0]) == (552, "5.3.4")
        errors, _ = await smtp.send_message(make_message(addr("success")), sender=SENDER)
        assert errors == {}
    assert sim.state.accepted_total == 1
    assert sim.state.counts["too_big"] == 1


async def test_bare_lf_dot_does_not_end_data(sim: Simulator) -> None:
    """SMTP smuggling: "\\n.\\n" must not end the message and start a second one."""
    reader, writer = await asyncio.open_connection("127.0.0.1", sim.port)
    smuggled = (
        f"Subject: outer\r\n\r\nhello\n.\nMAIL FROM:<evil@evil.example>\nRCPT TO:<{addr('success+smuggled')}>\n"
        "DATA\nSubject: smuggled\n\nboo\n.\n\r\n.\r\n"
    )
    script = ["EHLO client.test", f"MAIL FROM:<{SENDER}>", f"RCPT TO:<{addr('success')}>", "DATA"]
    await reader.readline()
    for line in script:
        writer.write(line.encode() + b"\r\n")
        while (await reader.readline())[3:4] == b"-":
            pass
    writer.write(smuggled.encode())
    assert (await reader.readline()).startswith(b"250 2.0.0")
    writer.write(b"QUIT\r\n")
    await reader.readline()
    writer.close()
    await writer.wait_closed()
    [received] = sim.state.messages
    assert received.rcpt_tos == (addr("success"),)
    assert received.headers["Subject"] == "outer"


async def test_many_messages_are_counted_and_the_list_is_capped() -> None:
    async with Simulator(keep=50) as simulator:

        async def one_connection(n: int) -> None:
            async with client(simulator) as smtp:
                for i in range(250):
                    await smtp.sendmail(SENDER, [addr(f"success+{n}-{i}")], b"Subject: bulk\r\n\r\nhi\r\n")

        await asyncio.gather(*(one_connection(n) for n in range(4)))
    assert simulator.state.accepted_total == 1000
    assert simulator.state.counts["success"] == 1000
    assert len(simulator.state.messages) == 50


async def test_stop_closes_open_sessions() -> None:
    simulator = Simulator()
    await simulator.start()
    assert simulator.port != 0
    smtp = client(simulator)
    await smtp.connect()
    await simulator.stop()
    with pytest.raises(aiosmtplib.SMTPServerDisconnected):
        await smtp.noop()
    with pytest.raises(OSError):
        await asyncio.open_connection("127.0.0.1", simulator.port)


# --- reports sent back by SMTP ---------------------------------------------------------------------


async def test_late_bounce_sends_a_dsn_to_the_envelope_sender(
    reporting_sim: Simulator, receiver: tuple[Receiver, int]
) -> None:
    inbound, _port = receiver
    original = make_message(addr("late-bounce+t1"), subject="Task sheet 7")
    assert (await deliver(reporting_sim, original)).code == 250
    await reporting_sim.drain()
    [envelope] = inbound.envelopes
    assert envelope.mail_from == "<>"
    assert envelope.rcpt_tos == [SENDER]
    dsn = inbound.parsed()
    assert dsn.get_content_type() == "multipart/report"
    assert dsn.get_param("report-type") == "delivery-status"
    human, status, headers = parts(dsn)
    assert human.get_content_type() == "text/plain"
    assert status.get_content_type() == "message/delivery-status"
    per_message, per_recipient = parts(status)
    assert per_message["Reporting-MTA"] == f"dns; mx.{DOMAIN}"
    assert per_recipient["Final-Recipient"] == f"rfc822;{addr('late-bounce+t1')}"
    assert per_recipient["Action"] == "failed"
    assert per_recipient["Status"] == "5.1.1"
    assert per_recipient["Diagnostic-Code"].startswith("smtp; 550 5.1.1 ")
    assert headers.get_content_type() == "text/rfc822-headers"
    assert f"Message-ID: {original['Message-ID']}" in headers.get_content()
    [result] = reporting_sim.state.followups
    assert (result.action, result.ok, result.target) == ("dsn", True, SENDER)


async def test_complaint_sends_an_arf_report(reporting_sim: Simulator, receiver: tuple[Receiver, int]) -> None:
    inbound, _port = receiver
    original = make_message(addr("complaint"), subject="Purchase order 9")
    await deliver(reporting_sim, original)
    await reporting_sim.drain()
    [envelope] = inbound.envelopes
    assert (envelope.mail_from, envelope.rcpt_tos) == ("<>", [SENDER])
    arf = inbound.parsed()
    assert arf.get_content_type() == "multipart/report"
    assert arf.get_param("report-type") == "feedback-report"
    _human, feedback, attached = parts(arf)
    assert feedback.get_content_type() == "message/feedback-report"
    [fields] = parts(feedback)
    assert fields["Feedback-Type"] == "abuse"
    assert fields["Version"] == "1"
    assert fields["Original-Rcpt-To"] == f"<{addr('complaint')}>"
    assert fields["Original-Mail-From"] == f"<{SENDER}>"
    assert attached.get_content_type() == "message/rfc822"
    [quoted] = parts(attached)
    assert quoted["Message-ID"] == original["Message-ID"]
    assert quoted["Subject"] == "Purchase order 9"


async def test_ooto_sends_an_auto_reply(reporting_sim: Simulator, receiver: tuple[Receiver, int]) -> None:
    inbound, _port = receiver
    original = make_message(addr("ooto"), subject="Schedule created")
    await deliver(reporting_sim, original)
    await reporting_sim.drain()
    [envelope] = inbound.envelopes
    assert (envelope.mail_from, envelope.rcpt_tos) == ("<>", [SENDER])
    reply = inbound.parsed()
    assert reply["Auto-Submitted"] == "auto-replied"
    assert reply["In-Reply-To"] == original["Message-ID"]
    assert reply["Subject"].startswith("Out of office")
    assert "Schedule created" in reply["Subject"]
    assert reply["From"] == addr("ooto")


async def test_no_report_for_a_null_sender(reporting_sim: Simulator, receiver: tuple[Receiver, int]) -> None:
    async with client(reporting_sim) as smtp:
        await smtp.sendmail("", [addr("late-bounce")], make_message(addr("late-bounce")).as_bytes())
    await reporting_sim.drain()
    assert receiver[0].envelopes == []
    [result] = reporting_sim.state.followups
    assert not result.ok and "null envelope sender" in result.detail


async def test_report_failure_is_recorded_and_the_server_lives_on() -> None:
    unused = await asyncio.get_running_loop().create_server(asyncio.Protocol, "127.0.0.1", 0)
    dead_port = unused.sockets[0].getsockname()[1]
    unused.close()
    await unused.wait_closed()
    async with Simulator(report_to=("127.0.0.1", dead_port), followup_delay=0) as simulator:
        await deliver(simulator, make_message(addr("late-bounce")))
        await simulator.drain()
        [result] = simulator.state.followups
        assert not result.ok and result.action == "dsn"
        assert (await deliver(simulator, make_message(addr("success")))).code == 250


# --- opens and clicks over HTTP --------------------------------------------------------------------


def tracked_html(base: str) -> str:
    return (
        f'<html><body><img src="{base}/static/logo.png" alt="Acme">'
        '<p>Your task sheet. <a href="mailto:help@acme.example">Help</a> '
        f'<a href="{base}/c/TOKEN?u=1&amp;v=2">Open the task</a> <a href="{base}/c/SECOND">2</a></p>'
        f'<img src="{base}/o/TOKEN.gif" width="1" height="1" alt=""></body></html>'
    )


async def test_open_loads_the_pixel_like_a_desktop_browser(sim: Simulator, web: tuple[Hits, str]) -> None:
    hits, base = web
    await deliver(sim, make_message(addr("open"), html=tracked_html(base)))
    await sim.drain()
    assert hits.requests == [("/o/TOKEN.gif", BROWSER_USER_AGENT)]
    assert "Windows NT" in BROWSER_USER_AGENT and "Chrome/" in BROWSER_USER_AGENT
    [result] = sim.state.followups
    assert (result.action, result.ok, result.detail) == ("open", True, "200")


async def test_click_opens_then_follows_the_first_link_once(sim: Simulator, web: tuple[Hits, str]) -> None:
    hits, base = web
    await deliver(sim, make_message(addr("click+t9"), html=tracked_html(base)))
    await sim.drain()
    assert hits.requests == [("/o/TOKEN.gif", BROWSER_USER_AGENT), ("/c/TOKEN?u=1&v=2", BROWSER_USER_AGENT)]
    assert [(r.action, r.detail) for r in sim.state.followups] == [("open", "200"), ("click", "302")]


async def test_open_without_pixel_is_recorded_not_raised(sim: Simulator, web: tuple[Hits, str]) -> None:
    hits, _base = web
    await deliver(sim, make_message(addr("open")))  # plain text only
    await sim.drain()
    assert hits.requests == []
    [result] = sim.state.followups
    assert not result.ok and "no tracking pixel" in result.detail


def test_find_pixel_and_link() -> None:
    html = (
        '<IMG SRC="https://cdn.example/o/logo.png?x=1"><a href="javascript:x()">no</a>'
        '<a name="top">anchor</a><a href=" HTTPS://t.example/c/abc ">yes</a>'
    )
    assert find_pixel_and_link(html) == ("https://cdn.example/o/logo.png?x=1", "HTTPS://t.example/c/abc")
    assert find_pixel_and_link('<img src="https://t.example/pixel.gif?o/=1">') == (None, None)
    assert find_pixel_and_link("not html at all <") == (None, None)


# --- the small pieces -------------------------------------------------------------------------------


def test_behaviour_of() -> None:
    assert behaviour_of(f"Late-Bounce+X@{DOMAIN.upper()}.", DOMAIN) is Behaviour.LATE_BOUNCE
    assert behaviour_of(f"whoever@{DOMAIN}", DOMAIN) is Behaviour.SUCCESS
    assert behaviour_of("bounce@other.test", DOMAIN) is None
    assert behaviour_of("no-at-sign", DOMAIN) is None


def test_parse_hostport() -> None:
    assert parse_hostport("127.0.0.1:2526") == ("127.0.0.1", 2526)
    assert parse_hostport("[::1]:25") == ("::1", 25)
    assert parse_hostport("localhost") == ("localhost", 25)
    for bad in (":25", "host:port", "host:70000"):
        with pytest.raises(ValueError, match=r"host|port"):
            parse_hostport(bad)


def test_command_help_documents_every_local_part() -> None:
    result = CliRunner().invoke(simulator_command, ["--help"])
    assert result.exit_code == 0
    for behaviour in Behaviour:
        assert f"  {behaviour.value} " in result.output
    for option in ("--listen", "--domain", "--report-to", "--followup-delay", "--slow-delay", "--max-size"):
        assert option in result.output


def test_command_rejects_a_bad_report_to() -> None:
    result = CliRunner().invoke(simulator_command, ["--report-to", "nowhere:port"])
    assert result.exit_code == 2
    assert "HOST:PORT" in result.output


async def test_cli_serves_until_sigterm() -> None:
    code = "from mailtrack.simulator.command import simulator_command; simulator_command(['--listen', '127.0.0.1:0'])"
    process = await asyncio.create_subprocess_exec(sys.executable, "-c", code, stderr=asyncio.subprocess.PIPE)
    assert process.stderr is not None
    try:
        line = await asyncio.wait_for(process.stderr.readline(), 20)
        match = re.search(rb"listening on 127\.0\.0\.1:(\d+) for @sim\.mailtrack\.test", line)
        assert match, line
        async with aiosmtplib.SMTP(hostname="127.0.0.1", port=int(match[1]), start_tls=False) as smtp:
            errors, _ = await smtp.sendmail(SENDER, [addr("success")], b"Subject: cli\r\n\r\nhi\r\n")
            assert errors == {}
    finally:
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), 20) == 0
