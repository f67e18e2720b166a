"""Web sign-in: argon2 password hashes, signed session cookies, CSRF tokens.

Sessions are a signed cookie (user id, e-mail, expiry, a random nonce and a fingerprint of the
password hash), not a table: no schema change, nothing to clean up, and any number of API
processes behind a load balancer accept the same cookie with only the shared secret key.
Re-setting a user's password (``mailtrack user add`` again) changes the fingerprint, which
ends every session of that user. The CSRF token is an HMAC of the session nonce, so it is
per session and needs no storage either.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import threading
import time
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


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def mac(secret: str, purpose: str, message: str) -> str:
    key = hashlib.sha256(f"mailtrack-web:{purpose}:{secret}".encode()).digest()
    return _b64(hmac.new(key, message.encode(), hashlib.sha256).digest()[:24])


def _fingerprint(password_hash: str) -> str:
    return hashlib.sha256(password_hash.encode()).hexdigest()[:16]


def make_session(secret: str, user: dict[str, Any], now: float | None = None) -> str:
    payload = {"u": user["id"], "e": user["email"], "x": int((now or time.time()) + SESSION_SECONDS),
               "n": secrets.token_urlsafe(12), "p": _fingerprint(user["password_hash"])}
    body = _b64(json.dumps(payload, separators=(",", ":")).encode())
    return f"{body}.{mac(secret, 'session', body)}"


def _read_cookie(secret: str, value: str, now: float) -> dict[str, Any] | None:
    body, dot, sig = value.partition(".")
    if not dot or not hmac.compare_digest(sig, mac(secret, "session", body)):
        return None
    try:
        payload = json.loads(_unb64(body))
    except ValueError:
        return None
    if not isinstance(payload, dict) or not isinstance(payload.get("x"), int) or payload["x"] < now:
        return None
    return payload


def user_from_cookie(secret: str, store: Store, value: str | None) -> WebUser | None:
    """The signed-in user, or None for a missing, forged, expired or outdated session."""
    if not value:
        return None
    payload = _read_cookie(secret, value, time.time())
    if payload is None:
        return None
    with store.read() as conn:
        row = accounts.find_user(conn, str(payload.get("e", "")))
    if row is None or row["id"] != payload.get("u") or _fingerprint(row["password_hash"]) != payload.get("p"):
        return None
    return WebUser(row["id"], row["account_id"], row["email"], str(payload["n"]))


def csrf_token(secret: str, nonce: str) -> str:
    return mac(secret, "csrf", nonce)


def check_csrf(secret: str, nonce: str | None, submitted: object) -> None:
    if not nonce or not isinstance(submitted, str) or not submitted:
        raise CsrfError("the form's security token is missing")
    if not hmac.compare_digest(submitted, csrf_token(secret, nonce)):
        raise CsrfError("the form's security token is invalid or from another session")


class Throttle:
    """At most ``limit`` failed sign-ins per address in ``window`` seconds (per process)."""

    def __init__(self, limit: int = 10, window: float = 300.0) -> None:
        self.limit = limit
        self.window = window
        self._fails: dict[str, list[float]] = {}
        self._lock = threading.Lock()

    def blocked(self, email: str) -> bool:
        with self._lock:
            cutoff = time.time() - self.window
            recent = [t for t in self._fails.get(email, []) if t > cutoff]
            self._fails[email] = recent
            return len(recent) >= self.limit

    def failed(self, email: str) -> None:
        with self._lock:
            self._fails.setdefault(email, []).append(time.time())

    def succeeded(self, email: str) -> None:
        with self._lock:
            self._fails.pop(email, None)


def authenticate(store: Store, email: str, password: str) -> dict[str, Any] | None:
    """The user row when the password matches, else None (same work either way)."""
    with store.read() as conn:
        row = accounts.find_user(conn, email.strip())
    try:
        _hasher.verify(row["password_hash"] if row else _DUMMY_HASH, password)
    except (VerificationError, InvalidHashError):
        return None
    return row
