"""The webhook dispatcher: outbox → deliveries → signed POSTs, at least once.

Two loops, each with write transactions of its own, so that on PostgreSQL they overlap: the claims
fan new outbox rows out to the endpoints that want them and claim due deliveries under a lease
(SKIP LOCKED on PostgreSQL, so several processes share the work and no delivery is held by two at
once) whenever the queue has room; the recorder writes the attempts that finished (and renews the
leases of deliveries still held) every few milliseconds while answers come. Claimed
deliveries go to a queue per endpoint, drained by at most WEBHOOK_CONCURRENCY POSTs at a time
(batch endpoints take up to 100 events per POST). A delivery is done on 2xx; anything else is
retried with backoff until WEBHOOK_MAX_AGE. A process killed mid-way loses nothing: its claimed
deliveries come back when their lease runs out (POSTs in flight may then arrive twice).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import random
import secrets
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from ..config import Config
from ..store import webhooks as wh
from ..store.db import Store
from . import payload, retry, sender

log = logging.getLogger("mailtrack.webhooks")

BATCH_SIZE = 100
MAX_QUEUED = 8000  # claimed and waiting for a POST, all endpoints together (POSTs in flight not counted);
# batch mode needs this many: 50 connections of 100-event POSTs hold 5,000 in flight
REFILL_BELOW = MAX_QUEUED // 2  # claim again once the queue is down to this: few, large claims
CLAIM_MAX = 4000  # a claim's size: it must be done before the POSTs drain the rest of the queue
FIRST_CLAIM = 250  # with nothing in flight, claim this many first: the first POSTs wait for less
# The cycle's thread and the event loop hand the GIL back and forth: the database driver lets it go
# around every call, and taking it back waits out the loop's whole switch interval (5 ms by
# default) while the loop is busy — a cycle of a few dozen statements then takes 100+ ms, and the
# loop waits as long for the thread. A short interval measured 3x the single-event rate
# (bench/webhooks.py). It is process-wide; `mailtrack serve`'s other threads wait less too.
SWITCH_INTERVAL = 0.0005
POLL = 0.25
GATHER = 0.02
# The recorder writes at most this often while answers keep coming: each transaction costs a few
# statements and a commit whatever it holds, and at thousands of answers a second that fixed cost
# was a tenth of the dispatcher's work per event. What it delays is only bookkeeping (the POSTs have
# gone): a process killed meanwhile sends those events again, as for POSTs in flight.
RECORD_EVERY = 0.1


@dataclass
class _Queue:
    """One endpoint's claimed deliveries and the POSTs draining them."""

    endpoint: dict[str, Any]
    items: deque[tuple[wh.Claimed, bytes]] = field(default_factory=deque)
    active: int = 0


class Dispatcher:
    def __init__(self, config: Config, store: Store, *, owner: str | None = None, poll: float = POLL) -> None:
        self.config = config
        self.store = store
        self.owner = owner or f"wh-{os.getpid()}-{secrets.token_hex(3)}"
        self.poll = poll
        # held deliveries are renewed every lease/3, so a short lease is safe and a dead process's
        # deliveries come back soon
        self.lease = 3 * config.webhook_timeout + 5.0
        self._renewed = time.monotonic()
        self._queues: dict[str, _Queue] = {}
        self._finished: list[wh.Attempt] = []
        self._retry_at: dict[int, float | None] = {}
        self._created: dict[int, tuple[int, float]] = {}  # delivery id → (attempts so far, created at)
        self._wake = asyncio.Event()  # the claims: new events were written, or the queue has room again
        self._answered = asyncio.Event()  # the recorder: attempts finished
        self._waiting = 0  # claimed events no POST has taken yet
        self._stopping = False
        self._in_flight = 0  # POSTs sent and not answered yet
        self._idle = asyncio.Event()  # set whenever no POST is in flight
        self._rng = random.Random()
        self.sent = 0  # POSTs answered 2xx (for benches and tests)

    def wake_threadsafe(self) -> None:
        """Called from other threads when new events were written."""
        with contextlib.suppress(RuntimeError):
            self._loop.call_soon_threadsafe(self._wake.set)

    def queued(self) -> int:
        return sum(len(q.items) + q.active for q in self._queues.values())

    def waiting(self) -> int:
        """Claimed events no POST has taken yet."""
        return self._waiting

    async def run(self) -> None:
        self._loop = asyncio.get_running_loop()
        if sys.getswitchinterval() > SWITCH_INTERVAL:
            sys.setswitchinterval(SWITCH_INTERVAL)
        async with sender.client(self.config.webhook_timeout, self.config.webhook_allow_private) as http:
            self._http = http
            recorder = asyncio.create_task(self._record_loop())
            # PostgreSQL: two claims at a time, on two connections (SKIP LOCKED shares the rows out):
            # a claim is mostly the server's work, and one at a time left batch mode waiting on it
            claimers = 2 if self.store.is_postgres else 1
            try:
                await asyncio.gather(*[self._claim_loop() for _ in range(claimers)])
            finally:
                self._stopping = True  # also when the claims failed in a way they could not survive
                self._answered.set()
                await recorder
                await self._drain()

    async def _claim_loop(self) -> None:
        """Fan out new events and claim due deliveries whenever the queue has room, until stopped."""
        while not self._stopping:
            room = min(MAX_QUEUED - self._waiting, CLAIM_MAX) if self._waiting <= REFILL_BELOW else 0
            if not self._in_flight:  # idle until now (a backlog after a restart, say): start sending soon
                room = min(room, FIRST_CLAIM)
            claimed: list[wh.Claimed] = []
            fanned = 0
            if room > 0:
                try:
                    claimed, eps, rows, fanned = await asyncio.to_thread(self._claim_sync, room)
                except Exception:  # the store may be away for a while: keep trying, never die
                    log.exception("webhook dispatcher cycle failed; retrying")
                    await asyncio.sleep(1.0)
                    continue
                if claimed:
                    self._enqueue(claimed, eps, rows)
                    await asyncio.sleep(0)  # let the new POSTs start before the next cycle
            if not (fanned or claimed):
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.poll)
                if room > 0:  # nothing was due: let new events gather rather than ask again at once
                    await asyncio.sleep(GATHER)

    async def _record_loop(self) -> None:
        """Record finished attempts (and renew held leases) in transactions of their own, beside the
        claims: on PostgreSQL the two overlap, each on its own connection, instead of taking turns.
        Ends once stopped with nothing left to record (POSTs still in flight are ``_drain``'s)."""
        while True:
            held = list(self._created) if time.monotonic() - self._renewed > self.lease / 3 else []
            if not (self._finished or held):
                if self._stopping:
                    return
                self._answered.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._answered.wait(), self.poll)
                await asyncio.sleep(GATHER)  # let answers gather: one transaction records many
                continue
            started = time.monotonic()
            attempts, retry_at = self._take_finished()
            try:
                await asyncio.to_thread(self._record_sync, attempts, retry_at, held)
                if not self._stopping:  # let the next answers gather into one transaction
                    await asyncio.sleep(max(0.0, started + RECORD_EVERY - time.monotonic()))
            except Exception:  # the store may be away for a while: keep them, keep trying
                log.exception("recording webhook attempts failed; retrying")
                self._finished[:0] = attempts
                self._retry_at.update(retry_at)
                if self._stopping:
                    return  # _drain tries once more; what it cannot record is sent again after the lease
                await asyncio.sleep(1.0)

    async def stop(self) -> None:
        self._stopping = True
        self._wake.set()
        self._answered.set()

    async def _drain(self) -> None:
        """On stop: give POSTs in flight a moment, record them, hand back what was never sent."""
        if self._in_flight:
            self._idle.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._idle.wait(), 5)
        unsent = [c.id for q in self._queues.values() for c, _ in q.items]
        for q in self._queues.values():
            q.items.clear()
        self._waiting = 0
        attempts, retry_at = self._take_finished()
        with self.store.write() as conn:
            wh.record_attempts(conn, attempts, self.owner, retry_at, self.config.webhook_max_age)
            wh.release(conn, self.owner, unsent, time.time())

    def _take_finished(self) -> tuple[list[wh.Attempt], dict[int, float | None]]:
        attempts, self._finished = self._finished, []
        retry_at, self._retry_at = self._retry_at, {}
        return attempts, retry_at

    def _record_sync(self, attempts: list[wh.Attempt], retry_at: dict[int, float | None], held: list[int]) -> None:
        with self.store.write() as conn:
            wh.record_attempts(conn, attempts, self.owner, retry_at, self.config.webhook_max_age)
            if held:
                wh.extend(conn, self.owner, held, time.time() + self.lease)
                self._renewed = time.monotonic()

    def _claim_sync(self, room: int) -> tuple[list[wh.Claimed], dict[str, dict[str, Any]], dict[int, bytes], int]:
        """One transaction: fan out, claim; then (out of the transaction, still off the event loop)
        encode the claimed events' payloads."""
        now = time.time()
        with self.store.write() as conn:
            # retries and expired leases first, then new events, born claimed by this process
            claimed = wh.claim(conn, self.owner, now, self.lease, room)
            fresh = wh.fan_out(conn, now, room - len(claimed), self.owner, self.lease) if room > len(claimed) else []
            claimed += fresh
            fanned = len(fresh)
            eps = wh.endpoints_by_id(conn, {c.endpoint_id for c in claimed}) if claimed else {}
            rows = wh.outbox_rows(conn, [c.outbox_id for c in claimed]) if claimed else {}
        return claimed, eps, payload.encode_many(rows), fanned

    def _enqueue(self, claimed: list[wh.Claimed], eps: dict[str, dict[str, Any]], rows: dict[int, bytes]) -> None:
        for c in claimed:
            row = rows.get(c.outbox_id)
            if row is None:  # the email was deleted: nothing left to say
                self._finished.append(wh.Attempt(c.endpoint_id, [c.id], time.time(), None, 0, None,
                                                 "the event no longer exists"))
                self._retry_at[c.id] = None
                continue
            q = self._queues.get(c.endpoint_id)
            if q is None:
                q = self._queues[c.endpoint_id] = _Queue(eps[c.endpoint_id])
            q.endpoint = eps[c.endpoint_id]
            self._created[c.id] = (c.attempts, c.created_at)
            q.items.append((c, row))
            self._waiting += 1
        for eid, q in list(self._queues.items()):
            self._pump(eid, q)

    def _pump(self, eid: str, q: _Queue) -> None:
        """Start POSTs from the endpoint's queue while it has fewer than WEBHOOK_CONCURRENCY in flight.

        A callback per answer (``_answered_by``) takes the next one: no task or future per POST.
        """
        batch = q.endpoint["batch"]
        while q.items and q.active < self.config.webhook_concurrency and not self._stopping:
            take = [q.items.popleft() for _ in range(min(BATCH_SIZE if batch else 1, len(q.items)))]
            self._waiting -= len(take)
            ids = [c.id for c, _ in take]
            if batch:
                body = payload.join([p for _, p in take])
                msg_id = f"msg_{ids[0]}_{len(ids)}"
            else:
                body = take[0][1]
                msg_id = f"evt_{take[0][0].outbox_id}"
            q.active += 1
            self._in_flight += 1
            sender.start(self._http, q.endpoint, wh.signing_secrets(q.endpoint, time.time()), msg_id, body, ids,
                         partial(self._answered_by, eid, q))
        if not q.items and q.active == 0:
            self._queues.pop(eid, None)

    def _answered_by(self, eid: str, q: _Queue, a: wh.Attempt) -> None:
        q.active -= 1
        self._in_flight -= 1
        self._settle(a)
        if self._in_flight == 0:
            self._idle.set()
        if self._queues.get(eid) is q:
            self._pump(eid, q)

    def _settle(self, a: wh.Attempt) -> None:
        if a.ok:
            self.sent += len(a.delivery_ids)
        else:  # the endpoint is failing since its oldest event that could not go
            a = dataclasses.replace(a, waiting_since=min(
                (self._created[d][1] for d in a.delivery_ids if d in self._created), default=a.at))
            log.info("webhook POST to %s failed: %s", a.endpoint_id, a.error or a.status_code)
            for d in a.delivery_ids:
                attempts, created = self._created.get(d, (0, a.at))
                self._retry_at[d] = retry.next_attempt(attempts + 1, created, time.time(),
                                                       self.config.webhook_max_age,
                                                       self.config.webhook_retry_schedule, self._rng, tried_at=a.at)
        for d in a.delivery_ids:
            self._created.pop(d, None)
        self._finished.append(a)
        self._answered.set()
        if self._waiting <= REFILL_BELOW:
            self._wake.set()
