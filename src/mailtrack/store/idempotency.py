"""Idempotency-Key records (IETF httpapi draft): which emails one keyed request created, and its fingerprint.

Keys are scoped per account and endpoint, so ``K`` on ``POST /emails`` and ``K`` on
``POST /emails/batch`` (or another account's ``K``) never meet.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from sqlalchemy import Connection, insert, select

from .ids import now
from .schema import idempotency_keys


@dataclass(frozen=True)
class Keyed:
    """The idempotency scope and fingerprint of one request."""

    endpoint: str
    key: str
    fingerprint: str


def lookup(conn: Connection, account_id: int, endpoint: str, key: str) -> tuple[str, list[str]] | None:
    """(fingerprint, email ids) stored for this key, or None."""
    row = conn.execute(
        select(idempotency_keys.c.fingerprint, idempotency_keys.c.email_ids).where(
            idempotency_keys.c.account_id == account_id, idempotency_keys.c.endpoint == endpoint,
            idempotency_keys.c.key == key,
        )
    ).first()
    return None if row is None else (str(row[0]), list(json.loads(row[1])))


def save(conn: Connection, account_id: int, keyed: Keyed, email_ids: list[str]) -> None:
    conn.execute(insert(idempotency_keys).values(
        account_id=account_id, endpoint=keyed.endpoint, key=keyed.key, fingerprint=keyed.fingerprint,
        email_ids=json.dumps(email_ids), created_at=now(),
    ))
