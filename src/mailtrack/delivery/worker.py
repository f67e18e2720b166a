"""The delivery worker: the concurrency around the pipeline's named steps (``pipeline.py``).

    claim (thread: lease a batch, load, compose + sign) → route per domain → transport (SMTP,
    reused connections) → classify → results buffer → record (thread: one transaction per batch)

Claiming runs ahead of sending up to ``max_inflight`` recipients; committing takes whatever has
accumulated while the previous commit ran (group commit), so a slow fsync makes batches bigger
instead of making the queue slower. Database and composition work runs in threads, never on the
event loop that also serves HTTP.

Crash safety: a recipient is leased while in flight (``MAILTRACK_DELIVERY_LEASE``). The worker has a
row in ``workers`` that its heartbeat keeps fresh while renewing those leases; when a process dies,
a restart (same machine, or any start on SQLite) releases what it held at once, and on PostgreSQL
another worker takes it over once the heartbeat is ``MAILTRACK_WORKER_DEAD_AFTER`` old (see
``store/workers.py``); the lease's own expiry is only the last resort. A
message goes out twice only when the process died after the remote server's 250 and before the
batch holding that result was committed — at most the in-flight window.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Coroutine
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from .. import metrics
from ..compose import EmailSource, Outgoing
from ..config import Config
from ..domains.signer import DkimSigner
from ..store import delivery as dstore
from ..store import pauses
from ..store import workers as wstore
from ..store.db import Store
from .pipeline import Pipeline, Prepared, Signer, Transport, TransportFactory, smtp_transport
from .routing import Resolver, Route
from .smtp import Job, Reply
from .throttle import Pause, Throttle, parse_limits

log = logging.getLogger("mailtrack.delivery")
_RUNNING: set[str] = set()  # owners of the workers running in this process: alive whatever their heartbeat


@dataclass
class Stats:
    claimed: int = 0
    rejected: int = 0
    composed: int = 0
    compose_seconds: float = 0.0
    committed: int = 0
    commits: int = 0
    commit_seconds: float = 0.0
    by_status: dict[str, int] = field(default_factory=lambda: defaultdict(int))


@dataclass
class _Batch:
    jobs: list[tuple[dstore.Claimed, Outgoing]]
    failed: list[dstore.Finished]
    claimed: int
    rejected: int
    pending: Prepared = field(default_factory=list)  # being composed and signed in the signing processes


class Worker:
    """``await run()`` until ``await stop()``; ``wake_threadsafe()`` after a submission."""

    def __init__(self, config: Config, store: Store, *, owner: str | None = None, batch_size: int = 200,
                 max_inflight: int | None = None, poll_interval: float = 0.5, resolver: Resolver | None = None,
                 lease: float | None = None, transport: TransportFactory | None = None,
                 signer: Signer | None = None) -> None:
        self.config = config
        self.store = store
        self.owner = owner or f"{socket.gethostname()[:30]}:{os.getpid()}:{secrets.token_hex(3)}"
        self.batch_size = batch_size
        self.max_inflight = max_inflight or batch_size * 2
        self.poll_interval = poll_interval
        self.lease = lease if lease is not None else config.delivery_lease
        self.pipeline = Pipeline(config, resolver=resolver,
                                 signer=signer if signer is not None else DkimSigner(store, config))
        self.composer = self.pipeline.composer
        self.router = self.pipeline.router
        self.throttle = Throttle(parse_limits(config.throttle), default_connections=config.max_connections_per_host,
                                 pause=config.throttle_pause)
        self.throttle.on_pause.append(self._paused)
        self._transport_factory = transport or smtp_transport(config, self.throttle)
        self.stats = Stats()
        self._inflight: dict[str, dstore.Claimed] = {}
        self._results: list[dstore.Finished] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake = asyncio.Event()
        self._have_results = asyncio.Event()
        self._stopping = False
        self._last_commit = False  # set once nothing can produce results any more
        self._grace = 5.0
        self._done = asyncio.Event()
        self._sender: Transport | None = None
        self._routing: set[asyncio.Task[None]] = set()
        # retries in flight per destination, at most: the rest of the window stays for other destinations
        self.retry_cap = max(self.max_inflight // 4, self.config.max_connections_per_host * 2, 1)
        self.heartbeat_every = min(float(getattr(config, "worker_heartbeat", 5.0)), self.lease / 3)
        self.dead_after = float(getattr(config, "worker_dead_after", 15.0))
        self.last_beat: float | None = None  # time.time() of the last heartbeat written (readiness)
        self._beat_lock = threading.Lock()  # a heartbeat still running in its thread must not outlive the row
        self._unregistered = False

    # --- control ---------------------------------------------------------------------------

    def wake_threadsafe(self) -> None:
        """Called from another thread (the API) after new recipients were spooled."""
        loop = self._loop
        if loop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self._wake.set)

    async def stop(self, grace: float = 5.0) -> None:
        """Stop claiming; messages in the middle of a transaction get ``grace`` seconds to finish."""
        self._grace = grace
        self._stopping = True
        self._wake.set()
        self._have_results.set()
        if self._loop is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._done.wait(), grace + 15.0)

    @property
    def inflight(self) -> int:
        return len(self._inflight)

    # --- main loop -------------------------------------------------------------------------

    async def run(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._sender = self._transport_factory(self._on_reply)
        _RUNNING.add(self.owner)
        try:
            await asyncio.to_thread(self._beat, [], True)
        except Exception:  # the heartbeat registers it later; the lease expiry still covers a dead peer
            log.exception("registering worker %s failed", self.owner)
        try:
            await asyncio.to_thread(self.pipeline.warm)
        except Exception:  # the first batch starts them instead
            log.exception("starting the signing processes failed")
        committer = asyncio.create_task(self._commit_loop(), name="delivery-commit")
        heartbeat = asyncio.create_task(self._heartbeat(), name="delivery-lease")
        log.info("delivery worker %s started (batch %d, lease %.0fs)", self.owner, self.batch_size, self.lease)
        try:
            while not self._stopping:
                room = self.max_inflight - len(self._inflight)
                if room < min(self.batch_size, self.max_inflight) // 2:
                    await self._sleep(self.poll_interval)
                    continue
                retrying = Counter(c.domain for c in self._inflight.values() if c.attempts > 0)
                try:
                    batch = await asyncio.to_thread(self._claim, min(room, self.batch_size), retrying)
                except Exception:
                    log.exception("claiming recipients failed; retrying")
                    await self._sleep(self.poll_interval)
                    continue
                self._dispatch(batch)
                if batch.claimed < min(room, self.batch_size):
                    await self._sleep(self.poll_interval)  # the queue is empty for now
        finally:
            heartbeat.cancel()
            await self._shutdown(committer)

    async def _sleep(self, timeout: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), timeout)
        self._wake.clear()

    # --- claiming and composing (in a thread) ----------------------------------------------

    def _claim(self, limit: int, retrying: Counter[str] | None = None) -> _Batch:
        now = time.time()
        retrying = Counter(retrying or ())
        with self.store.write() as conn:
            full = {d for d, n in retrying.items() if n >= self.retry_cap}
            res = dstore.claim(conn, self.owner, now, self.lease, limit, full)
            excess = []
            for r in res.recipients:
                if r.attempts > 0:
                    retrying[r.domain] += 1
                    if retrying[r.domain] > self.retry_cap:
                        excess.append(r.id)
            if excess:  # due again at once, for when this destination has room (or for another worker)
                dstore.release(conn, self.owner, excess, now)
                gone = set(excess)
                res.recipients = [r for r in res.recipients if r.id not in gone]
        missing = {r.email_id for r in res.recipients if not self.composer.cached(r.email_id)}
        loaded: dict[str, Any] = {}
        if missing:
            with self.store.read() as conn:
                loaded = dstore.load_emails(conn, missing)
        t0 = time.perf_counter()
        failed: list[dstore.Finished] = []
        sources: dict[str, EmailSource] = {}
        found: list[tuple[EmailSource, dstore.Claimed]] = []
        for r in res.recipients:
            try:
                src = sources.get(r.email_id)
                if src is None and r.email_id in loaded:
                    row, atts = loaded[r.email_id]
                    src = sources[r.email_id] = EmailSource.from_row(
                        row, atts, unsubscribe_events=self.config.unsubscribe_event_messages)
                if src is None:
                    tpl = self.composer.cached_template(r.email_id)
                    if tpl is None:
                        raise LookupError(f"email {r.email_id} not found")
                    src = sources[r.email_id] = tpl.email
                found.append((src, r))
            except Exception as e:  # one bad email must not stop the others
                log.exception("could not compose the message for recipient %s", r.id)
                failed.append(self.pipeline.classify(r, f"could not build the message: {e}", now))
        pending: Prepared = []
        try:
            pending = self.pipeline.prepare_remote(found) or []
        except Exception:  # the pool is broken: compose and sign here
            log.exception("handing a batch to the signing processes failed; preparing it here")
        jobs = [] if pending else self._prepare_here(found, failed, now)
        self.stats.compose_seconds += time.perf_counter() - t0
        self.stats.composed += len(jobs)
        batch = _Batch(jobs, failed, len(res.recipients) + res.rejected, res.rejected)
        batch.pending = pending
        return batch

    def _prepare_here(self, found: list[tuple[EmailSource, dstore.Claimed]], failed: list[dstore.Finished],
                      now: float) -> list[tuple[dstore.Claimed, Outgoing]]:
        """compose → sign in this thread (small batches, unsigned mail, no signing processes)."""
        composed: list[tuple[dstore.Claimed, EmailSource, Outgoing]] = []
        for src, r in found:
            try:
                composed.append((r, src, self.pipeline.compose(src, r)))
            except Exception as e:  # one bad email must not stop the others
                log.exception("could not compose the message for recipient %s", r.id)
                failed.append(self.pipeline.classify(r, f"could not build the message: {e}", now))
        try:
            signed = self.pipeline.sign_batch([(src, out) for _, src, out in composed])
            return [(r, out) for (r, _, _), out in zip(composed, signed, strict=True)]
        except Exception:  # find the one that fails; the others still go
            log.exception("signing a batch failed; signing one by one")
            jobs = []
            for r, src, out in composed:
                try:
                    jobs.append((r, self.pipeline.sign(src, out)))
                except Exception as e:
                    failed.append(self.pipeline.classify(r, f"could not sign the message: {e}", now))
            return jobs

    # --- routing and sending (on the loop) -------------------------------------------------

    def _dispatch(self, batch: _Batch) -> None:
        self.stats.claimed += batch.claimed
        self.stats.rejected += batch.rejected
        by_domain: dict[str, list[tuple[dstore.Claimed, Outgoing]]] = defaultdict(list)
        for c, out in batch.jobs:
            self._inflight[c.id] = c
            by_domain[c.domain].append((c, out))
        for f in batch.failed:
            self._add_result(f)
        for domain, items in by_domain.items():
            self._start(self._route_and_send(domain, items))
        for claims, future in batch.pending:
            for c in claims:
                self._inflight[c.id] = c
            self._start(self._when_prepared(claims, future))

    def _start(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro)
        self._routing.add(task)
        task.add_done_callback(self._routing.discard)

    async def _when_prepared(self, claims: list[dstore.Claimed],
                             future: Future[list[tuple[str, bytes] | str]]) -> None:
        """Route and send a chunk once the signing processes have composed and signed it."""
        now = time.time()
        results: list[Outgoing | str]
        try:
            prepared: list[tuple[str, bytes] | str] = await asyncio.wrap_future(future)
            results = [r if isinstance(r, str) else Outgoing(c.id, r[0], c.address, r[1])
                       for c, r in zip(claims, prepared, strict=True)]
        except Exception:  # a signing process died: compose and sign here, nothing is lost
            log.exception("the signing processes failed a chunk of %d; preparing it here", len(claims))
            ready, failed = await asyncio.to_thread(self._prepare_again, claims, now)
            for f in failed:
                self._add_result(f)
            claims = [c for c, _ in ready]
            results = [out for _, out in ready]
        by_domain: dict[str, list[tuple[dstore.Claimed, Outgoing]]] = defaultdict(list)
        for c, res in zip(claims, results, strict=True):
            if isinstance(res, str):
                self._add_result(self.pipeline.classify(c, res, now))
            else:
                by_domain[c.domain].append((c, res))
        self.stats.composed += sum(len(v) for v in by_domain.values())
        for domain, items in by_domain.items():
            await self._route_and_send(domain, items)

    def _prepare_again(self, claims: list[dstore.Claimed], now: float
                       ) -> tuple[list[tuple[dstore.Claimed, Outgoing]], list[dstore.Finished]]:
        """compose → sign here for a chunk the signing processes could not do: (jobs, failures)."""
        failed: list[dstore.Finished] = []
        try:
            with self.store.read() as conn:
                loaded = dstore.load_emails(conn, {c.email_id for c in claims})
        except Exception as e:
            return [], [self.pipeline.classify(c, f"could not load the email: {e}", now) for c in claims]
        found: list[tuple[EmailSource, dstore.Claimed]] = []
        for c in claims:
            if c.email_id not in loaded:
                failed.append(self.pipeline.classify(c, f"could not build the message: email {c.email_id} not found",
                                                     now))
                continue
            row, atts = loaded[c.email_id]
            found.append((EmailSource.from_row(row, atts, unsubscribe_events=self.config.unsubscribe_event_messages),
                          c))
        return self._prepare_here(found, failed, now), failed

    async def _route_and_send(self, domain: str, items: list[tuple[dstore.Claimed, Outgoing]]) -> None:
        route = await self.pipeline.route(domain)
        now = time.time()
        assert self._sender is not None
        for c, out in items:
            if isinstance(route, Route):
                self.pipeline.send(self._sender, c, out, route)
            else:
                self._add_result(self.pipeline.classify(c, route, now))

    def _paused(self, pause: Pause) -> None:
        """Record a provider pause for `mailtrack status` (best effort: the pause itself is in memory)."""
        def save() -> None:
            with self.store.write() as conn:
                pauses.save(conn, pause.group, pause.until, pause.reason)

        def done(f: asyncio.Future[None]) -> None:
            if f.exception() is not None:
                log.error("recording the pause of %s failed: %s", pause.group, f.exception())

        asyncio.get_running_loop().run_in_executor(None, save).add_done_callback(done)

    def _on_reply(self, job: Job, reply: Reply) -> None:
        self._add_result(self.pipeline.classify(job.tag, reply, time.time()))

    def _add_result(self, f: dstore.Finished) -> None:
        self._results.append(f)
        self._have_results.set()

    # --- committing (in a thread) ----------------------------------------------------------

    async def _commit_loop(self) -> None:
        while True:
            await self._have_results.wait()
            self._have_results.clear()
            if not self._results:
                if self._last_commit:
                    return
                continue
            batch, self._results = self._results, []
            try:
                await asyncio.to_thread(self._commit, batch)
            except Exception:
                log.exception("recording %d delivery results failed; retrying", len(batch))
                self._results[:0] = batch  # nothing is dropped: the next round tries again
                self._have_results.set()
                await asyncio.sleep(self.poll_interval)
                continue
            soonest = None
            for f in batch:
                held = self._inflight.pop(f.recipient_id, None)
                if held is not None and f.attempts is not None:
                    metrics.attempted(f.status.value, held.domain)
                self.stats.by_status[f.status.value] += 1
                if f.next_attempt_at is not None and (soonest is None or f.next_attempt_at < soonest):
                    soonest = f.next_attempt_at
            if soonest is not None and soonest - time.time() < self.poll_interval:
                # a short retry step: come back when it is due, not at the next poll
                loop = asyncio.get_running_loop()
                loop.call_later(max(soonest - time.time(), 0.0) + 0.01, self._wake.set)
            self.stats.committed += len(batch)
            self._wake.set()

    def _commit(self, batch: list[dstore.Finished]) -> None:
        t0 = time.perf_counter()
        with self.store.write() as conn:
            self.pipeline.record(conn, self.owner, batch)
        took = time.perf_counter() - t0
        self.stats.commits += 1
        self.stats.commit_seconds += took
        log.debug("committed %d results in %.1f ms (%d in flight)", len(batch), took * 1000, len(self._inflight))

    async def _heartbeat(self) -> None:
        """Say this worker is alive, renew the leases of everything in flight (a slow destination never
        lets them lapse) and release what dead workers hold."""
        while True:
            await asyncio.sleep(self.heartbeat_every)
            ids = list(self._inflight)
            try:
                await asyncio.to_thread(self._beat, ids)
            except Exception:
                log.exception("heartbeat (renewing %d leases) failed; will retry", len(ids))

    def _beat(self, ids: list[str], starting: bool = False) -> None:
        with self._beat_lock:
            if not self._unregistered:  # once the row is gone at shutdown, it must not come back
                self._beat_locked(ids, starting)

    def _beat_locked(self, ids: list[str], starting: bool) -> None:
        now = time.time()
        with self.store.write() as conn:
            if starting:
                wstore.register(conn, self.owner, now)
            elif not wstore.beat(conn, self.owner, now):
                log.warning("worker %s had been declared dead (no heartbeat for %.0fs); registered again",
                            self.owner, self.dead_after)
            if ids:
                dstore.extend(conn, self.owner, ids, now + self.lease)
            dead, released = wstore.reap(conn, now, self.dead_after, _RUNNING,
                                         at_start_on_sqlite=starting and self.store.is_sqlite)
        self.last_beat = now
        if dead:
            log.warning("released %d recipients held by %d dead worker(s): %s", released, len(dead),
                        ", ".join(dead))
            self.wake_threadsafe()

    # --- stopping --------------------------------------------------------------------------

    async def _shutdown(self, committer: asyncio.Task[None]) -> None:
        sender = self._sender
        try:
            for t in list(self._routing):
                t.cancel()
            if sender is not None:
                sender.drain_queued()  # not started: released below, due at once for whoever runs next
                await sender.close(grace=self._grace)
            self._last_commit = True
            self._have_results.set()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(committer, 10.0)
            # Everything still held has no recorded result; give it back rather than wait for the lease.
            left = list(self._inflight)
            if left:
                try:
                    await asyncio.to_thread(self._release, left)
                    self._inflight.clear()
                except Exception:
                    log.exception("releasing %d recipients failed; their lease will expire", len(left))
            with contextlib.suppress(Exception):
                await asyncio.to_thread(self._unregister)
        finally:
            _RUNNING.discard(self.owner)
            if not committer.done():
                committer.cancel()
            s = self.stats
            log.info("delivery worker %s stopped: claimed %d, committed %d in %d commits, compose %.1f µs/msg",
                     self.owner, s.claimed, s.committed, s.commits, 1e6 * s.compose_seconds / max(s.composed, 1))
            self.pipeline.close()
            self._done.set()

    def _unregister(self) -> None:
        with self._beat_lock, self.store.write() as conn:
            wstore.unregister(conn, self.owner)
            self._unregistered = True

    def _release(self, ids: list[str]) -> None:
        with self.store.write() as conn:
            n = dstore.release(conn, self.owner, ids, time.time())
        log.info("released %d claimed but unsent recipients", n)
