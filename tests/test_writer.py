"""Group commit: merged requests, error isolation, and the commit before the answer."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import Connection, func, insert, select

from mailtrack.store.db import Store
from mailtrack.store.schema import accounts
from mailtrack.store.writer import GroupWriter


def _add(conn: Connection, names: list[str]) -> list[int]:
    out = []
    for n in names:
        if n.startswith("bad"):
            raise ValueError(f"refusing {n}")
        res = conn.execute(insert(accounts).values(name=n, track_default=True, created_at=0.0))
        out.append(int(res.inserted_primary_key[0]))  # type: ignore[index]
    return out


def _count(store: Store) -> int:
    with store.read() as conn:
        return int(conn.execute(select(func.count()).select_from(accounts)).scalar_one())


def test_concurrent_requests_commit_and_a_bad_one_fails_alone(any_store: Store) -> None:
    writer = GroupWriter(any_store)
    results: dict[str, object] = {}

    def go(name: str) -> None:
        try:
            results[name] = writer.call_merged("acct", _add, name)
        except ValueError as e:
            results[name] = e

    names = [f"a{i}" for i in range(60)] + ["bad1", "bad2"]
    threads = [threading.Thread(target=go, args=(n,)) for n in names]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    writer.close()
    assert all(isinstance(results[n], int) for n in names if n.startswith("a"))
    assert isinstance(results["bad1"], ValueError) and isinstance(results["bad2"], ValueError)
    assert _count(any_store) == 60  # committed before the callers got their ids


def test_single_failure_raises_to_caller(sqlite_store: Store) -> None:
    writer = GroupWriter(sqlite_store)
    with pytest.raises(ValueError, match="refusing bad"):
        writer.call_merged("acct", _add, "bad")
    assert writer.call_merged("acct", _add, "ok") == 1
    writer.close()


def test_one_group_without_a_savepoint_still_isolates_a_bad_request(any_store: Store) -> None:
    """Requests queued behind a busy writer run as one group (no savepoint); a bad one rolls back, then fails alone."""
    writer = GroupWriter(any_store)
    running, release = threading.Event(), threading.Event()

    def wait_then_add(conn: Connection, names: list[str]) -> list[int]:
        running.set()
        assert release.wait(30)
        return _add(conn, names)

    first = writer.enqueue("first", wait_then_add, "a0")
    assert running.wait(30)
    queued = [writer.enqueue("acct", _add, n) for n in ("a1", "a2", "bad", "a3")]
    release.set()
    assert first.result(30) >= 1
    outcomes = [f.exception(30) or f.result(30) for f in queued]
    writer.close()
    assert [type(o) for o in outcomes] == [int, int, ValueError, int]
    assert _count(any_store) == 4
