"""The account's own API keys: list them (never the key itself) and revoke one."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Response

from ..deps import account_id, forget_cached_keys, get_store
from ..store import accounts
from ..store.db import Store
from ..store.queries import iso

router = APIRouter(prefix="/api/v1", tags=["api keys"])


def key_view(r: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": r["id"], "prefix": r["prefix"], "created_at": iso(r["created_at"]),
        "last_used_at": iso(r["last_used_at"]), "expires_at": iso(r["expires_at"]), "revoked_at": iso(r["revoked_at"]),
    }


@router.get("/apikeys", summary="This account's API keys: id, prefix, created, last used, expiry, revocation")
def list_keys(acct: int = Depends(account_id), store: Store = Depends(get_store)) -> dict[str, Any]:
    with store.read() as conn:
        return {"api_keys": [key_view(r) for r in accounts.list_api_keys(conn, acct)]}


@router.delete("/apikeys/{key_id}", status_code=204, summary="Revoke one of this account's API keys (id as listed)")
def revoke_key(key_id: str, acct: int = Depends(account_id), store: Store = Depends(get_store)) -> Response:
    with store.write() as conn:
        accounts.revoke_api_key(conn, key_id, acct)
    forget_cached_keys()  # this process stops accepting it at once; others within the cache TTL
    return Response(status_code=204)
