"""The HTTP API end to end through a real app and store (SQLite, and PostgreSQL when configured)."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from mailtrack.store.db import Store
from tests.conftest import Api, email_body, make_config


def test_submit_returns_every_recipient_with_kind_and_status(api: Api) -> None:
    r = api.post("/api/v1/emails", email_body())
    assert r.status_code == 202, r.text
    body = r.json()
    assert [(x["address"], x["kind"], x["status"]) for x in body["recipients"]] == [
        ("alice@example.test", "to", "spooled"), ("bob@example.test", "cc", "spooled"),
        ("carol@example.test", "bcc", "spooled"),
    ]
    assert body["status"] == "spooled" and body["tracking"] is True
    got = api.get(f"/api/v1/emails/{body['id']}").json()
    assert {x["id"] for x in got["recipients"]} == {x["id"] for x in body["recipients"]}
    assert [e["type"] for e in got["timeline"]].count("spooled") == 3
    assert got["recipients"][0]["opens"] == {"total": 0, "human": 0}


def test_suppressed_address_is_rejected_with_reason(api: Api) -> None:
    assert api.post("/api/v1/suppressions", {"address": "bob@example.test", "reason": "asked us"}).status_code == 201
    body = api.post("/api/v1/emails", email_body()).json()
    bob = next(x for x in body["recipients"] if x["address"] == "bob@example.test")
    assert bob["status"] == "rejected" and "asked us" in bob["reason"]
    assert body["status"] == "spooled"


@pytest.mark.parametrize("over,field", [
    ({"subject": "Hi\r\nBcc: victim@example.test"}, "subject"),
    ({"to": ["a@example.test\r\nRCPT TO:<x@y.test>"]}, "to[0]"),
    ({"to": ["not-an-address"]}, "to[0]"),
    ({"to": [], "cc": [], "bcc": []}, "to"),
    ({"from": "ops@acme.test\nBcc: x@y.test"}, "from"),
    ({"headers": {"Bcc": "x@y.test"}}, "headers.Bcc"),
    ({"headers": {"X-Ref": "a\r\nb"}}, "headers.X-Ref"),
    ({"text": None, "html": None}, "text"),
    ({"attachments": [{"filename": "a.pdf", "content_type": "application/pdf", "content": "***"}]},
     "attachments[0].content"),
    ({"source": {"type": "spaceship"}}, "source.type"),
    ({"reply_to": "x\x00@y.test"}, "reply_to"),
])
def test_bad_input_is_422_naming_the_field(api: Api, over: dict[str, object], field: str) -> None:
    r = api.post("/api/v1/emails", email_body(**over))
    assert r.status_code == 422, r.text
    err = r.json()["error"]
    assert err["field"] == field, err
    assert err["message"]


def test_oversize_message_is_422(api: Api) -> None:
    api.app.state.config = api.config.replace(max_message_size=1000)
    att = base64.b64encode(b"x" * 2000).decode()
    r = api.post("/api/v1/emails", email_body(attachments=[{"filename": "big.bin", "content": att}]))
    assert r.status_code == 422 and "limit" in r.json()["error"]["message"]


def test_malformed_json_is_422_not_500(api: Api) -> None:
    r = api.client.post("/api/v1/emails", content=b"{not json", headers={**api.h(), "content-type": "application/json"})
    assert r.status_code == 422


def test_no_key_is_401_and_unknown_key_is_401(api: Api) -> None:
    assert api.client.post("/api/v1/emails", json=email_body()).status_code == 401
    r = api.client.get("/api/v1/stats", headers={"Authorization": "Bearer nope"})
    assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"


def test_other_accounts_objects_are_404_on_every_endpoint(api: Api) -> None:
    body = api.post("/api/v1/emails", email_body()).json()
    api.post("/api/v1/suppressions", {"address": "x@example.test"})
    api.post("/api/v1/clients", {"external_ref": "CL-1"})
    other = api.new_key("globex")
    rid = body["recipients"][0]["id"]
    assert api.get(f"/api/v1/emails/{body['id']}", key=other).status_code == 404
    assert api.get(f"/api/v1/recipients/{rid}/events", key=other).status_code == 404
    assert api.client.delete("/api/v1/suppressions/x@example.test", headers=api.h(other)).status_code == 404
    assert api.get("/api/v1/clients/CL-1", key=other).status_code == 404
    assert api.client.patch("/api/v1/clients/CL-1", json={"tracking": False}, headers=api.h(other)).status_code == 404
    assert api.post("/api/v1/emails", email_body(client="CL-1"), key=other).status_code == 404
    assert api.get("/api/v1/emails", key=other).json()["total"] == 0
    assert api.get("/api/v1/suppressions", key=other).json()["total"] == 0
    assert api.get("/api/v1/stats", key=other).json() == {"statuses": {}, "events": {}}
    # and the owner still sees them
    assert api.get(f"/api/v1/recipients/{rid}/events").status_code == 200


def test_idempotency_key_sends_nothing_twice(api: Api) -> None:
    a = api.post("/api/v1/emails", email_body(), headers={"Idempotency-Key": "inv-1001"}).json()
    b = api.post("/api/v1/emails", email_body(), headers={"Idempotency-Key": "inv-1001"}).json()
    assert a["id"] == b["id"]
    assert api.get("/api/v1/emails").json()["total"] == 1


def test_batch_keeps_order_and_limits_size(api: Api) -> None:
    emails = [email_body(to=[f"u{i}@example.test"], cc=[], bcc=[]) for i in range(5)]
    r = api.post("/api/v1/emails/batch", {"emails": emails})
    assert r.status_code == 202
    assert [e["recipients"][0]["address"] for e in r.json()["emails"]] == [f"u{i}@example.test" for i in range(5)]
    too_many = {"emails": [email_body()] * 501}
    r = api.post("/api/v1/emails/batch", too_many)
    assert r.status_code == 422 and r.json()["error"]["field"] == "emails"
    bad = api.post("/api/v1/emails/batch", {"emails": [email_body(), email_body(subject="a\nb")]})
    assert bad.status_code == 422 and bad.json()["error"]["field"] == "emails[1].subject"


def test_list_filters_and_stats(api: Api) -> None:
    api.post("/api/v1/emails", email_body(source={"type": "invoice", "reference": "INV-9"}))
    api.post("/api/v1/emails", email_body())
    r = api.get("/api/v1/emails", params={"source_type": "invoice"}).json()
    assert r["total"] == 1 and r["emails"][0]["source"]["reference"] == "INV-9"
    r = api.get("/api/v1/emails", params={"source_reference": "T-42", "status": "spooled"}).json()
    assert r["total"] == 1
    assert api.get("/api/v1/emails", params={"since": "yesterday"}).status_code == 422
    st = api.get("/api/v1/stats").json()
    assert st["statuses"] == {"spooled": 6} and st["events"]["creating"] == 6


def test_tracking_hierarchy_site_client_email(api: Api) -> None:
    api.post("/api/v1/clients", {"external_ref": "CL-OFF", "tracking": False})
    api.post("/api/v1/clients", {"external_ref": "CL-INHERIT"})
    assert api.post("/api/v1/emails", email_body(client="CL-OFF")).json()["tracking"] is False
    assert api.post("/api/v1/emails", email_body(client="CL-OFF", tracking=True)).json()["tracking"] is True
    assert api.post("/api/v1/emails", email_body(client="CL-INHERIT")).json()["tracking"] is True
    assert api.client.put("/api/v1/settings/tracking", json={"enabled": False}, headers=api.h()).status_code == 200
    assert api.get("/api/v1/settings/tracking").json() == {"enabled": False}
    assert api.post("/api/v1/emails", email_body(client="CL-INHERIT")).json()["tracking"] is False
    api.client.patch("/api/v1/clients/CL-INHERIT", json={"tracking": True}, headers=api.h())
    assert api.post("/api/v1/emails", email_body(client="CL-INHERIT")).json()["tracking"] is True


def test_suppression_csv_and_delete(api: Api) -> None:
    api.post("/api/v1/suppressions", {"address": "x@example.test", "reason": "manual"})
    csv_text = api.client.get("/api/v1/suppressions.csv", headers=api.h()).text
    assert csv_text.splitlines()[0] == "address,reason,source,created_at" and "x@example.test" in csv_text
    assert api.client.delete("/api/v1/suppressions/x@example.test", headers=api.h()).status_code == 204
    assert api.client.delete("/api/v1/suppressions/x@example.test", headers=api.h()).status_code == 404
    assert api.post("/api/v1/suppressions", {"address": "bad"}).status_code == 422


def test_openapi_lists_every_endpoint(api: Api) -> None:
    paths = api.client.get("/openapi.json").json()["paths"]
    for p in ["/api/v1/emails", "/api/v1/emails/batch", "/api/v1/emails/{email_id}",
              "/api/v1/recipients/{recipient_id}/events", "/api/v1/stats", "/api/v1/suppressions",
              "/api/v1/suppressions/{address}", "/api/v1/settings/tracking", "/api/v1/clients",
              "/api/v1/clients/{ref}"]:
        assert p in paths, p


def test_every_api_endpoint_needs_a_key(api: Api) -> None:
    """Walks the OpenAPI document, so a new endpoint without authentication fails here."""
    paths = api.client.get("/openapi.json").json()["paths"]
    checked = 0
    for path, methods in paths.items():
        if not path.startswith("/api/v1/"):
            continue
        concrete = path.replace("{", "").replace("}", "")  # any value: auth is checked first
        for method in methods:
            r = api.client.request(method.upper(), concrete, json={})
            assert r.status_code == 401, (method, path, r.status_code, r.text)
            assert "API key" in r.json()["error"]["message"]
            checked += 1
    assert checked >= 18


def test_a_body_far_over_the_limit_is_413_before_it_is_read(any_store: Store, tmp_path: Path) -> None:
    small = Api(any_store, make_config(tmp_path, max_message_size=1000))
    r = small.client.post("/api/v1/emails", content=b"x" * (17 * 1024 * 1024),
                          headers={**small.h(), "content-type": "application/json"})
    assert r.status_code == 413
    assert r.json()["error"]["message"]


@pytest.mark.parametrize("path", [
    "/api/v1/emails?offset=99999999999999999999",
    "/api/v1/suppressions?offset=99999999999999999999",
    "/api/v1/inbound?offset=99999999999999999999",
])
def test_absurd_offsets_are_422(api: Api, path: str) -> None:
    r = api.get(path)
    assert r.status_code == 422 and r.json()["error"]["field"] == "offset"


@pytest.mark.parametrize("ref", ["³", "99999999999999999999999"])
def test_odd_client_references_are_404_not_500(api: Api, ref: str) -> None:
    assert api.get(f"/api/v1/clients/{ref}").status_code == 404
    r = api.client.patch(f"/api/v1/clients/{ref}", json={"tracking": None}, headers=api.h())
    assert r.status_code == 404


def test_email_view_says_engagement_is_an_estimate(api: Api) -> None:
    tracked = api.post("/api/v1/emails", email_body()).json()
    untracked = api.post("/api/v1/emails", email_body(tracking=False)).json()
    assert "never be 100% accurate" in api.get(f"/api/v1/emails/{tracked['id']}").json()["engagement_note"]
    assert api.get(f"/api/v1/emails/{untracked['id']}").json()["engagement_note"].startswith("not tracked")
