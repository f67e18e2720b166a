"""Webhook endpoints: create (the secret is shown once), list, change, delete, rotate, test, deliveries, replay.

The payload a receiver gets is documented in the OpenAPI document's ``webhooks`` section (``document``).
"""

from __future__ import annotations

import asyncio
import time
from datetime import datetime
from typing import Any, Literal

from fastapi import APIRouter, Depends, FastAPI, Query, Response
from pydantic import BaseModel, Field, field_validator

from ..config import Config
from ..deps import account_id, get_config, get_store
from ..errors import InputError
from ..store import webhooks as wh
from ..store.db import Store
from ..store.queries import iso
from ..webhooks import guard, payload, sender
from .schemas import Strict

router = APIRouter(prefix="/api/v1", tags=["webhooks"])
ROTATION_OVERLAP = 24 * 3600.0


def _events(v: list[str]) -> list[str]:
    bad = [e for e in v if e != "*" and e not in payload.EVENT_TYPES]
    if bad:
        raise ValueError(f"unknown event type {bad[0]!r}; use '*' or some of: {', '.join(payload.EVENT_TYPES)}")
    return v


class WebhookIn(Strict):
    url: str = Field(max_length=2000, description="http(s) URL that receives the POSTs")
    events: list[str] = Field(default_factory=lambda: ["*"], min_length=1, max_length=20,
                              description="event types, or ['*'] for all")
    description: str = Field("", max_length=500)
    batch: bool = Field(False, description="POST JSON arrays of up to 100 events instead of one event per POST")

    _check_events = field_validator("events")(_events)


class WebhookPatch(Strict):
    url: str | None = Field(None, max_length=2000)
    events: list[str] | None = Field(None, min_length=1, max_length=20)
    description: str | None = Field(None, max_length=500)
    batch: bool | None = None
    enabled: bool | None = Field(None, description="true re-enables an endpoint that was disabled")

    @field_validator("events")
    @classmethod
    def _check(cls, v: list[str] | None) -> list[str] | None:
        return None if v is None else _events(v)


class ReplayIn(Strict):
    since: datetime | None = Field(None, strict=False,  # an ISO 8601 string in JSON: strict mode would refuse it
                                   description="queue again every event at or after this time")
    event_id: str | None = Field(None, pattern=r"^evt_[0-9]{1,18}$", description="or just this one event")


def _view(e: dict[str, Any]) -> dict[str, Any]:
    return {**e, "failing_since": iso(e["failing_since"]), "created_at": iso(e["created_at"]),
            "updated_at": iso(e["updated_at"])}


async def _check_url(url: str, config: Config) -> str:
    try:
        await asyncio.to_thread(guard.check, url, config.webhook_allow_private)
    except guard.UnsafeURL as e:
        raise InputError(f"url: {e}", field="url") from e
    return url.strip()


@router.post("/webhooks", status_code=201, summary="Add an endpoint (the response is the only time the secret shows)")
async def create_webhook(body: WebhookIn, acct: int = Depends(account_id), store: Store = Depends(get_store),
                         config: Config = Depends(get_config)) -> dict[str, Any]:
    url = await _check_url(body.url, config)

    def write() -> tuple[dict[str, Any], str]:
        with store.write() as conn:
            return wh.create_endpoint(conn, acct, url, body.events, body.description, body.batch, time.time())

    view, secret = await asyncio.to_thread(write)
    return {**_view(view), "secret": secret}


@router.get("/webhooks", summary="The account's endpoints")
def list_webhooks(acct: int = Depends(account_id), store: Store = Depends(get_store)) -> dict[str, Any]:
    with store.read() as conn:
        return {"webhooks": [_view(e) for e in wh.list_endpoints(conn, acct)]}


@router.get("/webhooks/{webhook_id}", summary="One endpoint, with counts of its deliveries by state")
def get_webhook(webhook_id: str, acct: int = Depends(account_id), store: Store = Depends(get_store)) -> Any:
    with store.read() as conn:
        e = wh.get_endpoint(conn, acct, webhook_id)
        return {**_view(e), "deliveries": wh.delivery_counts(conn, webhook_id)}


@router.patch("/webhooks/{webhook_id}", summary="Change an endpoint (url, events, description, batch, enabled)")
async def patch_webhook(webhook_id: str, body: WebhookPatch, acct: int = Depends(account_id),
                        store: Store = Depends(get_store), config: Config = Depends(get_config)) -> Any:
    url = await _check_url(body.url, config) if body.url is not None else None

    def write() -> dict[str, Any]:
        with store.write() as conn:
            return wh.update_endpoint(conn, acct, webhook_id, time.time(), url=url, events=body.events,
                                      description=body.description, batch=body.batch, enabled=body.enabled)

    return _view(await asyncio.to_thread(write))


@router.delete("/webhooks/{webhook_id}", status_code=204, summary="Remove an endpoint and its delivery history")
def delete_webhook(webhook_id: str, acct: int = Depends(account_id), store: Store = Depends(get_store)) -> Response:
    with store.write() as conn:
        wh.delete_endpoint(conn, acct, webhook_id)
    return Response(status_code=204)


@router.post("/webhooks/{webhook_id}/rotate-secret",
             summary="A new secret; the old one keeps signing too (two signatures) for 24 hours")
def rotate_secret(webhook_id: str, acct: int = Depends(account_id), store: Store = Depends(get_store)) -> Any:
    now = time.time()
    with store.write() as conn:
        secret = wh.rotate_secret(conn, acct, webhook_id, now, ROTATION_OVERLAP)
    return {"secret": secret, "previous_valid_until": iso(now + ROTATION_OVERLAP)}


@router.post("/webhooks/{webhook_id}/test",
             summary="POST the latest event (or a sample) to the endpoint now, and show the answer")
async def test_webhook(webhook_id: str, acct: int = Depends(account_id), store: Store = Depends(get_store),
                       config: Config = Depends(get_config)) -> Any:
    def read() -> tuple[dict[str, Any], dict[str, Any] | None]:
        with store.read() as conn:
            wh.get_endpoint(conn, acct, webhook_id)
            ep = wh.endpoints_by_id(conn, {webhook_id})[webhook_id]
            return ep, wh.sample_row(conn, acct)

    ep, row = await asyncio.to_thread(read)
    body = payload.build(row) if row is not None else payload.sample(acct)
    now = time.time()
    async with sender.client(config.webhook_timeout, config.webhook_allow_private) as http:
        a = await sender.post(http, ep, wh.signing_secrets(ep, now), f"msg_test_{int(now * 1000)}",
                              [body] if ep["batch"] else body, [])

    def write() -> None:
        with store.write() as conn:
            wh.record_attempts(conn, [a], "test", {}, config.webhook_max_age)

    await asyncio.to_thread(write)
    return {"ok": a.ok, "status_code": a.status_code, "latency_ms": a.latency_ms, "response": a.response,
            "error": a.error, "event": body}


@router.get("/webhooks/{webhook_id}/deliveries",
            summary="Recent attempts: time, status code, latency, first KB of the response")
def list_deliveries(webhook_id: str, limit: int = Query(100, ge=1, le=1000), acct: int = Depends(account_id),
                    store: Store = Depends(get_store)) -> Any:
    with store.read() as conn:
        rows = wh.attempts_of(conn, acct, webhook_id, limit)
        counts = wh.delivery_counts(conn, webhook_id)
    return {"attempts": [{**r, "at": iso(r["at"])} for r in rows], "counts": counts}


@router.post("/webhooks/{webhook_id}/replay", summary="Send again every event since a time, or one event")
def replay(webhook_id: str, body: ReplayIn, acct: int = Depends(account_id), store: Store = Depends(get_store)) -> Any:
    if (body.since is None) == (body.event_id is None):
        raise InputError("give either 'since' (a time) or 'event_id' (evt_…)", field="since")
    since = body.since.timestamp() if body.since is not None else None
    event = int(body.event_id[4:]) if body.event_id is not None else None
    with store.write() as conn:
        n = wh.replay(conn, acct, webhook_id, time.time(), since=since, event_id=event)
    return {"queued": n}


# -- the payload, for the OpenAPI document's ``webhooks`` section ----------------------------------

class EventSource(BaseModel):
    type: str | None
    reference: str | None
    event: str | None


class EventEmail(BaseModel):
    id: str
    subject: str
    source: EventSource
    client: str | None = Field(description="the client's external reference")
    metadata: dict[str, str]


class EventRecipient(BaseModel):
    id: str
    address: str
    kind: Literal["to", "cc", "bcc"]
    status: str = Field(description="the recipient's delivery status once this event happened")
    reason: str | None
    smtp_reply: str | None


class WebhookEvent(BaseModel):
    """One event. Batch endpoints get a JSON array of up to 100 of these per POST.

    Every POST carries Standard Webhooks headers: ``webhook-id``, ``webhook-timestamp`` and
    ``webhook-signature`` (``v1,`` + base64 HMAC-SHA256 over ``id.timestamp.body`` with the
    base64-decoded secret after ``whsec_``; two signatures during a secret rotation).
    """

    id: str = Field(description="evt_…, the same on every redelivery: use it to deduplicate")
    type: Literal[payload.EVENT_TYPES]  # type: ignore[valid-type]
    occurred_at: datetime
    sequence: int = Field(description="increases with each event of this recipient: order by it")
    email: EventEmail
    recipient: EventRecipient
    data: dict[str, Any] = Field(description=(
        "Type-specific: url, link and class (human/apple_privacy/image_proxy/scanner/unknown) for clicked; "
        "class for opened; report (arf/dsn/auto_reply) and the report's fields for complained, auto_reply, "
        "delay_notice and bounces from reports; the SMTP reply, stage and host for delivery results."))


def document(app: FastAPI) -> None:
    """One entry per event type in the OpenAPI ``webhooks`` section."""
    for t in payload.EVENT_TYPES:
        def receiver(body: WebhookEvent) -> None:
            """Answer 2xx within 10 s. Anything else is retried for up to 3 days; 410 disables the endpoint."""

        app.webhooks.post(t, summary=f"{t} event", operation_id=f"webhook_{t}")(receiver)
