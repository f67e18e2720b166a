"""The messages a mailbox sends back: RFC 3464 DSN, RFC 5965 ARF report, RFC 3834 auto-reply."""

from __future__ import annotations

from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from email.utils import format_datetime, localtime, make_msgid

from . import replies
from .state import split_headers

# Above this size a complaint quotes only the original's headers (as real feedback loops often do).
ARF_FULL_MESSAGE_LIMIT = 256 * 1024

USER_AGENT = "mailtrack-simulator/1"


def build_dsn(*, original: bytes, recipient: str, envelope_sender: str, domain: str) -> EmailMessage:
    """A permanent-failure DSN (5.1.1 user unknown) for ``recipient``, sent after a 250."""
    now = format_datetime(localtime())
    report = _report_envelope(
        report_type="delivery-status",
        sender=f"Mail Delivery System <MAILER-DAEMON@{_mx(domain)}>",
        to=envelope_sender,
        subject="Undelivered Mail Returned to Sender",
        domain=domain,
    )
    report.attach(
        _text(
            f"This is the mail system at host {_mx(domain)}.\n\n"
            "Your message could not be delivered to one or more recipients.\n\n"
            f"<{recipient}>: user unknown\n"
        )
    )
    status = EmailMessage()
    status["Content-Type"] = "message/delivery-status"
    status.set_payload(
        [
            _fields(("Reporting-MTA", f"dns; {_mx(domain)}"), ("Arrival-Date", now)),
            _fields(
                ("Original-Recipient", f"rfc822;{recipient}"),
                ("Final-Recipient", f"rfc822;{recipient}"),
                ("Action", "failed"),
                ("Status", "5.1.1"),
                ("Remote-MTA", f"dns; {_mx(domain)}"),
                ("Diagnostic-Code", f"smtp; {replies.USER_UNKNOWN.format(address=recipient)}"),
                ("Last-Attempt-Date", now),
            ),
        ]
    )
    report.attach(status)
    report.attach(_headers_part(original))
    return report


def build_arf(*, original: bytes, recipient: str, envelope_sender: str, domain: str) -> EmailMessage:
    """An abuse complaint about the message ``recipient`` received (RFC 5965 feedback report)."""
    report = _report_envelope(
        report_type="feedback-report",
        sender=f"Feedback Loop <fbl@{domain}>",
        to=envelope_sender,
        subject="Abuse report: complaint from a recipient",
        domain=domain,
    )
    report.attach(_text(f"This is an email abuse report for a message delivered to\n<{recipient}>.\n"))
    feedback = EmailMessage()
    feedback["Content-Type"] = "message/feedback-report"
    feedback.set_payload(
        [
            _fields(
                ("Feedback-Type", "abuse"),
                ("User-Agent", USER_AGENT),
                ("Version", "1"),
                ("Original-Mail-From", f"<{envelope_sender}>"),
                ("Original-Rcpt-To", f"<{recipient}>"),
                ("Arrival-Date", format_datetime(localtime())),
                ("Reported-Domain", domain),
            )
        ]
    )
    report.attach(feedback)
    if len(original) > ARF_FULL_MESSAGE_LIMIT:
        report.attach(_headers_part(original))
    else:
        attached = EmailMessage()
        attached["Content-Type"] = "message/rfc822"
        attached["Content-Disposition"] = "inline"
        attached.set_payload([BytesParser(policy=policy.default).parsebytes(original)])
        report.attach(attached)
    return report


def build_auto_reply(*, original: bytes, recipient: str, envelope_sender: str, domain: str) -> EmailMessage:
    """An out-of-office reply from ``recipient`` (RFC 3834: Auto-Submitted, In-Reply-To)."""
    headers = BytesParser(policy=policy.default).parsebytes(split_headers(original) + b"\r\n\r\n")
    subject = str(headers.get("Subject", "") or "").strip()
    message_id = str(headers.get("Message-ID", "") or "").strip()
    reply = EmailMessage()
    reply["From"] = recipient
    reply["To"] = envelope_sender
    reply["Subject"] = f"Out of office: {subject}" if subject else "Out of office"
    reply["Date"] = format_datetime(localtime())
    reply["Message-ID"] = make_msgid(domain=domain)
    if message_id:
        reply["In-Reply-To"] = message_id
        reply["References"] = message_id
    reply["Auto-Submitted"] = "auto-replied"
    reply["X-Auto-Response-Suppress"] = "All"
    reply["Precedence"] = "auto_reply"
    reply.set_content("I am out of the office and will read your message when I am back.\n")
    return reply


def _report_envelope(*, report_type: str, sender: str, to: str, subject: str, domain: str) -> EmailMessage:
    report = EmailMessage()
    report["From"] = sender
    report["To"] = to
    report["Subject"] = subject
    report["Date"] = format_datetime(localtime())
    report["Message-ID"] = make_msgid(domain=domain)
    report["Auto-Submitted"] = "auto-replied"
    report["MIME-Version"] = "1.0"
    report["Content-Type"] = f"multipart/report; report-type={report_type}"
    return report


def _text(body: str) -> EmailMessage:
    part = EmailMessage()
    part.set_content(body)
    del part["MIME-Version"]
    return part


def _fields(*pairs: tuple[str, str]) -> EmailMessage:
    block = EmailMessage()
    for name, value in pairs:
        block[name] = value
    return block


def _headers_part(original: bytes) -> EmailMessage:
    part = EmailMessage()
    headers = split_headers(original).decode("utf-8", "replace").replace("\r\n", "\n")
    part.set_content(headers + "\n", subtype="rfc822-headers")
    del part["MIME-Version"]
    return part


def _mx(domain: str) -> str:
    return f"mx.{domain}"
