"""Amazon SES notifications (bounce, complaint, delivery) mailed as JSON, raw or inside an SNS envelope."""

from __future__ import annotations

import json
from typing import Any

from mailtrack.bounces.message import Returned
from mailtrack.bounces.model import RecipientResult, Report
from mailtrack.bounces.results import result

NAME = "ses"

# SES's own summary of a bounce, used only when the remote server's reply (diagnosticCode) is missing:
# the innermost reply decides whenever there is one.
_SUBTYPES = {
    "noemail": "550 5.1.1 mailbox does not exist (SES NoEmail)",
    "suppressed": "550 5.1.1 address on the SES suppression list: recent history of bouncing as an invalid address",
    "mailboxfull": "552 5.2.2 mailbox full (SES MailboxFull)",
    "messagetoolarge": "552 5.3.4 message too large (SES MessageTooLarge)",
    "contentrejected": "550 5.6.0 content rejected (SES ContentRejected)",
    "attachmentrejected": "550 5.6.0 content rejected: attachment (SES AttachmentRejected)",
}
_MAX_JSON = 256 * 1024


def _load(text: str) -> dict[str, Any] | None:
    # SNS folds lines longer than 990 characters as "!" + newline + space.
    text = text.replace("!\r\n ", "").replace("!\n ", "")
    start, end = text.find("{"), text.rfind("}")
    if start == -1 or end <= start or end - start > _MAX_JSON:
        return None
    try:
        data = json.loads(text[start : end + 1])
    except ValueError:
        return None
    if isinstance(data, dict) and isinstance(data.get("Message"), str):
        try:
            data = json.loads(data["Message"])
        except ValueError:
            return None
    return data if isinstance(data, dict) else None


def _addresses(items: Any, key: str = "emailAddress") -> list[dict[str, Any]]:
    if not isinstance(items, list):
        return []
    out: list[dict[str, Any]] = []
    for item in items:
        if isinstance(item, dict) and isinstance(item.get(key), str):
            out.append(item)
        elif isinstance(item, str):
            out.append({key: item})
    return out


def detect(msg: Returned) -> Report | None:
    text = msg.report_text
    if '"notificationType"' not in text and '\\"notificationType\\"' not in text:
        return None
    data = _load(text)
    if data is None:
        return None
    kind = str(data.get("notificationType") or data.get("eventType") or "").lower()
    if kind == "bounce":
        bounce = data.get("bounce") or {}
        temporary = str(bounce.get("bounceType", "")).lower() == "transient"
        recipients = [
            result(
                str(item["emailAddress"]),
                str(item.get("diagnosticCode") or _summary(bounce)),
                status=str(item["status"]) if item.get("status") else None,
                kind="delay" if temporary else "bounce",
                action=str(item.get("action") or ("delayed" if temporary else "failed")),
            )
            for item in _addresses(bounce.get("bouncedRecipients"))
        ]
        return Report(kind="delay" if temporary else "bounce", recipients=recipients) if recipients else None
    if kind == "deliverydelay":
        delay = data.get("deliveryDelay") or {}
        recipients = [
            result(str(i["emailAddress"]), str(i.get("diagnosticCode") or delay.get("delayType") or ""),
                   status=str(i["status"]) if i.get("status") else None, kind="delay", action="delayed")
            for i in _addresses(delay.get("delayedRecipients"))
        ]  # fmt: skip
        return Report(kind="delay", recipients=recipients) if recipients else None
    if kind == "complaint":
        complaint = data.get("complaint") or {}
        feedback = str(complaint.get("complaintFeedbackType") or "abuse")
        recipients = [
            RecipientResult(str(i["emailAddress"]), None, "feedback", False, feedback, "complained")
            for i in _addresses(complaint.get("complainedRecipients"))
        ]
        return Report(kind="complaint", recipients=recipients, feedback_type=feedback)
    if kind == "delivery":
        delivery = data.get("delivery") or {}
        response = str(delivery.get("smtpResponse") or "")
        recipients = [
            result(str(i["emailAddress"]), response, kind="delivered", action="delivered")
            for i in _addresses(delivery.get("recipients"))
        ]
        return Report(kind="delivered", recipients=recipients)
    return None


def _summary(bounce: dict[str, Any]) -> str:
    subtype = str(bounce.get("bounceSubType") or "")
    return _SUBTYPES.get(subtype.lower(), subtype)
