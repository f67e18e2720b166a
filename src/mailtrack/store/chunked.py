"""Split long parameter lists: SQLite allows 32,766 bound variables per statement, PostgreSQL 65,535."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")
CHUNK = 500  # well under both limits, and small enough for the planner to use the index


def chunks(items: Iterable[T], size: int = CHUNK) -> Iterator[list[T]]:
    batch: list[T] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch
