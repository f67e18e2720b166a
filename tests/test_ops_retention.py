"""Retention: old emails go with everything that hangs off them; statistics survive; queued mail stays."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select, update

from mailtrack.cli import main
from mailtrack.ops.retention import DailyPurge
from mailtrack.store import queries, retention, transitions
from mailtrack.store.db import Store, open_store
from mailtrack.store.schema import attachments, emails, events, links, recipients, webhook_outbox
from tests.conftest import Api, email_body, make_config

DAY = 86400.0
HTML = '<p>Hello <a href="https://portal.acme.test/x">portal</a></p>'


def make_email(api: Api, age_days: float, *, deliver: bool = True, opened: bool = False) -> str:
    """An email with two recipients, its rows dated ``age_days`` ago; delivered (and opened) when asked."""
    body = email_body(to=["a@example.test", "b@example.test"], cc=[], bcc=[], html=HTML,
                      attachments=[{"filename": "a.txt", "content_type": "text/plain", "content": "aGVsbG8="}])
    eid = str(api.post("/api/v1/emails", body).json()["id"])
    at = time.time() - age_days * DAY
    with api.store.write() as conn:
        rids = list(conn.execute(select(recipients.c.id).where(recipients.c.email_id == eid)).scalars())
        if deliver:
            for rid in rids:
                transitions.record(conn, transitions.Change(rid, "sent", at=at + 60))
            if opened:
                transitions.record(conn, transitions.Change(rids[0], "opened", at=at + 120))
        conn.execute(update(emails).where(emails.c.id == eid).values(created_at=at))
        conn.execute(update(events).where(events.c.email_id == eid, events.c.at > at + 120).values(at=at))
        conn.execute(update(recipients).where(recipients.c.email_id == eid).values(updated_at=at + 60))
    return eid


def counts(store: Store) -> dict[str, int]:
    with store.read() as conn:
        return {t.name: int(conn.execute(select(func.count()).select_from(t)).scalar_one())
                for t in (emails, recipients, events, links, attachments)}


def stats(store: Store, since: float | None = None) -> dict[str, Any]:
    with store.read() as conn:
        return queries.stats(conn, 1, since)


def test_purge_keeps_statistics_and_queued_mail(any_store: Store, tmp_path: Path) -> None:
    api = Api(any_store, make_config(tmp_path))
    old = [make_email(api, 200, opened=True), make_email(api, 190)]
    queued_old = make_email(api, 200, deliver=False)  # still spooled: never purged
    new = make_email(api, 1, opened=True)
    before_all, before_since = stats(any_store), stats(any_store, time.time() - 400 * DAY)
    assert before_all["events"]["opened"] == 2 and before_all["statuses"]["sent"] == 6
    cutoff = time.time() - 180 * DAY
    with any_store.read() as conn:
        dry = retention.count(conn, cutoff)
    assert (dry.emails, dry.recipients) == (2, 4)
    assert counts(any_store)["emails"] == 4  # a dry run removes nothing
    got = retention.purge(any_store, cutoff, chunk=1)  # one email per transaction
    assert (got.emails, got.recipients, got.events) == (dry.emails, dry.recipients, dry.events)
    with any_store.read() as conn:
        left = set(conn.execute(select(emails.c.id)).scalars())
        orphans = conn.execute(select(func.count()).select_from(events).where(events.c.email_id.in_(old))).scalar()
        for t in (links, attachments, webhook_outbox):
            assert set(conn.execute(select(t.c.email_id)).scalars()) == {queued_old, new}
    assert left == {queued_old, new} and orphans == 0
    assert stats(any_store) == before_all
    assert stats(any_store, time.time() - 400 * DAY) == before_since
    recent = stats(any_store, time.time() - 10 * DAY)  # the purged days are not in a recent window
    assert recent["events"].get("opened") == 1
    assert retention.purge(any_store, cutoff).emails == 0  # nothing more to do
    assert stats(any_store) == before_all  # and the rollups were not counted twice


async def test_daily_purge_runs_in_the_background(sqlite_store: Store, tmp_path: Path) -> None:
    config = make_config(tmp_path, retention="30d")
    api = Api(sqlite_store, config)
    make_email(api, 40)
    keep = make_email(api, 2)
    purger = DailyPurge(config, sqlite_store, first_after=0.0)
    task = asyncio.create_task(purger.run())
    try:
        deadline = time.monotonic() + 30
        while counts(sqlite_store)["emails"] != 1:
            assert time.monotonic() < deadline, "the daily purge did not run"
            await asyncio.sleep(0.1)
    finally:
        await purger.stop()
        await asyncio.wait_for(task, 30)
    with sqlite_store.read() as conn:
        assert list(conn.execute(select(emails.c.id)).scalars()) == [keep]


def test_purge_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    db = f"sqlite:///{tmp_path}/mailtrack.db"
    monkeypatch.setenv("MAILTRACK_DATABASE_URL", db)
    monkeypatch.setenv("MAILTRACK_SECRET_KEY", "test-secret")
    store = open_store(db)
    try:
        api = Api(store, make_config(tmp_path))
        make_email(api, 100)
        make_email(api, 10)
        out = CliRunner().invoke(main, ["purge", "--older-than", "90d", "--dry-run"])
        assert out.exit_code == 0 and "would purge 1 emails, 2 recipients" in out.output, out.output
        assert counts(store)["emails"] == 2
        out = CliRunner().invoke(main, ["purge"])  # the default retention, 180 days: nothing that old
        assert "purged 0 emails" in out.output, out.output
        out = CliRunner().invoke(main, ["purge", "--older-than", "90d"])
        assert out.exit_code == 0 and "purged 1 emails, 2 recipients" in out.output, out.output
        assert counts(store)["emails"] == 1
        bad = CliRunner().invoke(main, ["purge", "--older-than", "forever"])
        assert bad.exit_code == 2 and "not a duration" in bad.output
    finally:
        store.dispose()
