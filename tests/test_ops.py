"""Operations: /healthz, /readyz, /metrics, and steering the queue (CLI and admin API)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from click.testing import CliRunner
from sqlalchemy import select

from mailtrack.cli import main
from mailtrack.delivery.worker import Worker
from mailtrack.store import delivery as dstore
from mailtrack.store.db import Store, make_engine
from mailtrack.store.schema import events, recipients
from tests.conftest import Api, email_body, make_config

ADMIN = {"Authorization": "Bearer admin-secret"}


def ops_api(store: Store, tmp_path: Path, **over: Any) -> Api:
    return Api(store, make_config(tmp_path, admin_token="admin-secret", **over))


def submit(api: Api, *addresses: str) -> str:
    r = api.post("/api/v1/emails", email_body(to=list(addresses), cc=[], bcc=[]))
    assert r.status_code == 202, r.text
    return str(r.json()["id"])


def rows(store: Store) -> dict[str, dict[str, Any]]:
    with store.read() as conn:
        return {r["address"]: dict(r) for r in conn.execute(select(recipients)).mappings()}


def test_healthz_and_readyz_when_the_database_answers(any_store: Store, tmp_path: Path) -> None:
    api = ops_api(any_store, tmp_path)
    assert api.client.get("/healthz").json() == {"status": "ok"}
    r = api.client.get("/readyz")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["database"] == "ok" and body["migrations"] == "current" and body["status"] == "ready"


def test_readyz_is_503_when_the_database_is_unreachable(tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from mailtrack.app import create_app

    dead = Store(make_engine("postgresql+psycopg://nobody@127.0.0.1:1/none?connect_timeout=2"))
    client = TestClient(create_app(make_config(tmp_path), dead))
    assert client.get("/healthz").status_code == 200
    r = client.get("/readyz")
    assert r.status_code == 503
    assert r.json()["database"].startswith("unreachable") and r.json()["status"] == "not ready"
    dead.dispose()


async def test_readyz_follows_the_worker_heartbeat(sqlite_store: Store, tmp_path: Path) -> None:
    config = make_config(tmp_path, worker_heartbeat="0.2s", worker_dead_after="10s")
    api = Api(sqlite_store, config)
    worker = Worker(config, sqlite_store)
    api.app.state.worker = worker
    r = await asyncio.to_thread(api.client.get, "/readyz")
    assert r.status_code == 503 and r.json()["worker"] == "stale"  # not started: no heartbeat yet
    task = asyncio.create_task(worker.run())
    try:
        deadline = time.monotonic() + 20
        while (r := await asyncio.to_thread(api.client.get, "/readyz")).status_code != 200:
            assert time.monotonic() < deadline, r.text
            await asyncio.sleep(0.1)
        assert r.json()["worker"] == "fresh"
        # its row was committed before the heartbeat counted: any later read sees it
        assert (await asyncio.to_thread(api.client.get, "/readyz")).json()["workers_alive"] == 1
    finally:
        await worker.stop()
        await asyncio.wait_for(task, 30)
    r = await asyncio.to_thread(api.client.get, "/readyz")
    assert r.json()["workers_alive"] == 0  # a stopped worker removes its row


def test_metrics_need_the_token_and_show_the_queue(any_store: Store, tmp_path: Path) -> None:
    api = ops_api(any_store, tmp_path, metrics_token="m-token")
    submit(api, "a@one.test", "b@one.test", "c@two.test")
    assert api.client.get("/metrics").status_code == 401
    assert api.client.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
    r = api.client.get("/metrics", headers={"Authorization": "Bearer m-token"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    text = r.text
    assert 'mailtrack_queue_depth{state="spooled"} 3.0' in text
    assert "mailtrack_queue_oldest_age_seconds" in text
    assert 'mailtrack_submitted_recipients_total{source_type="task_sheet"}' in text
    assert "mailtrack_smtp_transaction_seconds_bucket" in text
    assert "@" not in text  # no addresses in labels


def test_admin_queue_api_is_off_without_a_token_and_checks_it(any_store: Store, tmp_path: Path) -> None:
    off = Api(any_store, make_config(tmp_path))
    assert off.client.get("/api/v1/admin/queue", headers=ADMIN).status_code == 403
    assert off.client.get("/api/v1/admin/queue").status_code == 401
    on = ops_api(any_store, tmp_path)
    assert on.client.get("/api/v1/admin/queue").status_code == 401
    assert on.client.get("/api/v1/admin/queue", headers={"Authorization": f"Bearer {on.key}"}).status_code == 401
    assert on.client.get("/api/v1/admin/queue", headers=ADMIN).status_code == 200


def test_hold_release_retry_and_drop_through_the_admin_api(any_store: Store, tmp_path: Path) -> None:
    api = ops_api(any_store, tmp_path)
    submit(api, "a@one.test", "b@one.test", "c@two.test")
    q = api.client.get("/api/v1/admin/queue", headers=ADMIN).json()
    assert {(r["destination"], r["state"], r["count"]) for r in q["queue"]} == {("one.test", "spooled", 2),
                                                                               ("two.test", "spooled", 1)}
    assert api.client.post("/api/v1/admin/queue/hold", json={"destination": "One.Test"}, headers=ADMIN).status_code == 200
    q = api.client.get("/api/v1/admin/queue", headers=ADMIN).json()
    assert ("one.test", "held", 2) in {(r["destination"], r["state"], r["count"]) for r in q["queue"]}
    assert [h["destination"] for h in q["holds"]] == ["one.test"]
    with any_store.write() as conn:  # a worker's claim passes over the held destination
        got = dstore.claim(conn, "w1", time.time(), 60, 10).recipients
    assert [c.address for c in got] == ["c@two.test"]
    r = api.client.post("/api/v1/admin/queue/release", json={"destination": "one.test"}, headers=ADMIN)
    assert r.json() == {"destination": "one.test", "released": 2}
    assert api.client.post("/api/v1/admin/queue/release", json={"destination": "one.test"},
                           headers=ADMIN).status_code == 404
    # retry: a deferred recipient due in an hour is due now
    with any_store.write() as conn:
        conn.execute(recipients.update().where(recipients.c.address == "a@one.test")
                     .values(status="deferred", next_attempt_at=time.time() + 3600))
    t = time.time()
    r = api.client.post("/api/v1/admin/queue/retry", json={"destination": "one.test"}, headers=ADMIN)
    assert r.json() == {"due_now": 2}
    assert rows(any_store)["a@one.test"]["next_attempt_at"] <= time.time() and \
        rows(any_store)["a@one.test"]["next_attempt_at"] >= t - 1
    bad = api.client.post("/api/v1/admin/queue/retry", json={"destination": "x.test", "all": True}, headers=ADMIN)
    assert bad.status_code == 422 and "exactly one" in bad.json()["error"]["message"]
    # drop: soft bounce "removed by operator", with its event; the one in flight (two.test) is left alone
    r = api.client.post("/api/v1/admin/queue/drop", json={"all": True}, headers=ADMIN)
    assert r.json() == {"dropped": 2, "in_flight_left": 1}
    now = rows(any_store)
    assert now["a@one.test"]["status"] == "soft_bounce" and now["a@one.test"]["reason"] == "removed by operator"
    assert now["a@one.test"]["next_attempt_at"] is None
    assert now["c@two.test"]["status"] == "spooled"
    with any_store.read() as conn:
        ev = conn.execute(select(events.c.type, events.c.reason).where(
            events.c.recipient_id == now["b@one.test"]["id"]).order_by(events.c.id)).all()
    assert ev[-1] == ("soft_bounce", "removed by operator")


def test_queue_cli(tmp_path: Path, monkeypatch: Any) -> None:
    db = f"sqlite:///{tmp_path}/mailtrack.db"
    monkeypatch.setenv("MAILTRACK_DATABASE_URL", db)
    monkeypatch.setenv("MAILTRACK_SECRET_KEY", "test-secret")
    from mailtrack.store.db import open_store

    store = open_store(db)
    try:
        api = Api(store, make_config(tmp_path))
        submit(api, "a@one.test", "b@one.test", "c@two.test")
        run = CliRunner().invoke
        out = run(main, ["queue", "list"])
        assert out.exit_code == 0, out.output
        assert "one.test" in out.output and "spooled" in out.output
        out = run(main, ["queue", "hold", "one.test", "--reason", "their MX is down"])
        assert out.exit_code == 0 and "now on hold" in out.output
        out = run(main, ["queue", "list", "--json"])
        assert '"state": "held"' in out.output and "their MX is down" in out.output
        assert run(main, ["queue", "release", "nowhere.test"]).exit_code != 0
        assert "2 recipients due now" in run(main, ["queue", "release", "one.test"]).output
        out = run(main, ["queue", "retry"])
        assert out.exit_code == 2 and "exactly one" in out.output
        rid = rows(store)["c@two.test"]["id"]
        assert "1 recipients due now" in run(main, ["queue", "retry", rid]).output
        out = run(main, ["queue", "drop", "--destination", "one.test"], input="n\n")
        assert out.exit_code != 0 and rows(store)["a@one.test"]["status"] == "spooled"  # asked, refused
        out = run(main, ["queue", "drop", "--destination", "one.test", "--yes"])
        assert "dropped 2 recipients" in out.output, out.output
        assert {r["status"] for a, r in rows(store).items() if a.endswith("one.test")} == {"soft_bounce"}
    finally:
        store.dispose()


def test_the_hit_writer_process_reports_into_the_same_metrics(any_store: Store, tmp_path: Path) -> None:
    """Multiprocess mode: hits are counted in the separate hit-writer process and show in /metrics."""
    import re

    from mailtrack import tokens
    from mailtrack.store import transitions

    api = ops_api(any_store, tmp_path)
    submit(api, "reader@one.test")
    rid = rows(any_store)["reader@one.test"]["id"]
    with any_store.write() as conn:
        transitions.record(conn, transitions.Change(rid, "sent", at=time.time() - 3600))

    def opened_humans() -> float:
        text = api.client.get("/metrics").text
        m = re.search(r'mailtrack_tracking_hits_total\{class="human",kind="opened"\} (\S+)', text)
        return float(m.group(1)) if m else 0.0

    from mailtrack.tracking.routes import warm_up

    warm_up(api.app)  # the writer process runs before the hit (its start-up is not what this test is about)
    before = opened_humans()
    ua = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36"
    r = api.client.get(f"/o/{tokens.open_token('test-secret', rid)}.gif", headers={"User-Agent": ua})
    assert r.status_code == 200
    deadline = time.monotonic() + 30
    while opened_humans() < before + 1:
        assert time.monotonic() < deadline, "the writer's hit never showed in /metrics"
        time.sleep(0.1)
