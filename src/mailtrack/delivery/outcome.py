"""What a reply (or a routing failure) means for one recipient: the status to record and when to retry.

    2xx                                   → sent
    4xx, no reply, temporary DNS failure,
    any refusal before MAIL FROM           → deferred, retried per the schedule …
        … until the first attempt is older than MAX_QUEUE_AGE → soft_bounce "gave up after N attempts"
    5xx about the address (classify_reply) → hard_bounce (and suppressed when configured)
    other 5xx (full, blocked, policy …)    → soft_bounce
"""

from __future__ import annotations

import random
from typing import Any

from ..config import Config
from ..domain.reasons import classify_reply
from ..domain.status import Status
from ..store.delivery import Claimed, Finished
from . import retry
from .routing import RouteFailure
from .smtp import Reply

# A refusal before MAIL FROM (greeting, EHLO, STARTTLS, AUTH) is about the connection — often our own
# configuration — never about the recipient, so it is retried rather than bounced.
CONNECTION_STAGES = frozenset({"connect", "tls"})


def _attempt(c: Claimed, now: float) -> dict[str, Any]:
    return {"attempts": c.attempts + 1, "first_attempt_at": c.first_attempt_at or now, "at": now}


def _temporary(c: Claimed, text: str, data: dict[str, Any], config: Config, now: float,
               rng: random.Random | None) -> Finished:
    common = _attempt(c, now)
    if retry.gave_up(common["first_attempt_at"], now, config.max_queue_age):
        n = common["attempts"]
        return Finished(c.id, Status.SOFT_BOUNCE, reason=f"gave up after {n} attempt{'s' * (n != 1)}: {text}",
                        last_reply=text, data={**data, "gave_up": True}, **common)
    delay = retry.next_delay(common["attempts"], config.retry_schedule, rng)
    return Finished(c.id, Status.DEFERRED, reason=text, last_reply=text, next_attempt_at=now + delay,
                    data={**data, "retry_in": round(delay, 3)}, **common)


def from_reply(c: Claimed, reply: Reply, config: Config, now: float, rng: random.Random | None = None) -> Finished:
    """The outcome of one SMTP attempt."""
    if reply.stage == "throttle":
        return _paused(c, reply, config, now, rng)
    cls = classify_reply(reply.code, reply.text)
    data: dict[str, Any] = {"reply": reply.text, "stage": reply.stage, "host": reply.host, "class": cls.reason}
    if cls.enhanced:
        data["enhanced"] = cls.enhanced
    if cls.outcome == "sent":
        return Finished(c.id, Status.SENT, reason=None, last_reply=reply.text, data=data, **_attempt(c, now))
    if cls.outcome == "deferred" or reply.stage in CONNECTION_STAGES:
        return _temporary(c, reply.text, data, config, now, rng)
    if cls.outcome == "hard_bounce":
        suppress = (c.account_id, c.address, reply.text) if config.suppress_hard_bounces else None
        return Finished(c.id, Status.HARD_BOUNCE, reason=reply.text, last_reply=reply.text, data=data,
                        suppress=suppress, **_attempt(c, now))
    return Finished(c.id, Status.SOFT_BOUNCE, reason=reply.text, last_reply=reply.text, data=data,
                    **_attempt(c, now))


def _paused(c: Claimed, reply: Reply, config: Config, now: float, rng: random.Random | None) -> Finished:
    """Not attempted: the provider is paused. Deferred to the pause's end, spread over a tenth of it;
    no attempt is counted, so a burst of rate limiting does not use up the recipient's retries."""
    if retry.gave_up(c.first_attempt_at, now, config.max_queue_age):
        return _temporary(c, reply.text, {"stage": "throttle"}, config, now, rng)
    until = reply.retry_at or now
    at = until + (rng or random).uniform(0, max(until - now, 1.0) * 0.1)
    return Finished(c.id, Status.DEFERRED, reason=reply.text, next_attempt_at=at, at=now,
                    data={"stage": "throttle", "paused_until": round(until, 3)})


def from_route_failure(c: Claimed, failure: RouteFailure, config: Config, now: float,
                       rng: random.Random | None = None) -> Finished:
    """The outcome when there is nowhere to send to (no such domain, null MX, DNS trouble)."""
    data: dict[str, Any] = {"stage": "route", "dns": failure.reason}
    if failure.status == "deferred":
        return _temporary(c, failure.reason, data, config, now, rng)
    suppress = (c.account_id, c.address, failure.reason) if config.suppress_hard_bounces else None
    return Finished(c.id, Status.HARD_BOUNCE, reason=failure.reason, last_reply=None, data=data,
                    suppress=suppress, **_attempt(c, now))


def from_error(c: Claimed, what: str, config: Config, now: float) -> Finished:
    """Our own failure before any SMTP (e.g. the message could not be built): try again later."""
    return _temporary(c, what, {"stage": "compose"}, config, now, None)
