"""Group commit for hits: batched in each event loop, written by a separate writer process.

A request adds its hit to its event loop's batch and awaits a future that resolves when the
writer process acknowledges the transaction holding it (or reports a failure). The SQL runs in
that process (see writer.py) so that it never competes with the event loop for the GIL. Each
event loop that records hits (uvicorn's, TestClient's per-request portals) gets its own Unix
socket connection to the writer (abstract address; the writer accepts only its parent's pid).
A batch is sent per loop iteration while fewer than MAX_IN_FLIGHT are unacknowledged, else hits
accumulate, so batches grow with the load; the writer merges what it has into one transaction.
No process-wide GIL switch interval is needed any more.

What can be lost: hits not yet handed to the writer when the HTTP process is killed, hits the
writer holds when it is killed (SIGKILL, power loss), unless the same event loop is still
running to resend them to a restarted writer; and hits that kept failing for ``retry_for``
seconds because the store stayed down. A batch whose commit succeeded but whose acknowledgement
was lost (writer killed in between) is written twice on resend.
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import multiprocessing
import os
import secrets
import threading
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
IDLE_EXIT = 5.0  # the writer exits this long after its last client left (tests make many apps)
START_TIMEOUT = 30.0


class Recorder:
    """Hands hits to the writer process; ``submit``/``record`` are called on an event loop."""

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
        self._channels: dict[int, Channel] = {}
        self._orphans: list[store_hits.Hit] = []
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

    # -- called from request handlers -----------------------------------------------------------

    def submit(self, hit: store_hits.Hit, timeout: float | None = None) -> asyncio.Future[bool]:
        """Queue a hit; the future resolves True once committed, False after about ``timeout`` s."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[bool] = loop.create_future()
        self._channel(loop).add(hit, fut, timeout)
        return fut

    def submit_nowait(self, hit: store_hits.Hit) -> None:
        """Queue a hit nobody waits for; outside an event loop it is written by ``close``."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            with self._lock:
                self._orphans.append(hit)
            return
        self._channel(loop).add(hit, None)

    async def record(self, hit: store_hits.Hit, timeout: float) -> bool:
        """Queue and wait for the commit; False (logged) when the store failed or was too slow."""
        try:
            return await self.submit(hit, timeout)
        except Exception as e:  # the reader must never see the store's trouble
            log.warning("hit not recorded yet (%s)", e)
        return False

    def _channel(self, loop: asyncio.AbstractEventLoop) -> Channel:
        ch = self._channels.get(id(loop))
        if ch is None or ch.loop is not loop:
            # TestClient makes a loop per request: forget the closed ones
            self._discard_closed()
            ch = self._channels[id(loop)] = Channel(self, loop)
        return ch

    def _discard_closed(self) -> None:
        for key, ch in list(self._channels.items()):
            if ch.loop.is_closed():
                ch.discard()
                del self._channels[key]

    # -- the writer process -----------------------------------------------------------------------

    def ensure_writer(self) -> str:
        """Start the writer process unless it runs; its socket address. Blocking: call off the loop."""
        with self._lock:
            if self.closed:
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
        """Stop the writer (it makes one last attempt at what it holds) and write orphan hits here."""
        with self._lock:
            self.closed = True
            self._stop_writer(timeout)
            self._discard_closed()
            orphans, self._orphans = self._orphans, []
        if orphans:
            try:
                with self.store.write() as conn:
                    self._counts[writer.COUNT_WRITTEN] += store_hits.record_hits(conn, orphans)
            except Exception:
                log.exception("writing %d hits at close failed; they are lost", len(orphans))
                self._lost_here += len(orphans)


_live: weakref.WeakSet[Recorder] = weakref.WeakSet()


def _close_all() -> None:
    for r in list(_live):
        r.close()


atexit.register(_close_all)
