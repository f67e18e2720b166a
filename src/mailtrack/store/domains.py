"""Sending domains and their DKIM keys (the SQL; the rules live in ``mailtrack.domains``)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, delete, insert, select, update

from .ids import now
from .schema import accounts, dkim_keys, sending_domains


@dataclass(frozen=True)
class DkimKey:
    id: int
    selector: str
    public_key: str
    private_key: str  # encrypted; never leaves the process that signs
    state: str  # pending (published, not yet seen in DNS), active (signing), retiring (published, unused)
    created_at: float
    activated_at: float | None
    retire_at: float | None


@dataclass(frozen=True)
class SendingDomain:
    id: int
    account_id: int
    account: str
    domain: str
    return_path: str | None
    checks: dict[str, Any]
    checked_at: float | None
    created_at: float
    keys: list[DkimKey] = field(default_factory=list)


def _domain(row: Any, keys: list[DkimKey]) -> SendingDomain:
    return SendingDomain(id=row.id, account_id=row.account_id, account=row.account, domain=row.domain,
                         return_path=row.return_path, checks=json.loads(row.checks_json or "{}"),
                         checked_at=row.checked_at, created_at=row.created_at, keys=keys)


def _keys(conn: Connection, domain_ids: list[int]) -> dict[int, list[DkimKey]]:
    out: dict[int, list[DkimKey]] = {i: [] for i in domain_ids}
    if not domain_ids:
        return out
    q = select(dkim_keys).where(dkim_keys.c.domain_id.in_(domain_ids)).order_by(dkim_keys.c.created_at, dkim_keys.c.id)
    for k in conn.execute(q):
        out[k.domain_id].append(DkimKey(k.id, k.selector, k.public_key, k.private_key, k.state, k.created_at,
                                        k.activated_at, k.retire_at))
    return out


def _select() -> Any:
    return select(sending_domains, accounts.c.name.label("account")).join(
        accounts, accounts.c.id == sending_domains.c.account_id)


def find(conn: Connection, domain: str) -> SendingDomain | None:
    row = conn.execute(_select().where(sending_domains.c.domain == domain)).first()
    return None if row is None else _domain(row, _keys(conn, [row.id])[row.id])


def listing(conn: Connection, account_id: int | None = None) -> list[SendingDomain]:
    q = _select().order_by(sending_domains.c.domain)
    if account_id is not None:
        q = q.where(sending_domains.c.account_id == account_id)
    rows = list(conn.execute(q))
    keys = _keys(conn, [r.id for r in rows])
    return [_domain(r, keys[r.id]) for r in rows]


def create(conn: Connection, account_id: int, domain: str, return_path: str | None) -> int:
    res = conn.execute(insert(sending_domains).values(account_id=account_id, domain=domain, return_path=return_path,
                                                      created_at=now()))
    return int(res.inserted_primary_key[0])  # type: ignore[index]


def add_key(conn: Connection, domain_id: int, selector: str, private_key: str, public_key: str,
            state: str = "pending") -> None:
    conn.execute(insert(dkim_keys).values(domain_id=domain_id, selector=selector, private_key=private_key,
                                          public_key=public_key, state=state, created_at=now()))


def set_key_state(conn: Connection, key_id: int, state: str, **times: float | None) -> None:
    conn.execute(update(dkim_keys).where(dkim_keys.c.id == key_id).values(state=state, **times))


def delete_key(conn: Connection, key_id: int) -> None:
    conn.execute(delete(dkim_keys).where(dkim_keys.c.id == key_id))


def save_checks(conn: Connection, domain_id: int, checks: dict[str, Any], at: float) -> None:
    conn.execute(update(sending_domains).where(sending_domains.c.id == domain_id)
                 .values(checks_json=json.dumps(checks, sort_keys=True), checked_at=at))


def remove(conn: Connection, domain_id: int) -> None:
    conn.execute(delete(dkim_keys).where(dkim_keys.c.domain_id == domain_id))
    conn.execute(delete(sending_domains).where(sending_domains.c.id == domain_id))
