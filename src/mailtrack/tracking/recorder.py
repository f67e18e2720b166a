"""Group commit for hits: one writer thread, batches of up to MAX_BATCH hits per transaction.

A request puts its hit on a queue and awaits a future that resolves when the transaction
holding it has committed (or failed). The writer is a thread rather than an asyncio task so
that it serves every event loop that calls it (uvicorn's, TestClient's per-request portals)
and can flush at interpreter exit; results go back with one ``call_soon_threadsafe`` per loop
per batch.

What can be lost: hits still queued when the process is killed (SIGKILL, power loss) — at most
one batch in flight plus what timed-out requests left behind; and hits that kept failing for
``retry_for`` seconds because the store stayed down. A batch whose commit succeeded but whose
connection broke before the acknowledgement may be written twice on retry.
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import queue
import sys
import threading
import time
import weakref

from sqlalchemy.exc import DBAPIError, OperationalError

from ..store import hits as store_hits
from ..store.db import Store

log = logging.getLogger("mailtrack.tracking")

MAX_BATCH = 1000
LINGER = 0.0  # a short wait for company: fewer, bigger commits at moderate load
IDLE_EXIT = 30.0
# The writer thread needs the GIL for moments between SQL steps; with the default 5 ms switch
# interval a busy event loop makes every such moment wait, and commits queue behind it.
SWITCH_INTERVAL = 0.0002

MAX_BACKLOG = 100_000

_Waiter = tuple[store_hits.Hit, "asyncio.Future[bool] | None", "asyncio.AbstractEventLoop | None"]


def _resolve(items: list[tuple[asyncio.Future[bool], bool | BaseException]]) -> None:
    for fut, outcome in items:
        if fut.done():  # the request gave up waiting (timeout) or went away
            continue
        if isinstance(outcome, BaseException):
            fut.set_exception(outcome)
        else:
            fut.set_result(outcome)


class Recorder:
    """Writes hits in batches; ``submit`` is called on an event loop, the writing on a thread."""

    def __init__(self, store: Store, *, max_batch: int = MAX_BATCH, linger: float = LINGER,
                 retry_for: float = 60.0, idle_exit: float = IDLE_EXIT) -> None:
        self.store = store
        self.max_batch = max_batch
        self.linger = linger
        self.retry_for = retry_for
        self.idle_exit = idle_exit
        self._q: queue.SimpleQueue[_Waiter | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._closed = False
        self.written = 0
        self.batches = 0
        self._owners: dict[str, tuple[str, int]] = {}
        self.lost = 0
        _live.add(self)

    # -- called from request handlers ---------------------------------------------------------

    def submit(self, hit: store_hits.Hit) -> asyncio.Future[bool]:
        """Queue a hit; the future resolves True once committed (False if its recipient is gone)."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[bool] = loop.create_future()
        self._q.put((hit, fut, loop))
        self._ensure_running()
        return fut

    def submit_nowait(self, hit: store_hits.Hit) -> None:
        self._q.put((hit, None, None))
        self._ensure_running()

    async def record(self, hit: store_hits.Hit, timeout: float) -> bool:
        """Queue and wait for the commit; False (logged) when the store failed or was too slow."""
        try:
            return await asyncio.wait_for(self.submit(hit), timeout)
        except TimeoutError:
            log.warning("hit not committed within %.1fs; answering anyway, it stays queued", timeout)
        except Exception as e:  # the reader must never see the store's trouble
            log.warning("hit not recorded yet (%s); it will be retried", e)
        return False

    def _ensure_running(self) -> None:
        if self._thread is not None:
            return
        with self._lock:
            if self._thread is None and not self._closed:
                if sys.getswitchinterval() > SWITCH_INTERVAL:
                    sys.setswitchinterval(SWITCH_INTERVAL)
                self._thread = threading.Thread(target=self._run, name="mailtrack-hits", daemon=True)
                self._thread.start()

    # -- the writer thread --------------------------------------------------------------------

    def _run(self) -> None:
        pending: list[_Waiter] = []
        failing_since: float | None = None
        backoff = 0.05
        while True:
            try:
                if not pending:
                    first = self._q.get(timeout=self.idle_exit)
                    if first is None:
                        return
                    pending.append(first)
                stop = self._gather(pending)
                ok = self._write(pending)
                if ok:
                    pending = []
                    failing_since, backoff = None, 0.05
                else:
                    failing_since = failing_since or time.monotonic()
                    if time.monotonic() - failing_since > self.retry_for or len(pending) > MAX_BACKLOG:
                        self.lost += len(pending)
                        log.error("store unavailable for %.0fs: %d hits lost", self.retry_for, len(pending))
                        pending = []
                    else:
                        time.sleep(backoff)
                        backoff = min(backoff * 2, 2.0)
                if stop:
                    if pending:
                        self._write(pending)
                    return
            except queue.Empty:
                with self._lock:
                    if self._q.empty():
                        self._thread = None
                        return
            except BaseException:  # never let the writer die silently with hits in hand
                log.exception("hit writer failed; %d hits dropped", len(pending))
                self.lost += len(pending)
                pending = []

    def _gather(self, pending: list[_Waiter]) -> bool:
        """Add queued hits to the batch, lingering briefly for more; True when asked to stop."""
        deadline = time.monotonic() + self.linger
        while len(pending) < self.max_batch:
            try:
                item = self._q.get_nowait()
            except queue.Empty:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                try:
                    item = self._q.get(timeout=left)
                except queue.Empty:
                    return False
            if item is None:
                return True
            pending.append(item)
        return False

    def _write(self, batch: list[_Waiter]) -> bool:
        hits = [h for h, _, _ in batch]
        outcome: bool | BaseException
        try:
            with self.store.write() as conn:
                written = store_hits.record_hits(conn, hits, self._owners)
            self.written += written
            self.batches += 1
            outcome = True
            ok = True
        except (OperationalError, DBAPIError) as e:
            log.warning("writing %d hits failed, will retry: %s", len(hits), e)
            outcome, ok = e, False
        except Exception as e:  # not the store being away: retrying would fail the same way
            log.exception("writing %d hits failed; they are dropped", len(hits))
            self._owners.clear()
            self.lost += len(hits)
            outcome, ok = e, True
        self._answer(batch, outcome)
        return ok

    @staticmethod
    def _answer(batch: list[_Waiter], outcome: bool | BaseException) -> None:
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[bool], bool | BaseException]]] = {}
        for _, fut, loop in batch:
            if fut is not None and loop is not None and not fut.done():
                by_loop.setdefault(loop, []).append((fut, outcome))
        for loop, items in by_loop.items():
            try:
                loop.call_soon_threadsafe(_resolve, items)
            except RuntimeError:  # that loop has closed; nobody is waiting any more
                pass

    # -- shutdown -----------------------------------------------------------------------------

    def close(self, timeout: float = 5.0) -> None:
        """Write what is queued (one attempt) and stop the writer."""
        with self._lock:
            self._closed = True
            thread = self._thread
        if thread is None:
            leftover: list[_Waiter] = []
            while True:
                try:
                    item = self._q.get_nowait()
                except queue.Empty:
                    break
                if item is not None:
                    leftover.append(item)
            if leftover:
                self._write(leftover)
            return
        self._q.put(None)
        thread.join(timeout)


_live: weakref.WeakSet[Recorder] = weakref.WeakSet()


def _close_all() -> None:
    for r in list(_live):
        r.close()


atexit.register(_close_all)

