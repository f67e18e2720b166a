"""Bounce, DSN, ARF and auto-reply parsing: ``parse_message(raw) -> Report``. Pure, no I/O."""

from mailtrack.bounces.model import KINDS, Kind, RecipientResult, Report
from mailtrack.bounces.output import report_to_json
from mailtrack.bounces.parse import parse_message

__all__ = ["KINDS", "Kind", "RecipientResult", "Report", "parse_message", "report_to_json"]
