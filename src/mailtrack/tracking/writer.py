"""The hit writer process: receives batches of hits over a Unix socket, commits them, acknowledges.

It runs apart from the HTTP process so that SQL work never holds that process's GIL. Frames in:
4-byte big-endian length + pickle of ``(batch id, [Hit, ...])``. Acks out: ``ACK`` structs
``(batch id, code, rows written)``. Frames that arrive while a transaction runs are committed
together in the next one (group commit on top of the HTTP side's batching).

A batch is acknowledged ``OK`` only after its transaction committed; ``RETRYING`` when the store
failed (the batch is kept and retried with backoff); ``DROPPED`` when it was given up (store down
for ``retry_for`` seconds, or an error that retrying would repeat). The process exits when the
parent's control pipe closes (parent gone, or ``stop`` sent), after one last attempt at what it
holds, and when no client has been connected for ``idle_exit`` seconds.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import pickle
import socket
import struct
import time
from multiprocessing.connection import Connection as Pipe
from typing import Any, cast

from sqlalchemy.exc import DBAPIError, OperationalError

from .. import metrics
from ..domain.status import EventType
from ..store import hits as store_hits
from ..store.db import Store, make_engine
from .classify import BURST_WINDOW, ClickContext, HitClass, classify_click

log = logging.getLogger("mailtrack.tracking")

ACK = struct.Struct(">IBI")
_PEERCRED = struct.Struct("3i")
OK, RETRYING, DROPPED = 0, 1, 2
COUNT_WRITTEN, COUNT_BATCHES, COUNT_LOST = 0, 1, 2
MAX_BACKLOG = 100_000


class _Client(asyncio.Protocol):
    """One HTTP-side event loop's connection."""

    def __init__(self, writer: _Writer) -> None:
        self.writer = writer
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        sock = transport.get_extra_info("socket")
        pid, _uid, _gid = _PEERCRED.unpack(sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _PEERCRED.size))
        if pid != self.writer.parent_pid:  # an abstract socket is reachable by any local process
            log.error("hit writer: refused a connection from pid %d", pid)
            cast(asyncio.Transport, transport).abort()
            return
        self.transport = cast(asyncio.Transport, transport)
        self.writer.clients += 1

    def connection_lost(self, exc: Exception | None) -> None:
        if self.transport is None:  # refused
            return
        self.transport = None
        self.writer.clients -= 1
        self.writer.last_client = time.monotonic()

    def data_received(self, data: bytes) -> None:
        if self.transport is None:
            return
        buf = self.buf
        buf += data
        pos = 0
        while len(buf) - pos >= 4:
            n = int.from_bytes(buf[pos:pos + 4], "big")
            if len(buf) - pos - 4 < n:
                break
            # only our parent process can be connected (checked above), so its pickles are trusted
            bid, hits = pickle.loads(  # noqa: S301
                memoryview(buf)[pos + 4:pos + 4 + n])
            pos += 4 + n
            self.writer.add(self, bid, hits)
        if pos:
            del buf[:pos]

    def ack(self, bid: int, code: int, n: int) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(ACK.pack(bid, code, n))


_Frame = tuple[_Client, int, list[store_hits.Hit]]


class _Writer:
    def __init__(self, store: Store, counts: Any, *, parent_pid: int, retry_for: float, max_batch: int) -> None:
        self.store = store
        self.parent_pid = parent_pid
        self.counts = counts
        self.retry_for = retry_for
        self.max_batch = max_batch
        self.pending: list[_Frame] = []
        self.owners: dict[str, tuple[str, int]] = {}
        self.scheduled = False
        self.failing_since: float | None = None
        self.backoff = 0.05
        self.clients = 0
        self.last_client = time.monotonic()

    def add(self, client: _Client, bid: int, hits: list[store_hits.Hit]) -> None:
        self.pending.append((client, bid, hits))
        self._schedule(0.0)

    def _schedule(self, delay: float) -> None:
        if not self.scheduled:
            self.scheduled = True
            asyncio.get_running_loop().call_later(delay, self.flush)

    def flush(self) -> None:
        self.scheduled = False
        if not self.pending:
            return
        take, rows = 0, 0
        while take < len(self.pending) and rows < self.max_batch:
            rows += len(self.pending[take][2])
            take += 1
        frames, self.pending = self.pending[:take], self.pending[take:]
        if self.write(frames):
            self._schedule(0.0)
        else:
            self.pending[:0] = frames
            self._schedule(self.backoff)
            self.backoff = min(self.backoff * 2, 2.0)

    def write(self, frames: list[_Frame]) -> bool:
        """One transaction for the frames; False when they should be retried."""
        hits = [h for _, _, batch in frames for h in batch]
        try:
            with self.store.write() as conn:
                commit_hits(conn, hits, self.owners)
        except (OperationalError, DBAPIError) as e:
            now = time.monotonic()
            self.failing_since = self.failing_since or now
            backlog = len(hits) + sum(len(f[2]) for f in self.pending)
            if now - self.failing_since <= self.retry_for and backlog <= MAX_BACKLOG:
                log.warning("writing %d hits failed, will retry: %s", len(hits), e)
                self._answer(frames, RETRYING)
                return False
            log.error("store unavailable for %.0fs: %d hits lost", now - self.failing_since, len(hits))
            self._answer(frames, DROPPED)
            return True
        except Exception:  # not the store being away: retrying would fail the same way
            log.exception("writing %d hits failed; they are dropped", len(hits))
            self.owners.clear()
            self._answer(frames, DROPPED)
            return True
        self.failing_since, self.backoff = None, 0.05
        self.counts[COUNT_BATCHES] += 1
        self._answer(frames, OK)
        return True

    def _answer(self, frames: list[_Frame], code: int) -> None:
        owners = self.owners
        kinds: collections.Counter[tuple[str, str]] = collections.Counter()
        for client, bid, batch in frames:
            n = len(batch)
            if code == OK:
                mine = [(h[1], h[5]) for h in batch if h[0] in owners]
                n = len(mine)
                self.counts[COUNT_WRITTEN] += n
                kinds.update(mine)
            elif code == DROPPED:
                self.counts[COUNT_LOST] += n
            client.ack(bid, code, n)
        for (kind, cls), n in kinds.items():  # once per label pair: each call costs a shared-memory check
            metrics.tracking_hit(kind, cls, n)

    def finish(self) -> None:
        """One last attempt at everything held."""
        if self.pending:
            frames, self.pending = self.pending, []
            self.failing_since = time.monotonic() - self.retry_for - 1  # no more retries
            self.write(frames)


def refine_clicks(conn: Any, hits: list[store_hits.Hit]) -> list[store_hits.Hit]:
    """Clicks classified with what the store knows (sent time, link count, recent clicks).

    The redirect classifies by the request alone (no database read on its path); here, in the
    writer's transaction, the scanner rules that need the recipient's history are applied.
    """
    clicks = [h for h in hits if h.type == EventType.CLICKED and h.cls != HitClass.SCANNER]
    if not clicks:
        return hits
    ctx = store_hits.click_contexts(conn, [h.recipient_id for h in clicks],
                                    min(h.at for h in clicks) - BURST_WINDOW)
    seen: dict[str, list[tuple[float, int]]] = {}
    out = []
    for h in hits:
        if h.type == EventType.CLICKED and h.recipient_id in ctx:
            sent_at, count, recent = ctx[h.recipient_id]
            mine = seen.setdefault(h.recipient_id, list(recent))
            if h.cls != HitClass.SCANNER:
                cls = classify_click(h.ua, h.ip, h.at, h.link if h.link is not None else -1,
                                     ClickContext(sent_at, count, tuple(mine)))
                h = h._replace(cls=str(cls))
            mine.append((h.at, h.link if h.link is not None else -1))
        out.append(h)
    return out


def commit_hits(conn: Any, hits: list[store_hits.Hit], owners: dict[str, tuple[str, int]] | None = None) -> int:
    """Record a batch of hits in the caller's transaction, clicks classified with their history."""
    return store_hits.record_hits(conn, refine_clicks(conn, hits), owners)


async def _serve(address: str, parent_pid: int, store: Store, counts: Any, control: Pipe, *, retry_for: float,
                 max_batch: int, idle_exit: float) -> None:
    loop = asyncio.get_running_loop()
    writer = _Writer(store, counts, parent_pid=parent_pid, retry_for=retry_for, max_batch=max_batch)
    server = await loop.create_unix_server(lambda: _Client(writer), address)
    done = asyncio.Event()

    def on_control() -> None:
        try:
            control.recv()  # "stop"
        except (EOFError, OSError):
            pass
        done.set()

    loop.add_reader(control.fileno(), on_control)
    control.send("ready")
    try:
        while not done.is_set():
            try:
                await asyncio.wait_for(done.wait(), timeout=min(idle_exit, 1.0))
            except TimeoutError:
                idle = writer.clients == 0 and not writer.pending
                if idle and time.monotonic() - writer.last_client > idle_exit:
                    log.debug("hit writer idle, exiting")
                    break
    finally:
        loop.remove_reader(control.fileno())
        server.close()
        writer.finish()


def main(address: str, parent_pid: int, url: str, counts: Any, control: Pipe, retry_for: float, max_batch: int,
         idle_exit: float, log_level: int) -> None:
    """Entry point of the writer process."""
    logging.basicConfig(level=log_level, format="%(asctime)s %(levelname)s %(name)s[writer]: %(message)s")
    store = Store(make_engine(url, pool_size=2, max_overflow=2))
    try:
        asyncio.run(_serve(address, parent_pid, store, counts, control, retry_for=retry_for, max_batch=max_batch,
                           idle_exit=idle_exit))
    finally:
        store.dispose()
        control.close()
