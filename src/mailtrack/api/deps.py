"""Request dependencies: the store, the config and the caller's account."""

from __future__ import annotations

import asyncio
import threading
import time

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from ..config import Config
from ..errors import AuthError
from ..store import accounts
from ..store.db import Store

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
    """Key → account for KEY_TTL seconds, so authentication costs no query on the hot path."""

    TTL = 30.0

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: dict[tuple[int, str], tuple[float, int]] = {}

    def cached(self, store: Store, key: str) -> int | None:
        hit = self._entries.get((id(store), accounts.hash_key(key)))
        return hit[1] if hit is not None and hit[0] > time.monotonic() else None

    def get(self, store: Store, key: str) -> int | None:
        now = time.monotonic()
        slot = (id(store), accounts.hash_key(key))
        with store.read() as conn:
            found = accounts.account_for_key(conn, key)
        if found is not None:  # unknown keys are never cached: a new key works at once
            with self._lock:
                if len(self._entries) > 10_000:
                    self._entries.clear()
                self._entries[slot] = (now + self.TTL, found)
        return found


_KEY_CACHE = _KeyCache()
