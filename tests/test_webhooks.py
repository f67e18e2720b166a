"""Webhooks end to end: the core's outbox, the endpoints API, and signed POSTs to a real HTTP receiver."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from mailtrack.store import hits, suppressions
from mailtrack.store import webhooks as wh
from mailtrack.store.db import Store
from mailtrack.store.schema import webhook_outbox
from mailtrack.store.transitions import Change, record_batch
from mailtrack.webhooks.dispatcher import Dispatcher
from tests.conftest import Api, email_body, make_config
from tests.webhook_receiver import Receiver, verified_by

FAST = {"webhook_allow_private": "true", "webhook_retry_schedule": "0.2s", "webhook_timeout": "5s"}


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver().start()
    yield r
    r.stop()


@pytest.fixture
def wapi(any_store: Store, tmp_path: Path) -> Api:
    return Api(any_store, make_config(tmp_path, **FAST))


def _send(api: Api, **over: Any) -> dict[str, Any]:
    r = api.post("/api/v1/emails", email_body(**over))
    assert r.status_code in (200, 201, 202), r.text
    return dict(r.json())


def _endpoint(api: Api, url: str, **over: Any) -> dict[str, Any]:
    r = api.post("/api/v1/webhooks", {"url": url, **over})
    assert r.status_code == 201, r.text
    return dict(r.json())


async def _until(cond: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


@asynccontextmanager
async def dispatching(api: Api, n: int = 1) -> AsyncIterator[list[Dispatcher]]:
    ds = [Dispatcher(api.config, api.store, poll=0.05) for _ in range(n)]
    tasks = [asyncio.create_task(d.run()) for d in ds]
    try:
        yield ds
    finally:
        for d in ds:
            await d.stop()
        await asyncio.wait_for(asyncio.gather(*tasks), 30)


def _outbox(store: Store) -> list[Any]:
    with store.read() as conn:
        return list(conn.execute(select(webhook_outbox).order_by(webhook_outbox.c.id)).mappings())


# -- the core ---------------------------------------------------------------------------------------

def test_every_event_gets_an_outbox_row_numbered_per_recipient(api: Api) -> None:
    email = _send(api, html="<p>hi</p>")
    alice, bob = email["recipients"][0]["id"], email["recipients"][1]["id"]
    with api.store.write() as conn:
        record_batch(conn, [Change(alice, "sent"), Change(bob, "deferred", reason="451 later")])
        hits.record_hits(conn, [hits.Hit(alice, "opened", time.time(), None, "UA", "human"),
                                hits.Hit(alice, "opened", time.time(), None, "UA", "apple_privacy")])
        record_batch(conn, [Change(bob, "hard_bounce", reason="550 5.1.1 no such user")])
    rows = _outbox(api.store)
    mine = {rid: [(r["type"], r["seq"], r["status"]) for r in rows if r["recipient_id"] == rid] for rid in (alice, bob)}
    assert mine[alice] == [("spooled", 1, "spooled"), ("sent", 2, "sent"), ("opened", 3, "sent"),
                           ("opened", 4, "sent")]
    assert mine[bob] == [("spooled", 1, "spooled"), ("deferred", 2, "deferred"), ("hard_bounce", 3, "hard_bounce")]
    assert "creating" not in {r["type"] for r in rows}  # internal: nothing happened yet


def test_suppression_is_an_effect_of_the_event_type_with_one_reason_format(api: Api) -> None:
    rids = [r["id"] for r in _send(api, to=["a@example.test", "b@example.test", "c@example.test"], cc=[],
                                   bcc=["d@example.test"])["recipients"]]
    acct = _account(api)
    with api.store.write() as conn:
        record_batch(conn, [Change(rids[0], "hard_bounce", reason="550 5.1.1 unknown"),
                            Change(rids[1], "complained", reason="Marked as Spam"),
                            Change(rids[2], "unsubscribed", reason="one-click"),
                            Change(rids[3], "hard_bounce", reason="550 5.1.1 unknown", suppress=False)])
        rows, _ = suppressions.search(conn, acct)
    got = {r["address"]: (r["source"], r["reason"]) for r in rows}
    assert got == {"a@example.test": ("hard_bounce", "hard bounce: 550 5.1.1 unknown"),
                   "b@example.test": ("complaint", "marked as spam: Marked as Spam"),
                   "c@example.test": ("unsubscribe", "unsubscribed: one-click")}


def _account(api: Api) -> int:
    from mailtrack.store import accounts

    with api.store.read() as conn:
        found = accounts.account_for_key(conn, api.key)
    assert found is not None
    return found


# -- the endpoints API ------------------------------------------------------------------------------

def test_endpoint_crud_and_the_secret_shown_once(wapi: Api, receiver: Receiver) -> None:
    created = _endpoint(wapi, receiver.url(), events=["hard_bounce", "sent"], description="ERP")
    assert created["secret"].startswith("whsec_") and created["events"] == ["hard_bounce", "sent"]
    wid = created["id"]
    listed = wapi.get("/api/v1/webhooks").json()["webhooks"]
    assert [w["id"] for w in listed] == [wid] and "secret" not in listed[0]
    one = wapi.get(f"/api/v1/webhooks/{wid}").json()
    assert one["description"] == "ERP" and "secret" not in one and one["enabled"] is True
    r = wapi.client.patch(f"/api/v1/webhooks/{wid}", json={"events": ["*"], "batch": True}, headers=wapi.h())
    assert r.status_code == 200 and r.json()["events"] == ["*"] and r.json()["batch"] is True
    other = wapi.new_key("other")
    assert wapi.get(f"/api/v1/webhooks/{wid}", key=other).status_code == 404  # another account's
    assert wapi.client.delete(f"/api/v1/webhooks/{wid}", headers=wapi.h()).status_code == 204
    assert wapi.get(f"/api/v1/webhooks/{wid}").status_code == 404


@pytest.mark.parametrize("url", ["http://127.0.0.1:9/x", "http://10.1.2.3/x", "http://169.254.169.254/latest",
                                 "http://[::1]/x", "http://localhost/x", "ftp://example.com/x", "http:///nohost",
                                 "http://user:pw@93.184.216.34/x"])
def test_unsafe_urls_are_refused_with_422(sqlite_store: Store, tmp_path: Path, url: str) -> None:
    api = Api(sqlite_store, make_config(tmp_path))  # private targets not allowed
    r = api.post("/api/v1/webhooks", {"url": url})
    assert r.status_code == 422 and r.json()["error"]["field"] == "url", r.text


def test_bad_event_types_are_a_422(wapi: Api, receiver: Receiver) -> None:
    r = wapi.post("/api/v1/webhooks", {"url": receiver.url(), "events": ["bounced"]})
    assert r.status_code == 422 and "bounced" in r.json()["error"]["message"]


def test_the_payload_is_documented_in_the_openapi_webhooks_section(wapi: Api) -> None:
    doc = wapi.client.get("/openapi.json").json()
    assert {"hard_bounce", "clicked", "unsubscribed"} <= set(doc["webhooks"])
    schema = doc["components"]["schemas"]["WebhookEvent"]
    assert {"id", "type", "occurred_at", "sequence", "email", "recipient", "data"} <= set(schema["required"])


# -- delivery ---------------------------------------------------------------------------------------

async def test_events_are_posted_signed_with_the_documented_payload(wapi: Api, receiver: Receiver) -> None:
    secret = _endpoint(wapi, receiver.url())["secret"]
    email = _send(wapi, metadata={"invoice": "F-1"}, source={"type": "invoice", "reference": "F-1"})
    async with dispatching(wapi):
        await _until(lambda: len(receiver.on("/hook")) >= 3, "three spooled events")
    got = receiver.on("/hook")
    assert all(verified_by(secret, r.headers, r.body) for r in got)
    assert all(abs(int(r.headers["webhook-timestamp"]) - time.time()) < 300 for r in got)
    events = {e["recipient"]["address"]: e for e in receiver.events()}
    assert set(events) == {"alice@example.test", "bob@example.test", "carol@example.test"}
    e = events["bob@example.test"]
    assert e["type"] == "spooled" and e["sequence"] == 1 and e["id"].startswith("evt_")
    assert [r.headers["webhook-id"] for r in got if r.json()["id"] == e["id"]] == [e["id"]]
    assert e["email"]["id"] == email["id"] and e["email"]["metadata"] == {"invoice": "F-1"}
    assert e["email"]["source"] == {"type": "invoice", "reference": "F-1", "event": None}
    assert e["recipient"]["kind"] == "cc" and e["recipient"]["status"] == "spooled"


async def test_a_failing_receiver_is_retried_until_it_answers_2xx(wapi: Api, receiver: Receiver) -> None:
    receiver.answers["/flaky"] = lambda n: 503 if n <= 2 else 204
    wid = _endpoint(wapi, receiver.url("/flaky"))["id"]
    _send(wapi, cc=[], bcc=[])
    async with dispatching(wapi):
        await _until(lambda: len(receiver.on("/flaky")) >= 3, "a third attempt")
        await _until(lambda: wapi.get(f"/api/v1/webhooks/{wid}").json()["deliveries"] == {"delivered": 1},
                     "the delivery recorded as done")
    got = receiver.on("/flaky")
    assert len({r.headers["webhook-id"] for r in got}) == 1  # the same event each time
    attempts = wapi.get(f"/api/v1/webhooks/{wid}/deliveries").json()["attempts"]
    assert [a["status_code"] for a in reversed(attempts)] == [503, 503, 204]
    assert all(a["latency_ms"] >= 0 and a["at"].endswith("Z") for a in attempts)
    assert wapi.get(f"/api/v1/webhooks/{wid}").json()["failing_since"] is None


async def test_what_went_through_leaves_the_queue_and_is_counted_once(wapi: Api, receiver: Receiver) -> None:
    """A delivery answered 2xx is deleted from the queue and counted on its endpoint; one sent twice
    (recorded twice, as after a lease ran out in another process) counts once; failures stay."""
    receiver.answers["/half"] = lambda n: 204 if n % 2 else 500
    wid = _endpoint(wapi, receiver.url("/half"))["id"]
    _send(wapi)  # three recipients: three events
    async with dispatching(wapi):
        await _until(lambda: wapi.get(f"/api/v1/webhooks/{wid}").json()["deliveries"] == {"delivered": 3},
                     "all three through, the failed tries retried")
    with wapi.store.read() as conn:
        left = conn.exec_driver_sql("SELECT count(*) FROM webhook_deliveries WHERE endpoint_id = ?"
                                    if wapi.store.is_sqlite else
                                    "SELECT count(*) FROM webhook_deliveries WHERE endpoint_id = %s", (wid,)).scalar()
    assert left == 0
    statuses = [a["status_code"] for a in wapi.get(f"/api/v1/webhooks/{wid}/deliveries").json()["attempts"]]
    assert statuses.count(204) == 3 and 500 in statuses
    done = [a for a in wapi.get(f"/api/v1/webhooks/{wid}/deliveries").json()["attempts"] if a["status_code"] == 204]
    with wapi.store.write() as conn:  # the same answer recorded once more: nothing left to count
        wh.record_attempts(conn, [wh.Attempt(wid, done[0]["deliveries"], time.time(), 204, 1, "", None)], "again",
                           {}, wapi.config.webhook_max_age)
    assert wapi.get(f"/api/v1/webhooks/{wid}").json()["deliveries"] == {"delivered": 3}


async def test_410_gone_disables_the_endpoint(wapi: Api, receiver: Receiver) -> None:
    receiver.answers["/gone"] = 410
    wid = _endpoint(wapi, receiver.url("/gone"))["id"]
    _send(wapi, cc=[], bcc=[])
    async with dispatching(wapi):
        await _until(lambda: wapi.get(f"/api/v1/webhooks/{wid}").json()["enabled"] is False, "disabled")
    body = wapi.get(f"/api/v1/webhooks/{wid}").json()
    assert "410" in body["disabled_reason"]


async def test_redirects_are_not_followed_and_the_response_read_is_capped(wapi: Api, receiver: Receiver) -> None:
    receiver.answers["/moved"] = 302
    moved = _endpoint(wapi, receiver.url("/moved"))["id"]
    big = _endpoint(wapi, receiver.url("/big"))["id"]
    _send(wapi, cc=[], bcc=[])
    async with dispatching(wapi):
        await _until(lambda: len(receiver.on("/moved")) >= 2, "a retry after the redirect")
        await _until(lambda: bool(wapi.get(f"/api/v1/webhooks/{big}/deliveries").json()["attempts"]), "big")
    assert receiver.on("/elsewhere") == []
    assert {a["status_code"] for a in wapi.get(f"/api/v1/webhooks/{moved}/deliveries").json()["attempts"]} == {302}
    [attempt] = wapi.get(f"/api/v1/webhooks/{big}/deliveries").json()["attempts"]
    assert attempt["status_code"] == 200 and attempt["response"] == "x" * 1024


async def test_batch_endpoints_get_arrays_of_at_most_100(wapi: Api, receiver: Receiver) -> None:
    secret = _endpoint(wapi, receiver.url("/batch"), batch=True, events=["spooled"])["secret"]
    for i in range(5):
        _send(wapi, to=[f"user{i}-{j}@example.test" for j in range(50)], cc=[], bcc=[])
    async with dispatching(wapi):
        await _until(lambda: len(receiver.events("/batch")) >= 250, "250 events")
    posts = receiver.on("/batch")
    assert all(isinstance(p.json(), list) and 1 <= len(p.json()) <= 100 for p in posts)
    assert all(verified_by(secret, p.headers, p.body) for p in posts)
    assert len({e["id"] for e in receiver.events("/batch")}) == 250


async def test_rotated_secret_old_and_new_both_sign_for_a_day(wapi: Api, receiver: Receiver) -> None:
    created = _endpoint(wapi, receiver.url())
    rotated = wapi.post(f"/api/v1/webhooks/{created['id']}/rotate-secret", {}).json()
    assert rotated["secret"].startswith("whsec_") and rotated["secret"] != created["secret"]
    _send(wapi, cc=[], bcc=[])
    async with dispatching(wapi):
        await _until(lambda: bool(receiver.on("/hook")), "a POST")
    r = receiver.on("/hook")[0]
    assert len(r.headers["webhook-signature"].split()) == 2
    assert verified_by(created["secret"], r.headers, r.body) and verified_by(rotated["secret"], r.headers, r.body)
    assert not verified_by(created["secret"], {**r.headers, "webhook-timestamp": "1"}, r.body)


async def test_replay_since_and_redelivery_of_one_event(wapi: Api, receiver: Receiver) -> None:
    _send(wapi, cc=[], bcc=[])  # fanned out before the endpoint exists: only a replay sends it
    with wapi.store.write() as conn:
        assert wh.fan_out(conn, time.time()) == []  # no delivery made
    wid = _endpoint(wapi, receiver.url())["id"]
    r = wapi.post(f"/api/v1/webhooks/{wid}/replay", {"since": "2000-01-01T00:00:00Z"})
    assert r.status_code == 200 and r.json() == {"queued": 1}
    async with dispatching(wapi):
        await _until(lambda: len(receiver.on("/hook")) == 1, "the replayed event")
        evt = receiver.events()[0]["id"]
        assert wapi.post(f"/api/v1/webhooks/{wid}/replay", {"event_id": evt}).json() == {"queued": 1}
        await _until(lambda: len(receiver.on("/hook")) == 2, "the redelivered event")
    assert [e["id"] for e in receiver.events()] == [evt, evt]
    assert wapi.post(f"/api/v1/webhooks/{wid}/replay", {}).status_code == 422
    assert wapi.post(f"/api/v1/webhooks/{wid}/replay", {"event_id": "evt_999999"}).status_code == 404


async def test_test_endpoint_posts_now_and_shows_the_answer(wapi: Api, receiver: Receiver) -> None:
    receiver.answers["/t"] = 202
    created = _endpoint(wapi, receiver.url("/t"))
    r = wapi.post(f"/api/v1/webhooks/{created['id']}/test", {})
    assert r.status_code == 200 and r.json()["status_code"] == 202 and r.json()["ok"] is True
    [got] = receiver.on("/t")
    assert verified_by(created["secret"], got.headers, got.body)


async def test_several_dispatchers_share_the_work_and_send_each_event_once(wapi: Api, receiver: Receiver) -> None:
    _endpoint(wapi, receiver.url())
    for i in range(4):
        _send(wapi, to=[f"u{i}-{j}@example.test" for j in range(50)], cc=[], bcc=[])
    async with dispatching(wapi, n=3):
        await _until(lambda: len(receiver.on("/hook")) >= 200, "200 events")
        await asyncio.sleep(0.5)  # room for a wrongly duplicated POST to show up
    ids = [e["id"] for e in receiver.events()]
    assert len(ids) == 200 and len(set(ids)) == 200


async def test_engagement_events_carry_class_and_url(wapi: Api, receiver: Receiver) -> None:
    _endpoint(wapi, receiver.url(), events=["opened", "clicked"])
    email = _send(wapi, cc=[], bcc=[], html='<p><a href="https://acme.test/pay">pay</a></p>')
    rid = email["recipients"][0]["id"]
    with wapi.store.write() as conn:
        hits.record_hits(conn, [hits.Hit(rid, "opened", time.time(), None, "UA", "apple_privacy"),
                                hits.Hit(rid, "clicked", time.time(), None, "UA", "human", 0)])
    async with dispatching(wapi):
        await _until(lambda: len(receiver.on("/hook")) >= 2, "open and click")
    by_type = {e["type"]: e for e in receiver.events()}
    assert by_type["opened"]["data"] == {"class": "apple_privacy"}
    assert by_type["clicked"]["data"]["url"] == "https://acme.test/pay"
    assert by_type["clicked"]["data"]["class"] == "human"
    assert by_type["clicked"]["sequence"] == by_type["opened"]["sequence"] + 1


async def test_an_endpoint_failing_for_max_age_is_disabled_and_its_deliveries_given_up(
        any_store: Store, tmp_path: Path, receiver: Receiver) -> None:
    api = Api(any_store, make_config(tmp_path, **{**FAST, "webhook_max_age": "1s"}))
    receiver.answers["/down"] = 500
    wid = _endpoint(api, receiver.url("/down"))["id"]
    _send(api, cc=[], bcc=[])
    async with dispatching(api):
        await _until(lambda: api.get(f"/api/v1/webhooks/{wid}").json()["enabled"] is False, "disabled")
    body = api.get(f"/api/v1/webhooks/{wid}").json()
    assert "failed" in body["disabled_reason"] and body["failing_since"] is not None
    assert body["deliveries"].get("pending", 0) + body["deliveries"].get("failed", 0) == 1


def test_a_try_started_before_max_age_and_answered_after_still_gets_the_last_one() -> None:
    """Otherwise its endpoint, failing all along, would never be disabled: the last try would have
    started less than max_age after the first failure."""
    from mailtrack.webhooks import retry

    created = 1000.0
    # tried at +0.9 s, the 500 (or the timeout) came at +1.5 s: once more, at once (the limit has passed)
    assert retry.next_attempt(5, created, created + 1.5, 1.0, (0.2,), tried_at=created + 0.9) == created + 1.0
    assert retry.next_attempt(6, created, created + 1.1, 1.0, (0.2,), tried_at=created + 1.0) is None
    assert retry.next_attempt(6, created, created + 1.1, 1.0, (0.2,)) is None  # judged by now without tried_at
    got = retry.next_attempt(1, created, created + 0.1, 1.0, (0.2,))
    assert got is not None and created + 0.26 <= got <= created + 0.34  # 0.2 s ± 20 % jitter


async def test_posts_to_one_endpoint_stay_within_its_concurrency(any_store: Store, tmp_path: Path) -> None:
    import threading

    state = {"now": 0, "max": 0}
    lock = threading.Lock()

    def slow(_n: int) -> int:
        with lock:
            state["now"] += 1
            state["max"] = max(state["max"], state["now"])
        time.sleep(0.2)
        with lock:
            state["now"] -= 1
        return 200

    receiver = Receiver(answers={"/slow": slow}).start()
    try:
        api = Api(any_store, make_config(tmp_path, **{**FAST, "webhook_concurrency": "3"}))
        _endpoint(api, receiver.url("/slow"))
        _send(api, to=[f"u{j}@example.test" for j in range(12)], cc=[], bcc=[])
        async with dispatching(api):
            await _until(lambda: len(receiver.on("/slow")) >= 12, "12 POSTs")
    finally:
        receiver.stop()
    assert 1 <= state["max"] <= 3


def test_cli_add_list_show_replay_remove(any_store: Store, tmp_path: Path, receiver: Receiver) -> None:
    from click.testing import CliRunner

    from mailtrack.cli import main

    api = Api(any_store, make_config(tmp_path))  # creates account "acme"
    _send(api, cc=[], bcc=[])
    env = {"MAILTRACK_DATABASE_URL": any_store.engine.url.render_as_string(hide_password=False),
           "MAILTRACK_SECRET_KEY": "k", "MAILTRACK_WEBHOOK_ALLOW_PRIVATE": "true"}
    run = CliRunner()
    r = run.invoke(main, ["webhook", "add", "--account", "acme", "--url", receiver.url(), "--event", "sent"], env=env)
    assert r.exit_code == 0, r.output
    wid, secret = r.output.split()
    assert secret.startswith("whsec_")
    r = run.invoke(main, ["webhook", "list", "--account", "acme", "--json"], env=env)
    assert r.exit_code == 0 and json.loads(r.output)["id"] == wid and secret not in r.output
    r = run.invoke(main, ["webhook", "replay", "--account", "acme", wid, "--since", "2000-01-01"], env=env)
    assert r.exit_code == 0 and "queued 0" in r.output  # only a spooled event so far; it wants sent
    r = run.invoke(main, ["webhook", "show", "--account", "acme", wid], env=env)
    assert r.exit_code == 0 and receiver.url() in r.output
    r = run.invoke(main, ["webhook", "add", "--account", "acme", "--url", "http://10.0.0.1/x"],
                   env={**env, "MAILTRACK_WEBHOOK_ALLOW_PRIVATE": "false"})
    assert r.exit_code != 0 and "private" in r.output and "Traceback" not in r.output
    r = run.invoke(main, ["webhook", "remove", "--account", "acme", wid], env=env)
    assert r.exit_code == 0
    r = run.invoke(main, ["webhook", "show", "--account", "acme", wid], env=env)
    assert r.exit_code != 0 and "Traceback" not in r.output


async def test_removing_an_endpoint_while_its_posts_are_in_flight_breaks_nothing(
        wapi: Api, receiver: Receiver) -> None:
    import threading

    release = threading.Event()
    receiver.answers["/slow"] = lambda _n: 200 if release.wait(20) else 500
    wid = _endpoint(wapi, receiver.url("/slow"))["id"]
    _send(wapi, cc=[], bcc=[])
    async with dispatching(wapi) as [d]:
        await _until(lambda: bool(receiver.on("/slow")), "a POST in flight")
        assert wapi.client.delete(f"/api/v1/webhooks/{wid}", headers=wapi.h()).status_code == 204
        release.set()
        other = _endpoint(wapi, receiver.url("/after"))["id"]
        _send(wapi, cc=[], bcc=[])
        await _until(lambda: bool(receiver.on("/after")), "the next endpoint served")
    assert wapi.get(f"/api/v1/webhooks/{other}").json()["enabled"] is True
    assert d.sent >= 1
