"""Accounts (the "site"), API keys, clients and web users."""

from __future__ import annotations

import hashlib
import secrets
from typing import Any

from sqlalchemy import Connection, delete, insert, select, update

from ..errors import Conflict, NotFound
from .ids import now
from .schema import accounts, api_keys, clients, users, web_sessions

KEY_PREFIX = "mt_"


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def get_or_create_account(conn: Connection, name: str) -> int:
    found = conn.execute(select(accounts.c.id).where(accounts.c.name == name)).scalar()
    if found is not None:
        return int(found)
    res = conn.execute(insert(accounts).values(name=name, track_default=True, created_at=now()))
    return int(res.inserted_primary_key[0])  # type: ignore[index]


def find_account(conn: Connection, name: str) -> int | None:
    found = conn.execute(select(accounts.c.id).where(accounts.c.name == name)).scalar()
    return None if found is None else int(found)


def get_account(conn: Connection, account_id: int) -> dict[str, Any]:
    row = conn.execute(select(accounts).where(accounts.c.id == account_id)).mappings().first()
    if row is None:
        raise NotFound("no such account")
    return dict(row)


def track_default(conn: Connection, account_id: int) -> bool:
    """The account's tracking default (submission reads it per transaction: one plain query by the driver)."""
    sql = _TRACK_DEFAULT_PG if conn.dialect.name == "postgresql" else _TRACK_DEFAULT
    found = conn.exec_driver_sql(sql, (account_id,)).first()
    if found is None:
        raise NotFound("no such account")
    return bool(found[0])


_TRACK_DEFAULT = "SELECT track_default FROM accounts WHERE id = ?"
_TRACK_DEFAULT_PG = _TRACK_DEFAULT.replace("?", "%s")


def set_track_default(conn: Connection, account_id: int, value: bool) -> None:
    conn.execute(update(accounts).where(accounts.c.id == account_id).values(track_default=value))


def create_api_key(conn: Connection, account_id: int, expires_at: float | None = None) -> str:
    """A new key; only its hash is stored, so this is the one time it can be shown."""
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    conn.execute(
        insert(api_keys).values(
            account_id=account_id, key_hash=hash_key(key), prefix=key[:10], created_at=now(), expires_at=expires_at
        )
    )
    return key


def _live(t: float) -> Any:
    return (api_keys.c.revoked_at.is_(None)) & (api_keys.c.expires_at.is_(None) | (api_keys.c.expires_at > t))


def key_info(conn: Connection, key: str) -> dict[str, Any] | None:
    """id, account_id, expires_at and last_used_at of a key that is neither revoked nor expired, else None."""
    cols = (api_keys.c.id, api_keys.c.account_id, api_keys.c.expires_at, api_keys.c.last_used_at)
    row = conn.execute(select(*cols).where(api_keys.c.key_hash == hash_key(key), _live(now()))).mappings().first()
    return None if row is None else dict(row)


def account_for_key(conn: Connection, key: str) -> int | None:
    found = key_info(conn, key)
    return None if found is None else int(found["account_id"])


def touch_key(conn: Connection, key_id: int, at: float) -> None:
    conn.execute(update(api_keys).where(api_keys.c.id == key_id).values(last_used_at=at))


def list_api_keys(conn: Connection, account_id: int) -> list[dict[str, Any]]:
    """The account's keys, oldest first, without anything that would let one be used."""
    cols = (api_keys.c.id, api_keys.c.prefix, api_keys.c.created_at, api_keys.c.last_used_at,
            api_keys.c.expires_at, api_keys.c.revoked_at)
    rows = conn.execute(select(*cols).where(api_keys.c.account_id == account_id).order_by(api_keys.c.id)).mappings()
    return [dict(r) for r in rows]


def find_api_key(conn: Connection, ref: str, account_id: int | None = None) -> dict[str, Any]:
    """A key by its listed id or by the key itself, optionally only among one account's keys."""
    text = ref.strip()
    cond = (api_keys.c.key_hash == hash_key(text)) if text.startswith(KEY_PREFIX) else None
    if cond is None and text.isascii() and text.isdigit() and len(text) <= 18:
        cond = api_keys.c.id == int(text)
    row = None
    if cond is not None:
        q = select(api_keys.c.id, api_keys.c.account_id, api_keys.c.prefix, api_keys.c.revoked_at).where(cond)
        if account_id is not None:
            q = q.where(api_keys.c.account_id == account_id)
        row = conn.execute(q).mappings().first()
    if row is None:
        raise NotFound(f"no API key {text[:12]!r}" + (" in this account" if account_id is not None else ""),
                       field="key")
    return dict(row)


def revoke_api_key(conn: Connection, ref: str, account_id: int | None = None) -> dict[str, Any]:
    """Revoke a key (by listed id or the key itself); revoking twice keeps the first time."""
    row = find_api_key(conn, ref, account_id)
    if row["revoked_at"] is None:
        conn.execute(update(api_keys).where(api_keys.c.id == row["id"]).values(revoked_at=now()))
    return row


# --- clients ---------------------------------------------------------------------------------

def list_clients(conn: Connection, account_id: int) -> list[dict[str, Any]]:
    rows = conn.execute(
        select(clients).where(clients.c.account_id == account_id).order_by(clients.c.name)
    ).mappings()
    return [dict(r) for r in rows]


def find_client(conn: Connection, account_id: int, ref: str | int) -> dict[str, Any]:
    """A client by numeric id or external reference, scoped to the account."""
    q = select(clients).where(clients.c.account_id == account_id)
    text = str(ref)
    row = conn.execute(q.where(clients.c.external_ref == text)).mappings().first()
    if row is None and text.isascii() and text.isdigit() and len(text) <= 18:  # not '³', not past 2**63
        row = conn.execute(q.where(clients.c.id == int(text))).mappings().first()
    if row is None:
        raise NotFound(f"no client {text!r} in this account", field="client")
    return dict(row)


def create_client(
    conn: Connection, account_id: int, external_ref: str, name: str | None, tracking: bool | None
) -> dict[str, Any]:
    exists = conn.execute(
        select(clients.c.id).where(clients.c.account_id == account_id, clients.c.external_ref == external_ref)
    ).scalar()
    if exists is not None:
        raise Conflict(f"client {external_ref!r} already exists", field="external_ref")
    conn.execute(
        insert(clients).values(
            account_id=account_id, external_ref=external_ref, name=name or external_ref,
            tracking=tracking, created_at=now(),
        )
    )
    return find_client(conn, account_id, external_ref)


def set_client_tracking(conn: Connection, account_id: int, ref: str | int, tracking: bool | None) -> dict[str, Any]:
    client = find_client(conn, account_id, ref)
    conn.execute(update(clients).where(clients.c.id == client["id"]).values(tracking=tracking))
    return find_client(conn, account_id, client["external_ref"])


# --- users -----------------------------------------------------------------------------------

def add_user(conn: Connection, account_id: int, email: str, password_hash: str) -> int:
    existing = conn.execute(select(users.c.id).where(users.c.email == email.lower())).scalar()
    if existing is not None:
        conn.execute(
            update(users).where(users.c.id == existing).values(password_hash=password_hash, account_id=account_id)
        )
        end_sessions(conn, int(existing))  # a new password signs the user out everywhere
        return int(existing)
    res = conn.execute(
        insert(users).values(account_id=account_id, email=email.lower(), password_hash=password_hash, created_at=now())
    )
    return int(res.inserted_primary_key[0])  # type: ignore[index]


def find_user(conn: Connection, email: str) -> dict[str, Any] | None:
    row = conn.execute(select(users).where(users.c.email == email.lower())).mappings().first()
    return None if row is None else dict(row)


def remove_user(conn: Connection, email: str) -> bool:
    """Delete a user and end every session of theirs; False when there was no such user."""
    row = find_user(conn, email.strip())
    if row is None:
        return False
    end_sessions(conn, row["id"])
    conn.execute(delete(users).where(users.c.id == row["id"]))
    return True


# --- web sessions (the cookie holds a random token; only its hash is stored) ---------------------

def create_session(conn: Connection, user_id: int, seconds: float) -> str:
    """A new session token for the cookie; expired sessions are cleared on the way."""
    token = secrets.token_urlsafe(32)
    t = now()
    conn.execute(delete(web_sessions).where(web_sessions.c.expires_at < t))
    conn.execute(insert(web_sessions).values(id=hash_key(token), user_id=user_id, created_at=t, expires_at=t + seconds))
    return token


def session_user(conn: Connection, token: str) -> tuple[dict[str, Any], str] | None:
    """(user row, session id) for a live session token, else None."""
    sid = hash_key(token)
    row = conn.execute(
        select(users).join(web_sessions, web_sessions.c.user_id == users.c.id)
        .where(web_sessions.c.id == sid, web_sessions.c.expires_at > now())
    ).mappings().first()
    return None if row is None else (dict(row), sid)


def set_time_zone(conn: Connection, user_id: int, name: str | None) -> None:
    """The user's time zone for every page and browser (None: each browser's own)."""
    conn.execute(update(users).where(users.c.id == user_id).values(time_zone=name))


def end_session(conn: Connection, token: str) -> None:
    conn.execute(delete(web_sessions).where(web_sessions.c.id == hash_key(token)))


def end_sessions(conn: Connection, user_id: int) -> int:
    """End every session of a user; returns how many there were."""
    return int(conn.execute(delete(web_sessions).where(web_sessions.c.user_id == user_id)).rowcount or 0)
