"""Sending domains: claim a domain, read the DNS records to publish, check them, rotate the DKIM key."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Response
from pydantic import BaseModel, ConfigDict, Field

from ..config import Config
from ..deps import account_id, get_config, get_store
from ..domains import service
from ..store.db import Store

router = APIRouter(prefix="/api/v1", tags=["domains"])


class DomainIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    domain: str = Field(max_length=253, description="The From domain to send as, e.g. acme.example")
    return_path: str | None = Field(None, max_length=253,
                                    description="Aligned VERP host (a subdomain, CNAME to the bounce domain)")
    selector: str | None = Field(None, max_length=63, description="DKIM selector (default: generated)")


class RotateIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    selector: str | None = Field(None, max_length=63)


@router.post("/domains", status_code=201, summary="Claim a sending domain and make its DKIM key")
def add_domain(body: DomainIn, acct: int = Depends(account_id), store: Store = Depends(get_store),
               config: Config = Depends(get_config)) -> Any:
    return service.add(store, config, acct, body.domain, return_path=body.return_path, selector=body.selector)


@router.get("/domains", summary="This account's sending domains")
def list_domains(acct: int = Depends(account_id), store: Store = Depends(get_store),
                 config: Config = Depends(get_config)) -> Any:
    return {"domains": service.listing(store, config, acct)}


@router.get("/domains/{domain}", summary="The records to publish and the state of each check")
def get_domain(domain: str, acct: int = Depends(account_id), store: Store = Depends(get_store),
               config: Config = Depends(get_config)) -> Any:
    return service.get(store, config, domain, acct)


@router.post("/domains/{domain}/check", summary="Look the records up in DNS now")
def check_domain(domain: str, acct: int = Depends(account_id), store: Store = Depends(get_store),
                 config: Config = Depends(get_config)) -> Any:
    return service.check(store, config, domain, acct)


@router.post("/domains/{domain}/rotate", summary="A new DKIM selector; signing switches once it checks out")
def rotate_domain(domain: str, body: RotateIn | None = None, acct: int = Depends(account_id),
                  store: Store = Depends(get_store), config: Config = Depends(get_config)) -> Any:
    return service.rotate(store, config, domain, acct, selector=body.selector if body else None)


@router.delete("/domains/{domain}", status_code=204, summary="Forget a sending domain and its keys")
def delete_domain(domain: str, acct: int = Depends(account_id), store: Store = Depends(get_store)) -> Response:
    service.remove(store, domain, acct)
    return Response(status_code=204)
