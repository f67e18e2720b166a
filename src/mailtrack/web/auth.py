"""Web sign-in: argon2 password hashes, server-side sessions, CSRF tokens, a bounded throttle.

A session is a row in ``web_sessions``; the cookie holds a random token and the table only its
SHA-256, so a stolen database does not sign anyone in. Logout deletes the row, a new password
(``mailtrack user add`` again) and ``mailtrack user remove`` delete all of the user's rows: the old
cookie stops working at once, on every process sharing the database. The CSRF token is an HMAC
of the session id, so it is per session and needs no storage.

Failed sign-ins are throttled per (client address, account) and per client address: a stranger
guessing one user's password, or spraying many addresses, slows only himself.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from ..store import accounts
from ..store.db import Store

SESSION_COOKIE = "mt_session"
PRELOGIN_COOKIE = "mt_pre"  # nonce that ties the sign-in form's CSRF token to this browser
SESSION_SECONDS = 12 * 3600
CSRF_FIELD = "csrf"
MAX_COOKIE = 100  # a session token is 43 characters
MAX_EMAIL = 320  # RFC 5321 path limit
MAX_PASSWORD = 1024
MAX_LOGIN_BODY = 16 * 1024  # the sign-in form, with room to spare

_hasher = PasswordHasher()
# Verifying against this when the user does not exist keeps the timing of both failures alike.
_DUMMY_HASH = _hasher.hash(secrets.token_hex(16))


class LoginRequired(Exception):
    """No valid session: pages redirect to /login."""


class CsrfError(Exception):
    """A form arrived without the token of the session that rendered it."""


@dataclass(frozen=True)
class WebUser:
    id: int
    account_id: int
    email: str
    nonce: str
    time_zone: str | None = None  # chosen in Settings; None: the browser's


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def mac(secret: str, purpose: str, message: str) -> str:
    key = hashlib.sha256(f"mailtrack-web:{purpose}:{secret}".encode()).digest()
    return _b64(hmac.new(key, message.encode(), hashlib.sha256).digest()[:24])


def make_session(store: Store, user: dict[str, Any]) -> str:
    """A new server-side session for ``user``; the value for the cookie."""
    with store.write() as conn:
        return accounts.create_session(conn, int(user["id"]), SESSION_SECONDS)


def end_session(store: Store, value: str | None) -> None:
    if value and len(value) <= MAX_COOKIE:
        with store.write() as conn:
            accounts.end_session(conn, value)


def user_from_cookie(secret: str, store: Store, value: str | None) -> WebUser | None:
    """The signed-in user, or None for a missing, unknown, expired or ended session."""
    if not value or len(value) > MAX_COOKIE:
        return None
    with store.read() as conn:
        found = accounts.session_user(conn, value)
    if found is None:
        return None
    row, sid = found
    return WebUser(row["id"], row["account_id"], row["email"], sid, row.get("time_zone"))


def csrf_token(secret: str, nonce: str) -> str:
    return mac(secret, "csrf", nonce)


def check_csrf(secret: str, nonce: str | None, submitted: object) -> None:
    if not nonce or not isinstance(submitted, str) or not submitted:
        raise CsrfError("the form's security token is missing")
    if not hmac.compare_digest(submitted, csrf_token(secret, nonce)):
        raise CsrfError("the form's security token is invalid or from another session")


class Throttle:
    """Failed sign-ins per (client address, account) and per client address, in a bounded table.

    At most ``limit`` failures for one address from one client, and ``per_ip`` failures from one
    client over all addresses, in ``window`` seconds. Entries expire after the window and the
    table never holds more than ``max_entries`` keys (the oldest go first). Per process.
    """

    def __init__(self, limit: int = 10, window: float = 300.0, per_ip: int = 20, max_entries: int = 10_000) -> None:
        self.limit = limit
        self.window = window
        self.per_ip = per_ip
        self.max_entries = max_entries
        self._fails: OrderedDict[tuple[str, str], list[float]] = OrderedDict()
        self._lock = threading.Lock()

    def _recent(self, key: tuple[str, str], now: float) -> list[float]:
        times = [t for t in self._fails.get(key, ()) if t > now - self.window]
        if times:
            self._fails[key] = times
        else:
            self._fails.pop(key, None)
        return times

    def blocked(self, ip: str, email: str) -> str | None:
        """Why this attempt is refused without checking the password, or None."""
        with self._lock:
            now = time.time()
            if len(self._recent((ip, ""), now)) >= self.per_ip:
                return "Too many failed attempts from your network. Wait a few minutes and try again."
            if len(self._recent((ip, email), now)) >= self.limit:
                return "Too many failed attempts for this address. Wait a few minutes and try again."
            return None

    def failed(self, ip: str, email: str) -> None:
        with self._lock:
            now = time.time()
            for key, keep in (((ip, email), self.limit), ((ip, ""), self.per_ip)):
                times = self._recent(key, now)
                self._fails[key] = [*times[-(keep - 1):], now] if keep > 1 else [now]
                self._fails.move_to_end(key)
            # oldest first (each failure moves its keys to the end): drop the expired, then the excess
            while self._fails and (len(self._fails) > self.max_entries
                                   or next(iter(self._fails.values()))[-1] <= now - self.window):
                self._fails.popitem(last=False)

    def succeeded(self, ip: str, email: str) -> None:
        with self._lock:
            self._fails.pop((ip, email), None)

    def __len__(self) -> int:
        return len(self._fails)


def authenticate(store: Store, email: str, password: str) -> dict[str, Any] | None:
    """The user row when the password matches, else None (same work either way)."""
    with store.read() as conn:
        row = accounts.find_user(conn, email.strip())
    try:
        _hasher.verify(row["password_hash"] if row else _DUMMY_HASH, password)
    except (VerificationError, InvalidHashError):
        return None
    return row
