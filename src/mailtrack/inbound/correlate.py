"""Which recipient of ours a report is about — only on proof that mailtrack itself made.

Every id we send carries a MAC under the secret key: the VERP token of the return path, the
``X-Mailtrack-ID: RID-MAC`` header and the ``<RID.EMAILID.MAC@bounce-domain>`` Message-ID. A
report is correlated only through one of them, strongest first::

    verp           the address the report was sent to           (bounces+RID-MAC@bounce-domain)
    envelope_hint  a VERP address quoted in the report          (Return-Path of the original)
    mailtrack_id   X-Mailtrack-ID of the quoted original        (RID-MAC)
    message_id     Message-ID of the quoted original            (feedback loops keep only this)

A bare recipient id proves nothing: it is in every delivered message and its tracking URLs, so a
report naming one without a valid MAC is kept as an orphan and changes nothing.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection

from ..bounces import Report
from ..config import Config
from ..store import inbound
from ..tokens import parse_message_id, recipient_from_mailtrack_id, recipient_from_verp


def find_anchor(
    conn: Connection, config: Config, rcpt_tos: list[str], report: Report
) -> tuple[dict[str, Any], str] | None:
    """The recipient a report is about and how it was found, or None."""
    secret = config.secret_key
    for via, addresses in (("verp", rcpt_tos), ("envelope_hint", report.envelope_hints)):
        for address in addresses:
            rid = recipient_from_verp(secret, address)
            row = inbound.recipient(conn, rid) if rid else None
            if row is not None:
                return row, via
    rid = recipient_from_mailtrack_id(secret, report.mailtrack_id or "")
    row = inbound.recipient(conn, rid) if rid else None
    if row is not None:
        return row, "mailtrack_id"
    ids = parse_message_id(secret, report.original_message_id or "", config.bounce_domain)
    row = inbound.recipient(conn, ids[0]) if ids else None
    if ids and row is not None and row["email_id"] == ids[1]:
        return row, "message_id"
    return None
