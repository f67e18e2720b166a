"""Request dependencies: the store, the config and the caller's account."""

from __future__ import annotations

import asyncio
import logging
import threading
import time

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.exc import SQLAlchemyError

from .config import Config
from .errors import AuthError
from .store import accounts
from .store.db import Store

log = logging.getLogger("mailtrack.api")

MAX_OFFSET = 10_000_000
"""Paging deeper than this is refused with 422 (and would overflow SQLite's 64-bit integers at 2**63)."""

_bearer = HTTPBearer(auto_error=False, description="API key from `mailtrack apikey create`")


async def get_store(request: Request) -> Store:
    """Async on purpose: a plain def dependency costs a thread-pool hop on every request."""
    store: Store = request.app.state.store
    return store


async def get_config(request: Request) -> Config:
    config: Config = request.app.state.config
    return config


async def account_id(
    creds: HTTPAuthorizationCredentials | None = Depends(_bearer), store: Store = Depends(get_store)
) -> int:
    """The caller's account. Async so a cached key costs no thread hop; a cache miss reads in a thread."""
    if creds is None or creds.scheme.lower() != "bearer" or not creds.credentials:
        raise AuthError("missing API key: send 'Authorization: Bearer KEY' (create one with `mailtrack apikey create`)")
    found = _KEY_CACHE.cached(store, creds.credentials)
    if found is None:
        found = await asyncio.to_thread(_KEY_CACHE.get, store, creds.credentials)
    if found is None:
        raise AuthError("unknown API key")
    return found


class _KeyCache:
    """Key → account for at most TTL seconds (never past the key's expiry), so authentication costs no
    query on the hot path. A key revoked by another process therefore answers 401 within TTL seconds;
    one revoked through this process's API at once (``clear``)."""

    TTL = 30.0
    TOUCH_EVERY = 60.0  # last_used_at is written at most this often per key and process

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: dict[tuple[int, str], tuple[float, int]] = {}

    def cached(self, store: Store, key: str) -> int | None:
        hit = self._entries.get((id(store), accounts.hash_key(key)))
        return hit[1] if hit is not None and hit[0] > time.monotonic() else None

    def get(self, store: Store, key: str) -> int | None:
        mono, wall = time.monotonic(), time.time()
        slot = (id(store), accounts.hash_key(key))
        with store.read() as conn:
            found = accounts.key_info(conn, key)
        if found is None:  # unknown keys are never cached: a new key works at once
            with self._lock:
                self._entries.pop(slot, None)
            return None
        if found["last_used_at"] is None or found["last_used_at"] < wall - self.TOUCH_EVERY:
            try:
                with store.write() as conn:
                    accounts.touch_key(conn, found["id"], wall)
            except SQLAlchemyError:  # "last used" is a courtesy: never refuse a request over it
                log.warning("could not record the last use of API key %s", found["id"], exc_info=True)
        ttl = self.TTL if found["expires_at"] is None else min(self.TTL, found["expires_at"] - wall)
        with self._lock:
            if len(self._entries) > 10_000:
                self._entries.clear()
            self._entries[slot] = (mono + ttl, int(found["account_id"]))
        return int(found["account_id"])

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


_KEY_CACHE = _KeyCache()


def forget_cached_keys() -> None:
    """After a revocation: this process asks the database again for every key."""
    _KEY_CACHE.clear()
