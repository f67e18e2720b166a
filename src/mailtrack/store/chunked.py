"""Split long parameter lists: SQLite allows 32,766 bound variables per statement, PostgreSQL 65,535.

And multi-row INSERTs within those limits (``insert_rows``)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any, TypeVar

from sqlalchemy import Connection, Table

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


_ROWS_PER_INSERT = 32_000  # bound values per multi-row INSERT, under both limits


def insert_rows(conn: Connection, table: Table, rows: Sequence[Mapping[str, Any]]) -> None:
    """INSERT rows (dicts with the same keys) as multi-row VALUES by the driver, a few statements in all.

    For the hot inserts (submission, events): SQLAlchemy's executemany costs its own per-row parameter
    processing, and SQLite's driver then steps once per row, giving up and retaking the GIL each time,
    which the event loop's thread then holds for up to a switch interval. The values go to the driver as
    they are (str, int, float, bool, bytes, None: what both drivers take for these columns). On
    PostgreSQL one single-row statement is executemany'd instead (see below).
    """
    if not rows:
        return
    shapes: dict[tuple[str, ...], list[Mapping[str, Any]]] = {}
    for row in rows:
        shapes.setdefault(tuple(row), []).append(row)
    if conn.dialect.name == "postgresql":
        # psycopg parses placeholders in Python, and keeps the result only for statements of at most 50
        # parameters (and 4 KB): one single-row statement, executemany'd (pipelined, prepared after a few)
        for cols, same in shapes.items():
            conn.exec_driver_sql(_insert_sql(conn, table, cols, 1), [tuple(r[c] for c in cols) for r in same])
        return
    for cols, same in shapes.items():
        per = max(1, _ROWS_PER_INSERT // len(cols))
        for i in range(0, len(same), per):
            part = same[i:i + per]
            conn.exec_driver_sql(_insert_sql(conn, table, cols, len(part)), tuple(r[c] for r in part for c in cols))


_SQL: dict[tuple[str, str, tuple[str, ...], int], str] = {}


def _insert_sql(conn: Connection, table: Table, cols: tuple[str, ...], n: int) -> str:
    key = (conn.dialect.name, table.name, cols, n)
    sql = _SQL.get(key)
    if sql is None:
        if len(_SQL) > 1000:  # batch sizes vary: keep the common ones
            _SQL.clear()
        q = conn.dialect.identifier_preparer.quote
        one = "(" + ", ".join(["%s" if conn.dialect.name == "postgresql" else "?"] * len(cols)) + ")"
        sql = _SQL[key] = (f"INSERT INTO {q(table.name)} ({', '.join(q(c) for c in cols)}) VALUES "
                           + ", ".join([one] * n))
    return sql
