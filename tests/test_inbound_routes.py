"""GET /api/v1/inbound: an account sees the reports about its own recipients, nobody else's."""

from __future__ import annotations

from pathlib import Path

from mailtrack.inbound import routes
from mailtrack.store.db import Store
from tests.conftest import Api
from tests.test_inbound_payloads import deliver, dsn, inbound_config, running, sent_email


def _api(store: Store, tmp_path: Path) -> Api:
    api = Api(store, inbound_config(tmp_path))
    if not any(getattr(r, "path", "") == "/api/v1/inbound" for r in api.app.routes):
        routes.mount(api.app)
    return api


async def test_inbound_list_is_scoped_and_filtered(any_store: Store, tmp_path: Path) -> None:
    api = _api(any_store, tmp_path)
    config = api.config
    ours = sent_email(any_store, "alice@example.test")
    theirs = sent_email(any_store, "zed@example.test", account="other")
    fbl = f"fbl@{config.bounce_domain}"
    async with running(config, any_store) as server:
        for sent, addr in ((ours, "alice@example.test"), (theirs, "zed@example.test")):
            failed = [(addr, "failed", "5.1.1", "user unknown")]
            await deliver(server, dsn(sent.verp(config, addr), failed, sent.headers(config, addr)),
                          sent.verp(config, addr))
        await deliver(server, b"Subject: ?\r\n\r\nnot a report\r\n", fbl)  # unparsed, nobody's
        await deliver(server, b"Subject: ?\r\n\r\nhello\r\n", ours.verp(config, "alice@example.test"))
        await server.drain()
    body = api.get("/api/v1/inbound").json()
    assert body["total"] == 2
    assert {(r["state"], r["recipient_id"]) for r in body["inbound"]} == {
        ("applied", ours.rids["alice@example.test"]), ("unparsed", ours.rids["alice@example.test"])}
    assert "raw" not in body["inbound"][0] and body["inbound"][0]["received_at"].endswith("Z")
    unparsed = api.get("/api/v1/inbound", params={"state": "unparsed"}).json()
    assert [r["state"] for r in unparsed["inbound"]] == ["unparsed"]
    assert api.get("/api/v1/inbound", params={"state": "orphan"}).json() == {"inbound": [], "total": 0}
    bad = api.get("/api/v1/inbound", params={"state": "bogus"})
    assert bad.status_code == 422 and "state" in bad.json()["error"]["message"]
    assert api.client.get("/api/v1/inbound").status_code == 401
