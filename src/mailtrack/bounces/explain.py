"""Why the parser said what it said: the detector that matched and the lines that decided."""

from __future__ import annotations

from mailtrack.bounces.detectors import DETECTORS
from mailtrack.bounces.message import Returned
from mailtrack.bounces.model import RecipientResult, Report
from mailtrack.bounces.parse import parse_message

MAX_SHOWN = 160


def explain(raw: bytes) -> list[str]:
    """Lines for an operator: detectors tried, the one that matched, per recipient what decided."""
    report = parse_message(raw)
    out = [f"kind: {report.kind}", f"detector: {_detectors(report)}"]
    if report.feedback_type:
        out.append(f"feedback type: {report.feedback_type}")
    try:
        msg = Returned(bytes(raw))
        lines = _lines(msg)
    except Exception:  # the report is already built; explaining must not fail either
        lines = []
    if not report.recipients:
        out.append("recipients: none named")
    for r in report.recipients:
        out += ["", f"recipient: {r.address or '(no address)'}"]
        out.append(f"  found: {r.evidence.get('recipient') or 'line: ' + _where(lines, r.address)}")
        code_line = _where(lines, r.status)
        if r.status and code_line.startswith("(not"):
            code_line = "none quoted: the class follows from the kind of report"
        out.append(f"  code: {r.status or '-'}" + (f"  ({code_line})" if r.status else ""))
        if r.diagnostic:
            out.append(f"  diagnostic: {_cut(r.diagnostic)}")
        out.append(f"  reason: {r.reason}")
        out.append(f"  verdict: {_verdict(r)} (confidence {r.confidence})")
        if "decided by" in r.evidence:
            out.append(f"  decided by: {r.evidence['decided by']}")
        phrase = _quoted(r.evidence.get("decided by", ""))
        if phrase:
            out.append(f"  deciding line: {_where(lines, phrase)}")
    for label, value in (("original Message-ID", report.original_message_id), ("X-Mailtrack-ID", report.mailtrack_id)):
        if value:
            out.append(f"{label}: {value}")
    return out


def _detectors(report: Report) -> str:
    names = [name for name, _ in DETECTORS]
    if report.engine not in names:
        return f"none matched (tried {', '.join(names)})" if report.engine == "none" else report.engine
    tried = names[: names.index(report.engine)]
    return f"{report.engine}" + (f" (did not match before it: {', '.join(tried)})" if tried else "")


def _verdict(r: RecipientResult) -> str:
    if r.hard is None:
        return "undetermined: treated as soft (retried, not suppressed)"
    return "hard: the address itself is bad" if r.hard else "soft: not about the address itself"


def _lines(msg: Returned) -> list[str]:
    """The decoded report text first, then the raw message (DSN fields, headers)."""
    raw = msg.raw.decode("utf-8", "replace").replace("\r\n", "\n").split("\n")
    return [*msg.report_text.split("\n"), *raw]


def _where(lines: list[str], needle: str | None) -> str:
    if not needle:
        return "-"
    low = needle.lower()
    for line in lines:
        if low in line.lower():
            return _cut(line.strip())
    return "(not on one line of the message)"


def _quoted(basis: str) -> str | None:
    """The phrase a verdict quotes ('phrase "on hold"' → on hold)."""
    if basis.count('"') < 2:
        return None
    return basis.split('"')[1]


def _cut(text: str) -> str:
    return text if len(text) <= MAX_SHOWN else text[:MAX_SHOWN] + "…"
