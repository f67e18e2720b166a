"""Group commit: concurrent write requests share one transaction, and each caller returns after it commits.

One writer thread takes what is queued (up to ``max_items`` and ``max_weight``, round-robin over the
keys so that one caller's bulk cannot hold up the others) and runs it in one transaction:
requests made with the same ``key`` through ``call_merged`` are handed to their function together
(one set of queries for fifty submissions), each group inside a SAVEPOINT (none when there is only
one group: its failure rolls the transaction back instead). If a merged group fails, its requests are
retried one by one, each in its own savepoint, so only the bad one's caller sees the error. One
commit then answers every caller. Under load this turns N transactions, N lock hand-overs and N
fsyncs into one, which is what keeps single submissions fast on SQLite.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections import OrderedDict, deque
from collections.abc import Callable, Hashable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import Connection

from .db import Store

A = TypeVar("A")
R = TypeVar("R")
log = logging.getLogger("mailtrack.store.writer")


@dataclass
class _Item:
    key: Hashable
    fn: Callable[[Connection, list[Any]], list[Any]]
    arg: Any
    fut: Future[Any]
    weight: int = 1


class GroupWriter:
    def __init__(self, store: Store, max_items: int = 256, max_weight: int = 1000) -> None:
        self.store = store
        self.max_items = max_items
        # Work per transaction (e.g. recipients), taken round-robin over the keys (accounts): what one
        # key queues in bulk delays another key by one bounded transaction, not by all of it.
        self.max_weight = max_weight
        self._q: queue.SimpleQueue[_Item | None] = queue.SimpleQueue()
        self._pending: OrderedDict[Hashable, deque[_Item]] = OrderedDict()  # taken off the queue, not yet run
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()

    def call_merged(
        self, key: Hashable, fn: Callable[[Connection, list[A]], list[R]], arg: A, timeout: float | None = 60
    ) -> R:
        """``fn(conn, [arg, …])`` for all queued requests with this key; return this request's result."""
        return self.enqueue(key, fn, arg).result(timeout)

    def enqueue(
        self, key: Hashable, fn: Callable[[Connection, list[A]], list[R]], arg: A, weight: int = 1
    ) -> Future[R]:
        """Like call_merged, without waiting: the future resolves after the commit (for async callers)."""
        self._ensure_started()
        fut: Future[R] = Future()
        self._q.put(_Item(key, fn, arg, fut, max(1, weight)))
        return fut

    def close(self) -> None:
        if self._thread is not None:
            self._q.put(None)
            self._thread.join(timeout=10)
            self._thread = None

    def _ensure_started(self) -> None:
        if self._thread is None:
            with self._start_lock:
                if self._thread is None:
                    self._thread = threading.Thread(target=self._loop, name="mailtrack-writer", daemon=True)
                    self._thread.start()

    def _drain(self, block: bool) -> None:
        """Move what is queued into the per-key pending lists (waiting for one item when ``block``)."""
        while True:
            try:
                it = self._q.get(block=block)
            except queue.Empty:
                return
            block = False
            if it is None:
                self._stopping = True
                return
            if it.key not in self._pending:
                self._pending[it.key] = deque()
                self._pending.move_to_end(it.key, last=False)  # a newcomer goes before those served just now
            self._pending[it.key].append(it)

    def _take(self) -> tuple[list[_Item], bool]:
        self._drain(block=not self._pending and not self._stopping)
        items: list[_Item] = []
        weight = 0
        while self._pending and len(items) < self.max_items:
            progressed = False
            for key in list(self._pending):  # one item per key per round
                todo = self._pending[key]
                if items and weight + todo[0].weight > self.max_weight:
                    continue
                it = todo.popleft()
                items.append(it)
                weight += it.weight
                progressed = True
                if not todo:
                    del self._pending[key]
                else:
                    self._pending.move_to_end(key)
                if len(items) >= self.max_items or weight >= self.max_weight:
                    break
            if not progressed or weight >= self.max_weight:
                break
        return items, self._stopping and not self._pending

    def _loop(self) -> None:
        stop = False
        while not stop:
            items, stop = self._take()
            if items:
                self._run(items)

    def _run(self, items: list[_Item]) -> None:
        groups: dict[Hashable, list[_Item]] = {}
        for it in items:
            groups.setdefault(it.key, []).append(it)
        if len(groups) == 1 and len(items) > 1 and self._run_alone(items):
            return
        outcomes: list[tuple[Future[Any], bool, Any]] = []
        try:
            with self.store.write() as conn:
                for group in groups.values():
                    outcomes += self._run_group(conn, group, nested=len(items) > 1)
        except Exception as e:  # the commit failed: every caller learns it
            self._fail(items, e)
            return
        self._answer(outcomes)

    def _run_alone(self, group: list[_Item]) -> bool:
        """One group (one account's submissions, the usual case) without a savepoint; False if it failed.

        A failed group has rolled the whole transaction back, and ``_run`` then finds the bad request as
        usual. A failed commit is not retried (on PostgreSQL it may have happened): every caller learns it.
        """
        ran = False
        try:
            with self.store.write() as conn:
                results = group[0].fn(conn, [it.arg for it in group])
                ran = True
        except Exception as e:
            if not ran:
                return False
            self._fail(group, e)
            return True
        self._answer([(it.fut, True, r) for it, r in zip(group, results, strict=True)])
        return True

    @staticmethod
    def _fail(items: list[_Item], e: Exception) -> None:
        log.warning("group commit of %d items failed: %s", len(items), e)
        for it in items:
            if not it.fut.done():
                it.fut.set_exception(e)

    @staticmethod
    def _answer(outcomes: list[tuple[Future[Any], bool, Any]]) -> None:
        for fut, ok, value in outcomes:
            if ok:
                fut.set_result(value)
            else:
                fut.set_exception(value)

    def _run_group(self, conn: Connection, group: list[_Item], nested: bool) -> list[tuple[Future[Any], bool, Any]]:
        fn = group[0].fn
        if not nested:
            results = fn(conn, [it.arg for it in group])
            return [(it.fut, True, r) for it, r in zip(group, results, strict=True)]
        try:
            with conn.begin_nested():
                results = fn(conn, [it.arg for it in group])
            return [(it.fut, True, r) for it, r in zip(group, results, strict=True)]
        except Exception as e:  # find which request is bad
            if len(group) == 1:
                return [(group[0].fut, False, e)]
        out: list[tuple[Future[Any], bool, Any]] = []
        for it in group:
            try:
                with conn.begin_nested():
                    out.append((it.fut, True, fn(conn, [it.arg])[0]))
            except Exception as e:  # handed to that caller alone
                out.append((it.fut, False, e))
        return out
