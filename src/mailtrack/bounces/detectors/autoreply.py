"""RFC 3834 automatic replies: vacation notices, out-of-office messages, auto-responders."""

from __future__ import annotations

from mailtrack.bounces.addresses import clean_address, is_system_address
from mailtrack.bounces.message import Returned
from mailtrack.bounces.model import RecipientResult, Report

NAME = "autoreply"

_SUBJECT_PREFIXES = (
    "auto reply", "auto-reply", "autoreply", "automatic reply", "auto response", "auto-response",
    "autoresponse", "out of office", "out of the office", "away from", "away until", "on vacation",
    "vacation", "abwesenheit", "réponse automatique", "reponse automatique", "respuesta automática",
    "risposta automatica", "automatisch antwoord", "automatische antwort", "自動応答", "不在",
    "abwesenheitsnotiz", "nicht im büro", "außer haus", "absence", "absent du bureau", "hors du bureau",
    "fuera de la oficina", "ausente", "resposta automática", "resposta automatica", "fora do escritório",
    "автоответ", "автоматический ответ", "自动回复", "自動回覆", "自動返信", "自動回信",
)  # fmt: skip
_BOUNCE_WORDS = ("undeliver", "failure", "failed", "returned", "delivery status", "not delivered", "rejected")


def _signals(msg: Returned) -> bool:
    auto_submitted = msg.header("Auto-Submitted").lower()
    if auto_submitted.startswith("auto-replied"):
        return True
    if any(msg.header(h) for h in ("X-Autoreply", "X-Autorespond", "X-Autoresponder", "X-Vacation")):
        return True
    if msg.header("Precedence").lower() == "auto_reply" or msg.header("X-Apple-Action").upper() == "VACATION":
        return True
    if msg.header("X-Auto-Response-Suppress") and msg.header("X-MS-Exchange-Inbox-Rules-Loop"):
        return True
    subject = msg.subject.lower().lstrip()
    return any(subject.startswith(prefix) or f": {prefix}" in subject for prefix in _SUBJECT_PREFIXES)


def detect(msg: Returned) -> Report | None:
    sender = clean_address(msg.header("From"))
    if not sender or is_system_address(sender) or not _signals(msg):
        return None
    subject = msg.subject.lower()
    if any(word in subject for word in _BOUNCE_WORDS):
        return None
    recipient = RecipientResult(
        address=sender,
        status=None,
        reason="vacation",
        hard=False,
        diagnostic=msg.subject.strip()[:200],
        action="autoreplied",
    )
    return Report(kind="autoreply", recipients=[recipient])
