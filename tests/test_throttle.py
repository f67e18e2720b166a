"""Provider-aware throttling: grouping by MX, recognising rate-limit replies, pausing a whole group."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from mailtrack.cli import main
from mailtrack.delivery.throttle import Throttle, group_of, is_rate_limit, parse_limits
from mailtrack.delivery.worker import Worker
from mailtrack.simulator import Simulator
from mailtrack.store.db import Store
from mailtrack.store.schema import recipients
from tests.conftest import Api, make_config

SIM = "sim.mailtrack.test"

REPLIES = [
    # provider-wide "slow down": pause the group
    (421, "421 4.7.28 Our system has detected an unusual rate of unsolicited mail originating from your IP", True),
    (421, "421-4.7.0 Try again later, closing connection.", True),
    (421, "421 4.7.0 [TSS04] Messages from 203.0.113.7 temporarily deferred due to unexpected volume", True),
    (451, "451 4.7.500 Server busy. Please try again later from [203.0.113.7]", True),
    (451, "451 4.7.650 The mail server [203.0.113.7] has been temporarily rate limited", True),
    # about one address, or not about rate at all: only that recipient is deferred
    (451, "451 4.7.1 <a@x.test>: Try again later", False),
    (450, "450 4.2.0 <a@x.test>: Recipient address rejected: Greylisted", False),
    (452, "452 4.2.2 Mailbox full", False),
    (550, "550 5.7.1 Too many complaints; rate limited for good", False),
    (421, "421 4.3.2 Service shutting down", False),
]


@pytest.mark.parametrize(("code", "text", "expected"), REPLIES)
def test_rate_limit_replies(code: int, text: str, expected: bool) -> None:
    assert is_rate_limit(code, text) is expected


def test_groups_and_limits() -> None:
    assert group_of("gmail-smtp-in.l.google.com.") == "google"
    assert group_of("aspmx.l.google.com") == "google"
    assert group_of("acme-example.mail.protection.outlook.com") == "microsoft"
    assert group_of("mta7.am0.yahoodns.net") == "yahoo"
    assert group_of("mx01.mail.icloud.com") == "apple"
    assert group_of("mx.acme.example") == "mx.acme.example"
    limits = parse_limits("google=4/8.5, mx.acme.example=2/0")
    assert limits["google"].connections == 4 and limits["google"].rate == 8.5
    assert limits["microsoft"].rate == 10  # defaults for the groups not named
    for bad in ("google", "google=4", "google=x/1", "google=0/1"):
        with pytest.raises(ValueError, match="google"):
            parse_limits(bad)


async def test_pause_doubles_and_resumes_gradually() -> None:
    t = Throttle(parse_limits("google=2/16"), pause=60)
    now = 1000.0
    rate_reply = (421, "421 4.7.28 unusual rate")
    assert t.observe("google", *rate_reply, now=now) is not None
    assert t.observe("google", *rate_reply, now=now + 1) is None  # one pause, however many replies arrive
    assert (p := t.paused("google", now + 59)) is not None and p.until == now + 60
    assert t.paused("google", now + 61) is None and t.paused("microsoft", now) is None
    g = t._groups["google"]
    assert [g.rate(now + 60 + s) for s in (0, 31, 61)] == [2.0, 4.0, 8.0]  # resumes at 1/8, doubling
    # limited again while ramping up: twice as long a pause
    assert t.observe("google", *rate_reply, now=now + 125) is not None
    assert t.paused("google", now + 125 + 119) is not None and t.paused("google", now + 125 + 121) is None
    assert g.rate(now + 245 + 91) == 16.0  # fully resumed: the next pause starts at 60 s again
    assert t.observe("google", *rate_reply, now=now + 400) is not None
    assert t.paused("google", now + 461) is None


async def wait_for(check: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not await asyncio.to_thread(check):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


async def test_a_rate_limit_reply_pauses_the_whole_group(any_store: Store, tmp_path: Path) -> None:
    async with Simulator() as sim:
        config = make_config(tmp_path, transport_map=f"{SIM}=127.0.0.1:{sim.port}", throttle_pause="60s",
                             retry_schedule="0.2s", smtp_timeout="5s", max_connections_per_host=1)
        api = Api(any_store, config)
        worker = Worker(config, any_store)
        task = asyncio.create_task(worker.run())
        try:
            assert api.post("/api/v1/emails", {"from": "ops@acme.example", "to": [f"rate-limit@{SIM}"],
                                               "subject": "1", "text": "x"}).status_code == 202

            def rows() -> dict[str, dict[str, object]]:
                with any_store.read() as conn:
                    return {r.address: dict(r._mapping) for r in conn.execute(select(recipients))}

            await wait_for(lambda: rows().get(f"rate-limit@{SIM}", {}).get("status") == "deferred", "the 421")
            limited = rows()[f"rate-limit@{SIM}"]
            assert limited["attempts"] == 1 and "4.7.28" in str(limited["reason"])

            # five more to the same destination: none is attempted while it is paused
            t0 = time.time()
            others = [f"success+{i}@{SIM}" for i in range(5)]
            assert api.post("/api/v1/emails", {"from": "ops@acme.example", "to": others, "subject": "2",
                                               "text": "x"}).status_code == 202
            await wait_for(lambda: all(rows().get(a, {}).get("status") == "deferred" for a in others), "the pause")
        finally:
            await worker.stop()
            await asyncio.wait_for(task, 20)
        assert list(sim.state.messages) == []  # nothing was sent to the paused provider
    for a in others:
        r = rows()[a]
        assert r["attempts"] == 0 and r["first_attempt_at"] is None  # a pause uses up no retries
        assert "paused after a rate-limit reply" in str(r["reason"])
        assert t0 + 50 < float(r["next_attempt_at"]) < t0 + 75  # back at the end of the pause

    url = any_store.engine.url.render_as_string(hide_password=False)
    out = CliRunner().invoke(main, ["status"], env={"MAILTRACK_DATABASE_URL": url,
                                                   "MAILTRACK_SECRET_KEY": "test-secret"}).output
    assert "queue: 6 recipient(s)" in out and f"127.0.0.1:{sim.port}" in out and "4.7.28" in out
    [paused] = api.get("/api/v1/stats").json()["paused_providers"]
    assert paused["group"] == f"127.0.0.1:{sim.port}" and "4.7.28" in paused["reason"]
