"""Routing decisions (transport map, smarthost, MX with a stub resolver), retry schedule, classification."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path
from typing import Any

import dns.exception
import dns.resolver
import dns.rrset
import pytest

from mailtrack.delivery import outcome, retry
from mailtrack.delivery.routing import Route, RouteFailure, Router, mx_decision, static_route
from mailtrack.delivery.smtp import Reply
from mailtrack.domain.status import Status
from mailtrack.store.delivery import Claimed
from tests.conftest import make_config


class StubResolver:
    """Answers from a table: rrsets built locally, or a dnspython exception to raise."""

    def __init__(self, table: dict[tuple[str, str], Any]) -> None:
        self.table = table
        self.calls: list[tuple[str, str]] = []

    async def resolve(self, qname: str, rdtype: str) -> Any:
        self.calls.append((qname, rdtype))
        await asyncio.sleep(0.01)
        found = self.table.get((qname, rdtype), dns.resolver.NoAnswer())
        if isinstance(found, BaseException):
            raise found
        return found


def mx(name: str, *records: str) -> dns.rrset.RRset:
    return dns.rrset.from_text(f"{name}.", 300, "IN", "MX", *records)


def a_rec(name: str) -> dns.rrset.RRset:
    return dns.rrset.from_text(f"{name}.", 300, "IN", "A", "192.0.2.10")


def test_transport_map_smarthost_and_mx_precedence(tmp_path: Path) -> None:
    c = make_config(tmp_path, transport_map="sim.test=127.0.0.1:2526, *=mx")
    assert static_route(c, "SIM.test") == Route("127.0.0.1:2526", (("127.0.0.1", 2526),))
    assert static_route(c, "other.test") is None  # → MX
    c = make_config(tmp_path, transport_map="sim.test=127.0.0.1:2526, *=10.0.0.1:25")
    assert static_route(c, "other.test") == Route("10.0.0.1:25", (("10.0.0.1", 25),))
    c = make_config(tmp_path, transport_map="sim.test=127.0.0.1:2526", smarthost="relay.test:587",
                    smarthost_user="u", smarthost_password="p")
    relay = static_route(c, "other.test")
    assert relay is not None and relay.hosts == (("relay.test", 587),) and relay.auth == ("u", "p")
    assert relay.verify_tls
    assert static_route(c, "sim.test") == Route("127.0.0.1:2526", (("127.0.0.1", 2526),))


def test_mx_decision() -> None:
    r = mx_decision("ex.test", [(20, "b.ex.test."), (10, "A.ex.test."), (20, "b.ex.test."), (5, "c.ex.test")])
    assert isinstance(r, Route)
    assert r.hosts == (("c.ex.test", 25), ("a.ex.test", 25), ("b.ex.test", 25))
    assert mx_decision("ex.test", [(0, ".")]) == RouteFailure(
        "hard_bounce", "ex.test: domain does not accept mail (null MX)")
    implicit = mx_decision("ex.test", [])
    assert isinstance(implicit, Route) and implicit.hosts == (("ex.test", 25),)


@pytest.mark.parametrize(("table", "expected"), [
    ({("ex.test", "MX"): mx("ex.test", "10 mx2.ex.test.", "5 mx1.ex.test.")},
     Route("mx:mx1.ex.test,mx2.ex.test", (("mx1.ex.test", 25), ("mx2.ex.test", 25)))),
    ({("ex.test", "MX"): mx("ex.test", "0 .")}, RouteFailure("hard_bounce", "ex.test: domain does not accept mail (null MX)")),
    ({("ex.test", "MX"): dns.resolver.NXDOMAIN()}, RouteFailure("hard_bounce", "ex.test: domain does not exist (NXDOMAIN)")),
    ({("ex.test", "A"): a_rec("ex.test")}, Route("mx:ex.test", (("ex.test", 25),))),  # no MX: RFC 5321 §5.1
    ({}, RouteFailure("hard_bounce", "ex.test: domain has no MX and no address records")),
    ({("ex.test", "MX"): dns.resolver.NoNameservers()}, "deferred"),  # SERVFAIL
    ({("ex.test", "MX"): dns.resolver.LifetimeTimeout(timeout=2.0, errors=[])}, "deferred"),
    ({("ex.test", "A"): dns.exception.Timeout()}, "deferred"),
])
async def test_mx_lookup_outcomes(tmp_path: Path, table: dict[tuple[str, str], Any], expected: Any) -> None:
    router = Router(make_config(tmp_path), StubResolver(table))
    got = await router.route("ex.test")
    if expected == "deferred":
        assert isinstance(got, RouteFailure) and got.status == "deferred" and "temporarily" in got.reason
    else:
        assert got == expected


async def test_lookups_are_cached_and_shared(tmp_path: Path) -> None:
    stub = StubResolver({("ex.test", "MX"): mx("ex.test", "10 mx.ex.test.")})
    router = Router(make_config(tmp_path), stub)
    results = await asyncio.gather(*[router.route("EX.test") for _ in range(20)])
    assert len(set(results)) == 1 and stub.calls == [("ex.test", "MX")]
    await router.route("ex.test")
    assert len(stub.calls) == 1


def test_retry_schedule() -> None:
    assert [retry.base_delay(n) for n in range(1, 7)] == [300, 600, 1200, 2400, 3600, 3600]
    assert retry.base_delay(10_000) == 3600
    assert [retry.base_delay(n, (1.0, 5.0)) for n in (1, 2, 3, 9)] == [1.0, 5.0, 5.0, 5.0]
    rng = random.Random(7)
    delays = [retry.next_delay(1, (), rng) for _ in range(500)]
    assert 270 <= min(delays) < 285 and 315 < max(delays) <= 330  # ±10 %, and it really varies
    assert not retry.gave_up(None, 100.0, 10.0)
    assert not retry.gave_up(95.0, 100.0, 10.0) and retry.gave_up(90.0, 100.0, 10.0)


def claimed(attempts: int = 0, first: float | None = None) -> Claimed:
    return Claimed("r1", "e1", 1, "u@ex.test", "ex.test", attempts, first)


@pytest.mark.parametrize(("code", "text", "status"), [
    (250, "250 2.0.0 Ok: queued as ABC", Status.SENT),
    (451, "451 4.7.1 Try again later", Status.DEFERRED),
    (None, "could not connect to mx:25: Connection refused", Status.DEFERRED),
    (550, "550 5.1.1 <u@ex.test>: Recipient address rejected: User unknown", Status.HARD_BOUNCE),
    (552, "552 5.2.2 Mailbox full", Status.SOFT_BOUNCE),
    (550, "550 5.7.1 Message rejected due to local policy", Status.SOFT_BOUNCE),
])
def test_reply_outcomes(tmp_path: Path, code: int | None, text: str, status: Status) -> None:
    config = make_config(tmp_path, retry_schedule="10s")
    f = outcome.from_reply(claimed(), Reply(code, text, "rcpt", "mx:25"), config, 1000.0)
    assert f.status is status and f.attempts == 1 and f.first_attempt_at == 1000.0
    assert f.last_reply == text
    assert (f.reason is None) == (status is Status.SENT)
    assert (f.next_attempt_at is not None) == (status is Status.DEFERRED)
    if f.next_attempt_at is not None:
        assert 1009.0 <= f.next_attempt_at <= 1011.0
    assert (f.suppress is not None) == (status is Status.HARD_BOUNCE)


def test_gives_up_and_suppression_setting(tmp_path: Path) -> None:
    config = make_config(tmp_path, max_queue_age="60s", suppress_hard_bounces="false")
    f = outcome.from_reply(claimed(4, 900.0), Reply(451, "451 4.7.1 later", "rcpt"), config, 1000.0)
    assert f.status is Status.SOFT_BOUNCE and f.reason == "gave up after 5 attempts: 451 4.7.1 later"
    f = outcome.from_reply(claimed(), Reply(550, "550 5.1.1 unknown user", "rcpt"), config, 1000.0)
    assert f.status is Status.HARD_BOUNCE and f.suppress is None
    f = outcome.from_route_failure(claimed(), RouteFailure("hard_bounce", "ex.test: NXDOMAIN"),
                                   make_config(tmp_path), 1000.0)
    assert f.status is Status.HARD_BOUNCE and f.suppress == (1, "u@ex.test", "ex.test: NXDOMAIN")


@pytest.mark.parametrize("stage", ["connect", "tls"])
def test_refusal_before_mail_from_is_retried_not_bounced(tmp_path: Path, stage: str) -> None:
    config = make_config(tmp_path)
    f = outcome.from_reply(claimed(), Reply(554, "554 5.7.1 No SMTP service for you", stage, "mx:25"), config, 1.0)
    assert f.status is Status.DEFERRED and f.suppress is None
    f = outcome.from_reply(claimed(), Reply(554, "554 5.7.1 No SMTP service for you", "rcpt", "mx:25"), config, 1.0)
    assert f.status is Status.SOFT_BOUNCE
