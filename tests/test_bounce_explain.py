"""``mailtrack bounce explain FILE``: the detector, and the lines that decided recipient, code and verdict."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from mailtrack.bounces.command import bounce

SAMPLES = Path(__file__).resolve().parent / "bounce_samples"


def _explain(name: str) -> str:
    result = CliRunner().invoke(bounce, ["explain", str(SAMPLES / name)])
    assert result.exit_code == 0, result.output
    return result.stdout


def test_explain_names_the_detector_and_the_deciding_phrase() -> None:
    out = _explain("dsn-dns-try-again.eml")
    assert "detector: dsn" in out
    assert "found: DSN field Final-Recipient: rfc822; lena@example.org" in out
    assert "code: 5.4.4  (Status: 5.4.4)" in out
    assert 'decided by: the diagnostic\'s phrase "host not found, try again"' in out
    assert "deciding line: name=example.org type=MX: Host not found, try again" in out
    assert "verdict: soft" in out


def test_explain_shows_a_recipient_fallback() -> None:
    out = _explain("dsn-file-path-recipient.eml")
    assert "/var/spool/mail/zed is unusable; zed@example.net taken from" in out


def test_explain_says_undetermined_is_treated_as_soft() -> None:
    out = _explain("dsn-undetermined.eml")
    assert "verdict: undetermined: treated as soft" in out and "confidence low" in out


def test_explain_a_text_bounce_lists_the_detectors_that_did_not_match() -> None:
    out = _explain("text-domino-de.eml")
    assert "detector: domino (did not match before it: arf," in out
    assert "deciding line: Benutzer erika (erika@example.de) ist nicht im Domino-Verzeichnis aufgeführt" in out


def test_explain_a_report_naming_nobody_and_garbage(tmp_path: Path) -> None:
    assert "recipients: none named" in _explain("arf-no-recipient.eml")
    garbage = tmp_path / "garbage.eml"
    garbage.write_bytes(b"\x00\xff" * 50)
    result = CliRunner().invoke(bounce, ["explain", str(garbage)])
    assert result.exit_code == 0 and "kind: unknown" in result.stdout and "none matched" in result.stdout


def test_explain_a_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(bounce, ["explain", str(tmp_path / "nope.eml")])
    assert result.exit_code == 1
    assert "cannot read" in result.stderr and "Traceback" not in result.output
