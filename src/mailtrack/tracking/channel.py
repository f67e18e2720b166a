"""The sender loop's side of the hit writer connection: gathering, sending, acknowledgements.

See recorder.py for the whole design.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import itertools
import logging
import pickle
import socket
from typing import Protocol

from ..store import hits as store_hits
from . import writer

log = logging.getLogger("mailtrack.tracking")

# batches sent and not yet acknowledged: the writer finds the next batch waiting when a commit
# ends (a little better than 1 on PostgreSQL; the writer merges them anyway)
MAX_IN_FLIGHT = 4
MAX_BACKLOG = 200_000  # hits gathered while the writer has not taken the last batch

Done = concurrent.futures.Future[bool]


class Owner(Protocol):
    """What a channel needs from whoever runs it (the recorder)."""

    closed: bool

    def ensure_writer(self) -> str: ...

    def count_lost(self, n: int) -> None: ...

    def settled(self, n: int) -> None: ...


class StoreUnavailable(Exception):
    """The writer could not commit a batch (yet)."""


class Channel:
    """The batch being gathered, the batches sent and not yet acknowledged; runs on the sender loop.

    A bare non-blocking socket with ``add_reader`` rather than an asyncio transport: the socket
    is ours to close when the loop stops, which a transport's is not.
    """

    def __init__(self, recorder: Owner, loop: asyncio.AbstractEventLoop) -> None:
        self.recorder = recorder
        self.loop = loop
        self.hits: list[store_hits.Hit] = []
        self.futs: list[Done | None] = []
        self.unacked: dict[int, tuple[bytes, list[store_hits.Hit], list[Done | None]]] = {}
        self.in_flight: set[int] = set()
        self.sock: socket.socket | None = None
        self.fd = -1
        self.out = bytearray()  # what the socket did not take yet
        self.inbuf = bytearray()
        self.connecting = False
        self.scheduled = False
        self.ids = itertools.count(1)

    def add(self, hit: store_hits.Hit, fut: Done | None) -> None:
        if len(self.hits) >= MAX_BACKLOG:  # the writer is stuck or unreachable: bound the memory
            self.recorder.count_lost(1)
            _set(fut, False)
            return
        self.hits.append(hit)
        self.futs.append(fut)
        if self.sock is None:
            self._connect_soon()
        elif not self.scheduled and len(self.in_flight) < MAX_IN_FLIGHT:
            self.scheduled = True
            self.loop.call_soon(self._flush)

    def _flush(self) -> None:
        self.scheduled = False
        if self.sock is None or not self.hits or len(self.in_flight) >= MAX_IN_FLIGHT:
            return
        hits, futs = self.hits, self.futs
        self.hits, self.futs = [], []
        bid = next(self.ids)
        payload = pickle.dumps((bid, hits), protocol=5)
        frame = len(payload).to_bytes(4, "big") + payload
        self.unacked[bid] = (frame, hits, futs)
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
            _set(fut, exc)

    def _attach(self, sock: socket.socket) -> None:
        self.sock, self.fd = sock, sock.fileno()
        self.out.clear()
        self.inbuf.clear()
        self.loop.add_reader(self.fd, self._readable)
        for bid, (frame, _, _) in self.unacked.items():  # a restarted writer gets what the old one held
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

    def busy(self) -> bool:
        return bool(self.hits or self.unacked)

    def unsent(self) -> list[store_hits.Hit]:
        """Hits never handed to the writer (at close; what was handed over, the writer finished)."""
        return list(self.hits)

    def discard(self) -> None:
        """Close the socket (the loop is stopping)."""
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
                _resolve(entry[2], outcome)
                if code != writer.RETRYING:
                    self.recorder.settled(len(entry[1]))
        del inbuf[:end]
        if len(self.in_flight) < MAX_IN_FLIGHT:
            self._flush()


def _set(fut: Done | None, outcome: bool | Exception) -> None:
    if fut is None or fut.done():  # nobody waits, or the waiter gave up
        return
    try:
        if isinstance(outcome, Exception):
            fut.set_exception(outcome)
        else:
            fut.set_result(outcome)
    except concurrent.futures.InvalidStateError:  # cancelled by its waiter meanwhile
        pass


def _resolve(futs: list[Done | None], outcome: bool | Exception) -> None:
    for fut in futs:
        _set(fut, outcome)
