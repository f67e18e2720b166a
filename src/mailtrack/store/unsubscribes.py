"""A recipient unsubscribed (List-Unsubscribe, one-click or mailto): suppress the address, record the event."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Connection, select

from ..domain.status import EventType
from . import suppressions
from .schema import recipients
from .transitions import Change, record


@dataclass(frozen=True)
class Unsubscribed:
    address: str
    new: bool  # False when the address was already suppressed


def find(conn: Connection, recipient_id: str) -> str | None:
    """The address of a recipient, or None when there is no such recipient."""
    return conn.execute(select(recipients.c.address).where(recipients.c.id == recipient_id)).scalar()


def unsubscribe(conn: Connection, recipient_id: str, via: str) -> Unsubscribed | None:
    """Suppress the recipient's address for its account (source ``unsubscribe``); idempotent."""
    row = conn.execute(select(recipients.c.account_id, recipients.c.address)
                       .where(recipients.c.id == recipient_id)).first()
    if row is None:
        return None
    new = not suppressions.suppressed_among(conn, row.account_id, {row.address})
    # the status-change core puts the address on the suppression list (source ``unsubscribe``)
    record(conn, Change(recipient_id, EventType.UNSUBSCRIBED.value, reason=f"unsubscribed ({via})",
                        data={"via": via}, dedupe_key=f"unsubscribe:{recipient_id}"))
    return Unsubscribed(row.address, new)
