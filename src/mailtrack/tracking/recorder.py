"""Group commit for hits: batched in each event loop, written by a separate writer process.

A request adds its hit to its event loop's batch and awaits a future that resolves when the
writer process acknowledges the transaction holding it (or reports a failure). The SQL runs in
that process (see writer.py) so that it never competes with the event loop for the GIL. Each
event loop that records hits (uvicorn's, TestClient's per-request portals) gets its own Unix
socket connection to the writer; while a batch is in flight the next one accumulates, so batches
grow with the load.

What can be lost: hits not yet handed to the writer when the HTTP process is killed, hits the
writer holds when it is killed (SIGKILL, power loss), unless the same event loop is still
running to resend them to a restarted writer; and hits that kept failing for ``retry_for``
seconds because the store stayed down. A batch whose commit succeeded but whose acknowledgement
was lost (writer killed in between) is written twice on resend.
"""

from __future__ import annotations

import asyncio
import atexit
import itertools
import logging
import multiprocessing
import os
import pickle
import secrets
import socket
import threading
import weakref
from multiprocessing.connection import Connection as Pipe
from multiprocessing.process import BaseProcess
from typing import Any

from ..store import hits as store_hits
from ..store.db import Store
from . import writer

log = logging.getLogger("mailtrack.tracking")

MAX_BATCH = 1000
IDLE_EXIT = 5.0  # the writer exits this long after its last client left (tests make many apps)
START_TIMEOUT = 30.0
MAX_BACKLOG = 200_000  # hits gathered in one event loop while the writer has not taken the last batch


class StoreUnavailable(Exception):
    """The writer could not commit a batch (yet)."""


class _Channel:
    """One event loop's side: the batch being gathered, the batches sent and not yet acknowledged.

    A bare non-blocking socket with ``add_reader`` rather than an asyncio transport: the socket
    is ours to close when a short-lived loop (TestClient's) has gone, which a transport is not.
    """

    def __init__(self, recorder: Recorder, loop: asyncio.AbstractEventLoop) -> None:
        self.recorder = recorder
        self.loop = loop
        self.hits: list[store_hits.Hit] = []
        self.futs: list[asyncio.Future[bool] | None] = []
        self.unacked: dict[int, tuple[bytes, list[asyncio.Future[bool] | None]]] = {}
        self.in_flight: set[int] = set()
        self.sock: socket.socket | None = None
        self.fd = -1
        self.out = bytearray()  # what the socket did not take yet
        self.inbuf = bytearray()
        self.connecting = False
        self.scheduled = False
        self.ids = itertools.count(1)

    def add(self, hit: store_hits.Hit, fut: asyncio.Future[bool] | None, timeout: float | None = None) -> None:
        if not self.futs and timeout is not None:
            # one timer per batch rather than a wait_for per hit: the list is the batch's own
            self.loop.call_later(timeout, _expire, self.futs, timeout)
        if len(self.hits) >= MAX_BACKLOG:  # the writer is stuck or unreachable: bound the memory
            self.recorder.count_lost(1)
            if fut is not None:
                fut.set_result(False)
            return
        self.hits.append(hit)
        self.futs.append(fut)
        if self.sock is None:
            self._connect_soon()
        elif not self.scheduled and not self.in_flight:
            self.scheduled = True
            self.loop.call_soon(self._flush)

    def _flush(self) -> None:
        self.scheduled = False
        if self.sock is None or not self.hits or self.in_flight:
            return
        hits, futs = self.hits, self.futs
        self.hits, self.futs = [], []
        bid = next(self.ids)
        payload = pickle.dumps((bid, hits), protocol=5)
        frame = len(payload).to_bytes(4, "big") + payload
        self.unacked[bid] = (frame, futs)
        self.in_flight.add(bid)
        self._send(frame)

    # -- the socket -----------------------------------------------------------------------------

    def _send(self, data: bytes) -> None:
        if self.out:
            self.out += data
            return
        try:
            n = self.sock.send(data) if self.sock is not None else 0
        except (BlockingIOError, InterruptedError):
            n = 0
        except OSError as e:
            self._lost(e)
            return
        if n < len(data):
            self.out += memoryview(data)[n:]
            self.loop.add_writer(self.fd, self._writable)

    def _writable(self) -> None:
        if self.sock is None:
            return
        try:
            n = self.sock.send(self.out)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as e:
            self._lost(e)
            return
        del self.out[:n]
        if not self.out:
            self.loop.remove_writer(self.fd)

    def _readable(self) -> None:
        if self.sock is None:
            return
        try:
            data = self.sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as e:
            self._lost(e)
            return
        if not data:
            self._lost(None)
            return
        self._acks(data)

    def _connect_soon(self) -> None:
        if not self.connecting and not self.recorder.closed:
            self.connecting = True
            self.loop.create_task(self._connect())

    async def _connect(self) -> None:
        backoff = 0.05
        try:
            while not self.recorder.closed:
                try:
                    address = await self.loop.run_in_executor(None, self.recorder.ensure_writer)
                    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                    try:
                        sock.connect(address)  # a listening Unix socket: immediate
                        sock.setblocking(False)
                    except OSError:
                        sock.close()
                        raise
                    self._attach(sock)
                    return
                except (OSError, RuntimeError, EOFError) as e:
                    log.warning("hit writer not reachable (%s); retrying", e)
                    self._fail_waiting(StoreUnavailable(f"hit writer not reachable: {e}"))
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, 2.0)
        finally:
            self.connecting = False

    def _fail_waiting(self, exc: Exception) -> None:
        for fut in self.futs:
            if fut is not None and not fut.done():
                fut.set_exception(exc)

    def _attach(self, sock: socket.socket) -> None:
        self.sock, self.fd = sock, sock.fileno()
        self.out.clear()
        self.inbuf.clear()
        self.loop.add_reader(self.fd, self._readable)
        for bid, (frame, _) in self.unacked.items():  # a restarted writer gets what the old one held
            self.in_flight.add(bid)
            self._send(frame)
        self._flush()

    def _lost(self, exc: Exception | None) -> None:
        sock, self.sock = self.sock, None
        if sock is not None:
            self.loop.remove_reader(self.fd)
            self.loop.remove_writer(self.fd)
            sock.close()
        self.in_flight.clear()
        self.out.clear()
        if self.unacked or self.hits:
            log.warning("hit writer connection lost (%s); reconnecting", exc)
            self._connect_soon()

    def discard(self) -> None:
        """Close the socket of a channel whose loop has closed (its selector went with it)."""
        sock, self.sock = self.sock, None
        if sock is not None:
            sock.close()

    def _acks(self, data: bytes) -> None:
        inbuf = self.inbuf
        inbuf += data
        size = writer.ACK.size
        end = len(inbuf) - len(inbuf) % size
        for bid, code, _n in writer.ACK.iter_unpack(memoryview(inbuf)[:end]):
            self.in_flight.discard(bid)
            if code == writer.RETRYING:
                entry = self.unacked.get(bid)
                outcome: bool | Exception = StoreUnavailable("store unavailable; the hits will be retried")
            else:
                entry = self.unacked.pop(bid, None)
                outcome = True if code == writer.OK else StoreUnavailable("hits could not be written")
            if entry is not None:
                _resolve(entry[1], outcome)
        del inbuf[:end]
        if not self.in_flight:
            self._flush()


def _expire(futs: list[asyncio.Future[bool] | None], timeout: float) -> None:
    late = 0
    for fut in futs:
        if fut is not None and not fut.done():
            fut.set_result(False)
            late += 1
    if late:
        log.warning("%d hits not committed within %.1fs; answered anyway, they stay queued", late, timeout)


def _resolve(futs: list[asyncio.Future[bool] | None], outcome: bool | Exception) -> None:
    for fut in futs:
        if fut is None or fut.done():  # the request gave up waiting (timeout) or went away
            continue
        if isinstance(outcome, Exception):
            fut.set_exception(outcome)
        else:
            fut.set_result(outcome)


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
        self._channels: dict[int, _Channel] = {}
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

    def _channel(self, loop: asyncio.AbstractEventLoop) -> _Channel:
        ch = self._channels.get(id(loop))
        if ch is None or ch.loop is not loop:
            # TestClient makes a loop per request: forget the closed ones
            self._discard_closed()
            ch = self._channels[id(loop)] = _Channel(self, loop)
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
