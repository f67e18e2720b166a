"""The weakness families of issue 14, one hand-written sample per rule (tests/bounce_samples).

Each row: the sample, the kind, and per recipient (address, reason, hard). ``hard`` None means
undetermined: neither code nor text decides, so the recipient is treated as soft.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from mailtrack.bounces import parse_message, report_to_json
from mailtrack.bounces.command import bounce

SAMPLES = Path(__file__).resolve().parent / "bounce_samples"

Row = tuple[str, str, list[tuple[str, str, bool | None]]]

FAMILIES: dict[str, list[Row]] = {
    # 1. text-only bounces from less common MTAs and gateways
    "text-only": [
        ("text-exim-continuation.eml", "bounce", [("carol@example.org", "user_unknown", True)]),
        ("text-exim-continuation-full.eml", "bounce", [("dave@example.org", "mailbox_full", False)]),
        ("text-exim-folded-rcpt.eml", "bounce", [("kurt@example.nl", "user_unknown", True)]),
        ("text-sendmail-host-unknown.eml", "bounce", [("lars@gone.example", "host_unknown", True)]),
        ("text-transcript-only.eml", "bounce", [("mona@example.com", "user_unknown", True)]),
        ("text-domino-de.eml", "bounce", [("erika@example.de", "user_unknown", True)]),
        ("text-domino-fr.eml", "bounce", [("jean@example.fr", "user_unknown", True)]),
        ("text-notes-mailbox-full.eml", "bounce", [("ivan@example.com", "mailbox_full", False)]),
        ("text-mcafee-variant.eml", "bounce", [("frank@example.com", "user_unknown", True)]),
        ("text-interscan-variant.eml", "bounce", [("gina@example.co.jp", "mailbox_full", False)]),
        ("text-dma-host-unknown.eml", "bounce", [("hana@nowhere.example", "host_unknown", True)]),
        ("text-mailing-list-loop.eml", "bounce", [("sales-team@lists.example.org", "network_error", False)]),
        ("text-mailing-list-not-member.eml", "bounce", [("staff@lists.example.org", "rejected", False)]),
        ("text-qmail-list-loop.eml", "bounce", [("news@lists.example.org", "network_error", False)]),
        # round 3: the templates of qmail, Yahoo, Sendmail, Exchange 2003, Office 365 and Gmail (text only),
        # DragonFly, InterScan, Domino / Notes (reason before the address), McAfee, Barracuda, Exim
        # continuation lines (the words after an x.1.1 code decide), Mailman holds and fml loop alerts
        ("r3-qmail-no-mailbox.eml", "bounce", [("anna@example.com", "user_unknown", True)]),
        ("r3-qmail-no-host.eml", "bounce", [("bert@gone.example", "host_unknown", True)]),
        ("r3-qmail-looping.eml", "bounce", [("cara@example.com", "network_error", False)]),
        ("r3-yahoo-no-account.eml", "bounce", [("dirk@yahoo.example", "user_unknown", True)]),
        ("r3-yahoo-disabled.eml", "bounce", [("edda@yahoo.example", "suspended", False)]),
        ("r3-sendmail-reason-line.eml", "bounce", [("fred@example.org", "user_unknown", True)]),
        ("r3-exchange2003-not-exist.eml", "bounce", [("greta@example.com", "user_unknown", True)]),
        ("r3-o365-text-not-found.eml", "bounce", [("hugo@example.com", "user_unknown", True)]),
        ("r3-gmail-text-not-found.eml", "bounce", [("ida@example.org", "user_unknown", True)]),
        ("r3-gmail-text-no-connect.eml", "bounce", [("jan@example.org", "network_error", False)]),
        ("r3-dma-mailbox-full.eml", "bounce", [("karl@example.com", "mailbox_full", False)]),
        ("r3-dma-user-unknown.eml", "bounce", [("lea@example.com", "user_unknown", True)]),
        ("r3-interscan-transcript.eml", "bounce", [("mika@example.co.jp", "user_unknown", True)]),
        ("r3-domino-en-not-listed.eml", "bounce", [("nils@example.com", "user_unknown", True)]),
        ("r3-notes-reason-first.eml", "bounce", [("aki@notes.example.jp", "user_unknown", True)]),
        ("r3-notes-hop-count.eml", "bounce", [("ben@notes.example.jp", "network_error", False)]),
        ("r3-mcafee-user-unknown.eml", "bounce", [("chie@example.co.jp", "user_unknown", True)]),
        ("r3-barracuda-unknown.eml", "bounce", [("otto@example.org", "user_unknown", True)]),
        ("r3-exim-continuation-spam.eml", "bounce", [("pia@example.org", "spam_detected", False)]),
        ("r3-exim-continuation-quota.eml", "bounce", [("eva@example.org", "mailbox_full", False)]),
        ("r3-exim-multiline-550.eml", "bounce", [("dan@example.org", "user_unknown", True)]),
        ("r3-exim-retry-timeout.eml", "bounce", [("quentin@example.org", "expired", False)]),
        ("r3-mailman-held.eml", "bounce", [("staff@lists.example.org", "on_hold", False)]),
        ("r3-fml-loop-alert.eml", "bounce", [("devel@lists.example.org", "network_error", False)]),
    ],
    # 2. non-English phrasings, every declared charset decoded (and JIS with none declared)
    "non-english": [
        ("ja-iso2022jp-unknown.eml", "bounce", [("taro@example.jp", "user_unknown", True)]),
        ("ja-shiftjis-full.eml", "bounce", [("hanako@example.ne.jp", "mailbox_full", False)]),
        ("ja-jis-no-charset.eml", "bounce", [("jiro@example.co.jp", "user_unknown", True)]),
        ("ja-dsn-shiftjis-full.eml", "bounce", [("saburo@example.jp", "mailbox_full", False)]),
        ("ja-dsn-eucjp-unknown.eml", "bounce", [("shiro@example.jp", "user_unknown", True)]),
        ("ru-dsn-utf8-disabled.eml", "bounce", [("olga@example.ru", "suspended", False)]),
        ("de-user-unknown.eml", "bounce", [("klaus@example.de", "user_unknown", True)]),
        ("de-dsn-not-in-directory.eml", "bounce", [("petra@example.at", "user_unknown", True)]),
        ("fr-mailbox-full.eml", "bounce", [("marie@example.fr", "mailbox_full", False)]),
        ("es-account-disabled.eml", "bounce", [("pablo@example.es", "suspended", False)]),
        ("pt-user-unknown.eml", "bounce", [("joao@example.com.br", "user_unknown", True)]),
        ("ru-user-unknown.eml", "bounce", [("ivanov@example.ru", "user_unknown", True)]),
        ("zh-user-unknown.eml", "bounce", [("wang@example.cn", "user_unknown", True)]),
        # round 3: ISO-2022-JP and Shift_JIS bodies with RFC 2047 subjects, Latin-1 quoted-printable and
        # 8bit, UTF-8 base64, KOI8-R, GB2312: "full", "unknown", "disabled", "not in the directory"
        ("r3-ja-iso2022jp-full.eml", "bounce", [("ryo@example.jp", "mailbox_full", False)]),
        ("r3-ja-sjis-unknown.eml", "bounce", [("sora@example.ne.jp", "user_unknown", True)]),
        ("r3-de-latin1-full.eml", "bounce", [("tanja@example.de", "mailbox_full", False)]),
        ("r3-de-not-in-directory.eml", "bounce", [("uwe@example.de", "user_unknown", True)]),
        ("r3-fr-latin1-unknown.eml", "bounce", [("ugo@example.fr", "user_unknown", True)]),
        ("r3-es-utf8-full.eml", "bounce", [("valeria@example.es", "mailbox_full", False)]),
        ("r3-pt-latin1-disabled.eml", "bounce", [("wagner@example.com.br", "suspended", False)]),
        ("r3-ru-koi8-full.eml", "bounce", [("yana@example.ru", "mailbox_full", False)]),
        ("r3-zh-gb2312-full.eml", "bounce", [("zhang@example.cn", "mailbox_full", False)]),
        # UTF-8 bytes under a Latin-1 label are read as UTF-8; an RFC 2047 subject in x-sjis (an alias) is decoded
        ("r3-de-utf8-labelled-latin1.eml", "bounce", [("joerg@example.de", "user_unknown", True)]),
        ("r3-ja-x-sjis-subject.eml", "bounce", [("kenji@example.ne.jp", "user_unknown", True)]),
    ],
    # 3. code and text together
    "code-and-text": [
        ("dsn-dns-try-again.eml", "bounce", [("lena@example.org", "network_error", False)]),
        ("dsn-malformed-ns-reply.eml", "bounce", [("nina@example.net", "network_error", False)]),
        ("dsn-host-not-found.eml", "bounce", [("max@nonexistent.example", "host_unknown", True)]),
        ("dsn-account-disabled.eml", "bounce", [("oscar@example.com", "suspended", False)]),
        ("dsn-gmail-disabled.eml", "bounce", [("ulla@example.com", "suspended", False)]),
        ("dsn-on-hold.eml", "bounce", [("paula@example.com", "on_hold", False)]),
        ("dsn-inactive-address.eml", "bounce", [("quinn@example.com", "user_unknown", True)]),
        ("dsn-user-not-exist.eml", "bounce", [("rosa@example.cn", "user_unknown", True)]),
        ("dsn-sender-domain.eml", "bounce", [("sam@example.net", "rejected", False)]),
        ("dsn-undetermined.eml", "bounce", [("tom@example.net", "undefined", None)]),
        ("dsn-try-again-later.eml", "bounce", [("uma@example.net", "undefined", None)]),
        # round 3: words over a misleading code (5.1.1 "account disabled"), temporary vs permanent
        # "Host not found", a code alone, RFC 5321's generic 550, blocks and relaying (soft), a
        # sender-side domain, and a bare "Rejected" (undetermined)
        ("r3-dsn-code-111-but-disabled.eml", "bounce", [("alma@example.com", "suspended", False)]),
        ("r3-dsn-host-not-found-temp.eml", "bounce", [("boris@example.net", "network_error", False)]),
        ("r3-dsn-permanent-host-not-found.eml", "bounce", [("celia@no-such-domain.example", "host_unknown", True)]),
        ("r3-dsn-inactive-user.eml", "bounce", [("dora@example.com", "user_unknown", True)]),
        ("r3-dsn-user-not-exist-cn.eml", "bounce", [("emil@example.cn", "user_unknown", True)]),
        ("r3-dsn-mailbox-full-code-only.eml", "bounce", [("fiona@example.com", "mailbox_full", False)]),
        ("r3-dsn-generic-550.eml", "bounce", [("gus@example.com", "user_unknown", True)]),
        ("r3-dsn-blocklist.eml", "bounce", [("hedy@example.com", "blocked", False)]),
        ("r3-dsn-relay-denied.eml", "bounce", [("kim@example.net", "no_relaying", False)]),
        ("r3-dsn-sender-domain-unknown.eml", "bounce", [("igor@example.net", "rejected", False)]),
        ("r3-dsn-nothing-said.eml", "bounce", [("jule@example.net", "undefined", None)]),
    ],
    # 4. wrapped reports: the innermost remote reply decides
    "wrapped": [
        ("dsn-wrapped-relay.eml", "bounce", [("vera@example.org", "user_unknown", True)]),
        ("dsn-wrapped-quota.eml", "bounce", [("walt@example.org", "mailbox_full", False)]),
        ("ses-wrapped-quota.eml", "bounce", [("xena@example.com", "mailbox_full", False)]),
        ("ses-undetermined.eml", "bounce", [("yuri@example.com", "undefined", None)]),
        ("ses-noemail.eml", "bounce", [("zoe@example.com", "user_unknown", True)]),
        # round 3: Office 365's "Remote server returned an error -> 552 5.2.2", a relay's 554 5.0.0 around 550 5.1.1
        ("r3-dsn-wrapped-o365.eml", "bounce", [("lisa@example.org", "mailbox_full", False)]),
        ("r3-dsn-wrapped-relay-unknown.eml", "bounce", [("mats@example.org", "user_unknown", True)]),
    ],
    # 5. recipient fallbacks, quoted local parts exact
    "recipients": [
        ("dsn-file-path-recipient.eml", "bounce", [("zed@example.net", "host_unknown", True)]),
        ("dsn-no-domain-xfailed.eml", "bounce", [("abby@example.org", "user_unknown", True)]),
        ("dsn-garbled-original-to.eml", "bounce", [("ben.lee@example.org", "user_unknown", True)]),
        ("dsn-quoted-local.eml", "bounce", [('"john..doe."@example.org', "user_unknown", True)]),
        ("text-quoted-local.eml", "bounce", [('"mary smith"@example.org', "user_unknown", True)]),
        # round 3: a bare local part in Final-Recipient, the transcript names the address; a quoted local part with a space
        ("r3-dsn-no-domain-transcript.eml", "bounce", [("nora@example.org", "user_unknown", True)]),
        ("r3-dsn-quoted-space.eml", "bounce", [('"olaf berg"@example.org', "user_unknown", True)]),
    ],
    # 6. kinds
    "kinds": [
        ("arf-opt-out.eml", "unsubscribe", [("cleo@isp.example.net", "unsubscribe", False)]),
        ("apple-unsubscribe.eml", "unsubscribe", [("dana@example.com", "unsubscribe", False)]),
        ("arf-no-recipient.eml", "complaint", []),
        ("pt-autoreply.eml", "autoreply", [("rita@example.com.br", "vacation", False)]),
    ],
}

ROWS = [pytest.param(*row, id=f"{family}:{row[0]}") for family, rows in FAMILIES.items() for row in rows]


@pytest.mark.parametrize(("name", "kind", "recipients"), ROWS)
def test_family_sample(name: str, kind: str, recipients: list[tuple[str, str, bool | None]]) -> None:
    report = parse_message((SAMPLES / name).read_bytes())
    assert report.kind == kind
    assert [(r.address, r.reason, r.hard) for r in report.recipients] == recipients


def test_every_family_sample_is_in_the_table() -> None:
    listed = {row[0] for rows in FAMILIES.values() for row in rows}
    older = {"arf-complaint.eml", "dsn-delayed.eml", "dsn-user-unknown.eml", "exim-mailbox-full.eml",
             "not-a-bounce.eml", "vacation.eml"}  # fmt: skip
    assert {p.name for p in SAMPLES.glob("*.eml")} - older == listed


def test_undetermined_is_low_confidence_and_null_in_json() -> None:
    report = parse_message((SAMPLES / "dsn-undetermined.eml").read_bytes())
    data = report_to_json(report)
    assert data["recipients"][0]["hard"] is None
    assert data["recipients"][0]["confidence"] == "low"
    assert '"hard": null' in json.dumps(data)


def test_a_decided_verdict_is_high_confidence() -> None:
    (r,) = parse_message((SAMPLES / "dsn-inactive-address.eml").read_bytes()).recipients
    assert (r.hard, r.confidence) == (True, "high")


def test_wrapped_report_takes_the_inner_code() -> None:
    (r,) = parse_message((SAMPLES / "dsn-wrapped-relay.eml").read_bytes()).recipients
    assert r.status == "5.1.1"


def test_the_fallback_recipient_says_where_it_came_from() -> None:
    (r,) = parse_message((SAMPLES / "dsn-file-path-recipient.eml").read_bytes()).recipients
    assert "/var/spool/mail/zed" in r.evidence["recipient"]


def test_unsubscribe_kind_in_cli_json() -> None:
    result = CliRunner().invoke(bounce, ["parse", "--json", str(SAMPLES / "arf-opt-out.eml")])
    assert result.exit_code == 0
    data = json.loads(result.stdout)
    assert (data["kind"], data["feedback_type"]) == ("unsubscribe", "opt-out")
