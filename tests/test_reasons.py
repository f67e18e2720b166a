"""SMTP replies and DSN statuses → outcome, reason, hard: the table the delivery worker relies on."""

from __future__ import annotations

import pytest

from mailtrack.domain.reasons import (
    HARD_REASONS,
    REASONS,
    Classification,
    classify_reply,
    classify_status,
    find_enhanced,
)

# (code, text, outcome, reason)
REPLIES: list[tuple[int | None, str, str, str]] = [
    (250, "2.0.0 Ok: queued as 4F1A2B", "sent", "delivered"),
    (250, "OK id=1xYz", "sent", "delivered"),
    # 4xx: always deferred, whatever the text says
    (421, "4.7.0 [TSS04] Messages from 192.0.2.1 temporarily deferred due to user complaints", "deferred", "bad_reputation"),
    (450, "4.2.1 The user you are trying to contact is receiving mail at a rate that prevents additional messages", "deferred", "speeding"),
    (451, "4.3.0 Temporary lookup failure", "deferred", "system_error"),
    (452, "4.2.2 Mailbox full", "deferred", "mailbox_full"),
    (450, "4.1.1 <a@example.net>: Recipient address rejected: User unknown in virtual alias table", "deferred", "user_unknown"),
    (None, "connection timed out", "deferred", "network_error"),
    (None, "", "deferred", "network_error"),
    # 5xx about the address: hard
    (550, "5.1.1 <x@example.com>: Recipient address rejected: User unknown in local recipient table", "hard_bounce", "user_unknown"),
    (550, "5.1.1 The email account that you tried to reach does not exist.", "hard_bounce", "user_unknown"),
    (550, "Requested action not taken: mailbox unavailable", "hard_bounce", "user_unknown"),
    (550, "No such user here", "hard_bounce", "user_unknown"),
    (550, "5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient not found by SMTP address lookup", "hard_bounce", "user_unknown"),
    (554, "5.7.1 <x@example.ch>: Recipient address rejected: Access denied", "hard_bounce", "user_unknown"),
    (550, "5.1.2 Host unknown", "hard_bounce", "host_unknown"),
    (550, "Host or domain name not found. Name service error for name=example.invalid type=A", "hard_bounce", "host_unknown"),
    (556, "5.1.10 Recipient address has null MX", "hard_bounce", "not_accept"),
    (551, "5.1.6 recipient no longer on server: x@example.go.jp", "hard_bounce", "has_moved"),
    (553, "5.1.3 Bad recipient address syntax", "hard_bounce", "user_unknown"),
    # 5xx not about the address: soft
    (552, "5.2.2 <x@example.jp>... Mailbox Full", "soft_bounce", "mailbox_full"),
    (552, "5.3.4 Message too large", "soft_bounce", "message_too_big"),
    (552, "5.2.3 Message size exceeds fixed maximum message size (10485760)", "soft_bounce", "exceed_limit"),
    (554, "5.7.1 Client host rejected: blocked using zen.spamhaus.org", "soft_bounce", "blocked"),
    (550, "5.7.1 IP address blacklisted by recipient", "soft_bounce", "blocked"),
    (550, "5.7.1 Message content rejected, UBE, id=00000-22-225", "soft_bounce", "spam_detected"),
    (554, "5.6.0 This message has been scored as spam with a probability of more than 90%", "soft_bounce", "spam_detected"),
    (550, "5.7.26 Unauthenticated email from example.jp is not accepted due to domain's DMARC policy", "soft_bounce", "auth_failure"),
    (550, "5.7.509 Access denied, sending domain [EXAMPLE.JP] does not pass DMARC verification", "soft_bounce", "auth_failure"),
    (550, "5.7.25 The IP address sending this message does not have a PTR record setup", "soft_bounce", "require_ptr"),
    (554, "5.7.9 Message not accepted for policy reasons.", "soft_bounce", "policy_violation"),
    (550, "5.7.1 Relay access denied", "soft_bounce", "no_relaying"),
    (550, "Virus Detected; Content Rejected", "soft_bounce", "virus_detected"),
    (553, "5.1.8 Domain of sender address x@example.invalid does not exist", "soft_bounce", "rejected"),
    (550, "5.1.7 No such domain neko.example.com", "soft_bounce", "rejected"),
    (550, "5.1.1 <x@example.com> - 203.0.113.222 has sent to too many recipients this hour", "soft_bounce", "speeding"),
    (550, "5.1.1 RCP-P2 Refused due to recipient preferences", "soft_bounce", "filtered"),
    (525, "5.7.13 Disabled recipient address", "soft_bounce", "suspended"),
    (550, "5.7.1 Messages with multiple 550-5.7.1 addresses in From: header are not accepted.", "soft_bounce", "not_compliant_rfc"),
    (554, "5.4.6 Hop count exceeded - possible mail loop", "soft_bounce", "network_error"),
    (503, "5.5.1 Improper sequence of commands", "soft_bounce", "syntax_error"),
    (554, "Service currently unavailable", "soft_bounce", "system_error"),
    (550, "5.0.0 something nobody has seen before", "soft_bounce", "undefined"),
    # the reply code may come with the text only
    (None, "550 5.1.1 <x@example.com>: user unknown", "hard_bounce", "user_unknown"),
    (None, "552-5.2.2 The recipient's inbox is out of storage space", "soft_bounce", "mailbox_full"),
]  # fmt: skip


@pytest.mark.parametrize(("code", "text", "outcome", "reason"), REPLIES)
def test_classify_reply(code: int | None, text: str, outcome: str, reason: str) -> None:
    got = classify_reply(code, text)
    assert (got.outcome, got.reason) == (outcome, reason)
    assert got.hard == (outcome == "hard_bounce")
    assert got.reason in REASONS


def test_classification_carries_the_enhanced_code() -> None:
    assert classify_reply(550, "5.1.1 <x@example.com>: user unknown") == Classification(
        "hard_bounce", "user_unknown", "5.1.1", True
    )
    assert classify_reply(250, "Ok").enhanced is None


# (status, diagnostic, reason, hard)
STATUSES: list[tuple[str | None, str, str, bool]] = [
    ("5.1.1", "smtp; 550 5.1.1 <a@b.example>... User Unknown", "user_unknown", True),
    ("5.0.0", "smtp; 550 Unknown user a@b.example", "user_unknown", True),
    ("5.1.1", "smtp; 550 5.7.1 IP address blacklisted by recipient", "blocked", False),  # the reply's own code wins
    ("4.0.0", "DNS Error: DNS type 'mx' lookup of example.jp responded with code NXDOMAIN", "host_unknown", False),
    ("5.4.4", "Host or domain name not found", "host_unknown", True),
    ("4.4.7", "", "expired", False),
    ("5.2.2", "", "mailbox_full", False),
    ("5.3.0", "smtp; 554 5.3.0 Internal system error", "system_error", False),
    ("2.0.0", "smtp; 250 2.0.0 Ok", "delivered", False),
    (None, "", "undefined", False),
]  # fmt: skip


@pytest.mark.parametrize(("status", "diagnostic", "reason", "hard"), STATUSES)
def test_classify_status(status: str | None, diagnostic: str, reason: str, hard: bool) -> None:
    assert classify_status(status, diagnostic) == (reason, hard)


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("550 5.1.1 <x@y>", "5.1.1"),
        ("smtp; 550 #5.1.0 Address rejected.", "5.1.0"),
        ("Sorry (#5.4.4)", "5.4.4"),
        ("451 4.7.650 rate limited", "4.7.650"),
        ("connect to 192.0.2.1:25: Connection timed out", None),  # an IP address is no status code
        ("version 5.1.12.4 of the agent", None),
    ],
)
def test_find_enhanced(text: str, code: str | None) -> None:
    assert find_enhanced(text) == code


def test_vocabulary() -> None:
    assert HARD_REASONS == {"user_unknown", "host_unknown", "has_moved", "not_accept"}
    assert HARD_REASONS <= set(REASONS)
    assert len(set(REASONS)) == len(REASONS)
    for name in ("mailbox_full", "blocked", "spam_detected", "policy_violation", "expired", "feedback", "vacation"):
        assert name in REASONS
