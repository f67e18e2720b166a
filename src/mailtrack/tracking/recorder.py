"""Hits are answered at once and written afterwards: a sender thread feeds a separate writer process.

A request hands its hit to ``submit`` (a deque append; any thread, any event loop) and answers
the reader without waiting: neither the pixel nor the redirect ever waits for a commit. One
sender thread per process runs its own event loop with one :class:`Channel` to the writer process
(Unix socket, abstract address; the writer accepts only its parent's pid), which commits batches
with group commit and acknowledges each after its commit. The SQL runs in that process, so it
never competes with the request loop for the GIL. The sender loop outlives any request loop, so a
hit is resent to a restarted writer and never depends on the loop that took it.

What can be lost: hits not yet committed when the whole HTTP process is killed (SIGKILL, power
loss), and hits that kept failing for ``retry_for`` seconds because the store stayed down (counted
in ``lost``). A batch whose commit succeeded but whose acknowledgement was lost (writer killed in
between) is written twice on resend.
"""

from __future__ import annotations

import asyncio
import atexit
import collections
import concurrent.futures
import itertools
import logging
import multiprocessing
import os
import secrets
import threading
import time
import weakref
from multiprocessing.connection import Connection as Pipe
from multiprocessing.process import BaseProcess
from typing import Any

from ..store import hits as store_hits
from ..store.db import Store
from . import writer
from .channel import Channel

log = logging.getLogger("mailtrack.tracking")

MAX_BATCH = 1000
IDLE_EXIT = 5.0  # the sender thread and the writer stop this long after the last hit (tests make many apps)
START_TIMEOUT = 30.0
GATHER = 0.005  # seconds between pulls while hits keep coming


class Recorder:
    """Takes hits from request handlers and sees that the writer process commits them."""

    def __init__(self, store: Store, *, max_batch: int = MAX_BATCH, retry_for: float = 60.0,
                 idle_exit: float = IDLE_EXIT, url: str | None = None) -> None:
        self.store = store
        self.url = url or store.engine.url.render_as_string(hide_password=False)
        self.max_batch = max_batch
        self.retry_for = retry_for
        self.idle_exit = idle_exit
        self._ctx = multiprocessing.get_context("forkserver")
        self._counts: Any = self._ctx.RawArray("q", 3)  # written, transactions, lost: kept by the writer
        self._lock = threading.Lock()
        self._proc: BaseProcess | None = None
        self._control: Pipe | None = None
        self._address = ""
        self._inbox: collections.deque[tuple[store_hits.Hit, concurrent.futures.Future[bool] | None]] = \
            collections.deque()
        self._kicked = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._channel: Channel | None = None
        self._submitted = itertools.count(1)
        self._last_submitted = 0
        self._settled = 0
        self._settled_cv = threading.Condition()
        self._lost_here = 0
        self.closed = False
        _live.add(self)

    @property
    def written(self) -> int:
        return int(self._counts[writer.COUNT_WRITTEN])

    @property
    def batches(self) -> int:
        return int(self._counts[writer.COUNT_BATCHES])

    @property
    def lost(self) -> int:
        return int(self._counts[writer.COUNT_LOST]) + self._lost_here

    @property
    def writer_pid(self) -> int | None:
        proc = self._proc
        return proc.pid if proc is not None else None

    def count_lost(self, n: int) -> None:
        if self._lost_here % 10_000 == 0:
            log.error("hit writer backlog full: hits are being dropped")
        self._lost_here += n
        self.settled(n)

    # -- called from request handlers (any thread) ----------------------------------------------

    def submit(self, hit: store_hits.Hit, done: concurrent.futures.Future[bool] | None = None) -> None:
        """Queue a hit; ``done`` (if given) resolves True once committed. Never blocks on the store."""
        if self.closed:
            self._write_here([hit])
            if done is not None:
                done.set_result(True)
            return
        self._last_submitted = next(self._submitted)
        self._inbox.append((hit, done))
        if not self._kicked:
            self._kick()

    async def record(self, hit: store_hits.Hit, timeout: float) -> bool:
        """Queue and wait for the commit (for callers that must know); False if not within ``timeout``."""
        done: concurrent.futures.Future[bool] = concurrent.futures.Future()
        self.submit(hit, done)
        try:
            return await asyncio.wait_for(asyncio.shield(asyncio.wrap_future(done)), timeout)
        except Exception as e:  # too slow, or the store failed: it stays queued
            log.warning("hit not recorded yet (%s)", e)
        return False

    def flush(self, timeout: float) -> bool:
        """Wait until every hit submitted so far is committed or given up; False on timeout."""
        target = self._last_submitted
        with self._settled_cv:
            return self._settled_cv.wait_for(lambda: self._settled >= target, timeout)

    def settled(self, n: int) -> None:
        """``n`` hits were committed or given up (called by the channel)."""
        with self._settled_cv:
            self._settled += n
            self._settled_cv.notify_all()

    def _kick(self) -> None:
        with self._lock:
            self._kicked = True
            if self._loop is None:
                self._start_sender()
            loop = self._loop
        assert loop is not None
        loop.call_soon_threadsafe(self._pull)

    # -- the sender thread ----------------------------------------------------------------------

    def _start_sender(self) -> None:
        loop = asyncio.new_event_loop()
        self._channel = Channel(self, loop)
        self._loop = loop
        self._thread = threading.Thread(target=self._run, args=(loop, self._channel), name="mailtrack-hits-sender",
                                        daemon=True)
        self._thread.start()

    def _run(self, loop: asyncio.AbstractEventLoop, channel: Channel) -> None:
        asyncio.set_event_loop(loop)
        loop.call_soon(self._watch_idle, loop, channel, time.monotonic())
        try:
            loop.run_forever()
        finally:
            channel.discard()
            loop.run_until_complete(loop.shutdown_default_executor())
            loop.close()

    def _pull(self) -> None:
        """Sender loop: move queued hits into the channel.

        While hits keep coming the sender polls every ``GATHER`` seconds instead of being woken
        for each one: a wake-up from another thread is a syscall and a hand-over of the GIL, which
        at thousands of hits a second cost the request loop more than the hits themselves.
        """
        channel = self._channel
        inbox = self._inbox
        moved = bool(inbox)
        while inbox:
            hit, done = inbox.popleft()
            if channel is not None:
                channel.add(hit, done)
        loop = self._loop
        if moved and loop is not None:
            loop.call_later(GATHER, self._pull)  # still kicked: submit() need not wake us
            return
        self._kicked = False
        if inbox:  # one came in between the last pop and the line above: it did not kick
            self._kicked = True
            if loop is not None:
                loop.call_soon(self._pull)

    def _watch_idle(self, loop: asyncio.AbstractEventLoop, channel: Channel, last: float) -> None:
        now = time.monotonic()
        if channel.busy() or self._inbox:
            last = now
        elif now - last > self.idle_exit and not self.closed:
            with self._lock:
                self._kicked = False  # first: a hit queued after the check below kicks a new sender
                if not self._inbox:
                    self._loop = self._channel = None
                    loop.stop()
                    return
        loop.call_later(min(1.0, self.idle_exit / 2), self._watch_idle, loop, channel, last)

    # -- the writer process -----------------------------------------------------------------------

    def ensure_writer(self) -> str:
        """Start the writer process unless it runs; its socket address. Blocking: call off the loop."""
        with self._lock:
            if self.closed and self._channel is None:
                raise RuntimeError("recorder closed")
            if self._proc is not None and self._proc.is_alive():
                return self._address
            if self._proc is not None:
                log.warning("hit writer exited (code %s); restarting it", self._proc.exitcode)
                self._stop_writer(0)
            address = f"\0mailtrack-hits-{os.getpid()}-{secrets.token_hex(8)}"
            ours, theirs = self._ctx.Pipe()
            self._ctx.set_forkserver_preload(["mailtrack.tracking.writer"])
            proc = self._ctx.Process(
                target=writer.main, name="mailtrack-hits", daemon=True,
                args=(address, os.getpid(), self.url, self._counts, theirs, self.retry_for, self.max_batch,
                      self.idle_exit, logging.getLogger().getEffectiveLevel()))
            proc.start()
            theirs.close()
            self._proc, self._control = proc, ours
            if not ours.poll(START_TIMEOUT):
                raise RuntimeError("hit writer did not start")
            ours.recv()  # "ready"; EOFError if it died on start
            self._address = address
            return address

    def _stop_writer(self, timeout: float) -> None:
        proc, control = self._proc, self._control
        self._proc = self._control = None
        if control is not None:
            try:
                control.send("stop")
            except OSError:
                pass
        if proc is not None:
            proc.join(timeout)
            if proc.is_alive():
                proc.terminate()
                proc.join(1.0)
            proc.close()
        if control is not None:
            control.close()

    # -- shutdown -------------------------------------------------------------------------------

    def close(self, timeout: float = 5.0) -> None:
        """Hand everything queued to the writer and wait for it, stop both; write leftovers here."""
        if self.closed:
            return
        self.flush(timeout)
        with self._lock:
            self.closed = True
            loop, thread, channel = self._loop, self._thread, self._channel
            self._loop = self._channel = None
            self._stop_writer(timeout)  # it makes one last attempt at what it holds
        leftover: list[store_hits.Hit] = []
        if loop is not None and thread is not None and channel is not None:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout)
            leftover = channel.unsent()
        leftover += [hit for hit, _ in self._inbox]
        self._inbox.clear()
        if leftover:
            self._write_here(leftover)

    def _write_here(self, hits: list[store_hits.Hit]) -> None:
        try:
            with self.store.write() as conn:
                self._counts[writer.COUNT_WRITTEN] += writer.commit_hits(conn, hits)
        except Exception:
            log.exception("writing %d hits at close failed; they are lost", len(hits))
            self._lost_here += len(hits)


_live: weakref.WeakSet[Recorder] = weakref.WeakSet()


def _close_all() -> None:
    for r in list(_live):
        r.close()


atexit.register(_close_all)
