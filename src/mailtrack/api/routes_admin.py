"""Suppression list, tracking settings and clients."""

from __future__ import annotations

import csv
import io
from typing import Any

from fastapi import APIRouter, Depends, Query, Response

from ..deps import MAX_OFFSET, account_id, get_store
from ..domain.addresses import AddressError, parse_address
from ..errors import InputError
from ..store import accounts, suppressions
from ..store.db import Store
from ..store.queries import iso
from .schemas import ClientIn, ClientPatch, SuppressionIn, TrackingSetting

router = APIRouter(prefix="/api/v1")


def spreadsheet_safe(value: str | None) -> str | None:
    """A CSV cell a spreadsheet shows as text: a leading = + - @ TAB or CR would make it a formula."""
    return "'" + value if value and value[:1] in ("=", "+", "-", "@", "\t", "\r") else value


def _suppression_view(r: dict[str, Any]) -> dict[str, Any]:
    return {"address": r["address"], "reason": r["reason"], "source": r["source"], "created_at": iso(r["created_at"])}


@router.get("/suppressions", tags=["suppressions"], summary="The suppression list (format=csv for CSV)")
def list_suppressions(
    q: str | None = None, limit: int = Query(100, ge=1, le=10000), offset: int = Query(0, ge=0, le=MAX_OFFSET),
    format: str = Query("json", pattern="^(json|csv)$"),
    acct: int = Depends(account_id), store: Store = Depends(get_store),
) -> Any:
    with store.read() as conn:
        rows, total = suppressions.search(conn, acct, q, limit if format == "json" else 10**9, offset)
    items = [_suppression_view(r) for r in rows]
    if format == "csv":
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=["address", "reason", "source", "created_at"])
        w.writeheader()
        # reasons quote bounce texts written by strangers: never let a spreadsheet run them
        w.writerows({k: spreadsheet_safe(v) for k, v in item.items()} for item in items)
        return Response(buf.getvalue(), media_type="text/csv",
                        headers={"Content-Disposition": 'attachment; filename="suppressions.csv"'})
    return {"suppressions": items, "total": total}


@router.get("/suppressions.csv", tags=["suppressions"], summary="The whole suppression list as CSV")
def export_suppressions(acct: int = Depends(account_id), store: Store = Depends(get_store)) -> Any:
    return list_suppressions(None, 1, 0, "csv", acct, store)


@router.post("/suppressions", tags=["suppressions"], status_code=201, summary="Suppress an address")
def add_suppression(body: SuppressionIn, acct: int = Depends(account_id), store: Store = Depends(get_store)) -> Any:
    try:
        _, addr = parse_address(body.address)
    except AddressError as e:
        raise InputError(str(e), field="address") from e
    with store.write() as conn:
        suppressions.add(conn, acct, addr, body.reason, "manual")
        rows, _ = suppressions.search(conn, acct, addr, 1)
    return _suppression_view(next(r for r in rows if r["address"] == addr.lower()))


@router.delete("/suppressions/{address}", tags=["suppressions"], status_code=204, summary="Remove an address")
def delete_suppression(address: str, acct: int = Depends(account_id), store: Store = Depends(get_store)) -> Response:
    with store.write() as conn:
        suppressions.remove(conn, acct, address.strip())
    return Response(status_code=204)


@router.get("/settings/tracking", tags=["settings"], summary="Site default for tracking")
def get_tracking(acct: int = Depends(account_id), store: Store = Depends(get_store)) -> dict[str, Any]:
    with store.read() as conn:
        return {"enabled": bool(accounts.get_account(conn, acct)["track_default"])}


@router.put("/settings/tracking", tags=["settings"], summary="Change the site default for tracking")
def put_tracking(body: TrackingSetting, acct: int = Depends(account_id), store: Store = Depends(get_store)) -> Any:
    with store.write() as conn:
        accounts.set_track_default(conn, acct, body.enabled)
    return {"enabled": body.enabled}


def _client_view(c: dict[str, Any]) -> dict[str, Any]:
    return {"id": c["id"], "external_ref": c["external_ref"], "name": c["name"], "tracking": c["tracking"]}


@router.get("/clients", tags=["clients"], summary="Clients and their tracking override")
def list_clients(acct: int = Depends(account_id), store: Store = Depends(get_store)) -> dict[str, Any]:
    with store.read() as conn:
        return {"clients": [_client_view(c) for c in accounts.list_clients(conn, acct)]}


@router.post("/clients", tags=["clients"], status_code=201, summary="Create a client")
def create_client(body: ClientIn, acct: int = Depends(account_id), store: Store = Depends(get_store)) -> Any:
    with store.write() as conn:
        return _client_view(accounts.create_client(conn, acct, body.external_ref, body.name, body.tracking))


@router.get("/clients/{ref}", tags=["clients"], summary="One client")
def get_client(ref: str, acct: int = Depends(account_id), store: Store = Depends(get_store)) -> Any:
    with store.read() as conn:
        return _client_view(accounts.find_client(conn, acct, ref))


@router.patch("/clients/{ref}", tags=["clients"], summary="Change a client's tracking override")
def patch_client(
    ref: str, body: ClientPatch, acct: int = Depends(account_id), store: Store = Depends(get_store)
) -> Any:
    with store.write() as conn:
        return _client_view(accounts.set_client_tracking(conn, acct, ref, body.tracking))
