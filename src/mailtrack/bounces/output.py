"""Reports as JSON-ready dicts."""

from __future__ import annotations

from typing import Any

from mailtrack.bounces.model import Report


def report_to_json(report: Report, file: str | None = None) -> dict[str, Any]:
    """``{"file", "kind", "recipients": [{"address", "status", "reason", "hard", "confidence", "diagnostic"}], …}``.

    ``hard`` is null when undetermined (treat as soft); ``feedback_type`` closes the object.
    """
    return {
        "file": file,
        "kind": report.kind,
        "recipients": [
            {
                "address": r.address,
                "status": r.status,
                "reason": r.reason,
                "hard": r.hard,
                "confidence": r.confidence,
                "diagnostic": r.diagnostic,
            }
            for r in report.recipients
        ],
        "feedback_type": report.feedback_type,
    }
