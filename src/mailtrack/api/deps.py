"""Request dependencies: the store, the config and the caller's account."""

from __future__ import annotations

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from ..config import Config
from ..errors import AuthError
from ..store import accounts
from ..store.db import Store

_bearer = HTTPBearer(auto_error=False, description="API key from `mailtrack apikey create`")


def get_store(request: Request) -> Store:
    store: Store = request.app.state.store
    return store


def get_config(request: Request) -> Config:
    config: Config = request.app.state.config
    return config


def account_id(
    creds: HTTPAuthorizationCredentials | None = Depends(_bearer), store: Store = Depends(get_store)
) -> int:
    if creds is None or creds.scheme.lower() != "bearer" or not creds.credentials:
        raise AuthError("missing API key: send 'Authorization: Bearer KEY' (create one with `mailtrack apikey create`)")
    with store.read() as conn:
        found = accounts.account_for_key(conn, creds.credentials)
    if found is None:
        raise AuthError("unknown API key")
    return found
