"""Engine set-up for SQLite (WAL, synchronous=FULL, one writer) and PostgreSQL, and migrations."""

from __future__ import annotations

import contextlib
import fcntl
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.pool import NullPool

from ..errors import ConfigError

_HERE = Path(__file__).resolve().parent


class Store:
    """The database. ``write()`` gives a transaction that may write, ``read()`` one that only reads.

    On SQLite every write transaction starts with ``BEGIN IMMEDIATE`` under a process-wide lock,
    so writers queue in Python instead of failing with 'database is locked', and under a lock on
    ``FILE.writelock`` shared with the other processes on the same file (see ``_FileTurn``).
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.is_sqlite = engine.dialect.name == "sqlite"
        self.is_postgres = engine.dialect.name == "postgresql"
        self._write_lock = threading.Lock()
        path = engine.url.database if self.is_sqlite else None
        self._turn = _FileTurn(f"{path}.writelock") if path and path != ":memory:" else None

    @contextmanager
    def write(self) -> Iterator[Connection]:
        if self.is_sqlite:
            with self._write_lock, self._turns(), self.engine.connect() as conn:
                conn = conn.execution_options(sqlite_begin="IMMEDIATE")
                with conn.begin():
                    yield conn
        else:
            with self.engine.begin() as conn:
                yield conn

    @contextmanager
    def read(self) -> Iterator[Connection]:
        with self.engine.connect() as conn:
            yield conn

    @contextmanager
    def _turns(self) -> Iterator[None]:
        if self._turn is None:
            yield
            return
        with self._turn:
            yield

    def dispose(self) -> None:
        self.engine.dispose()
        if self._turn is not None:
            self._turn.close()


class _FileTurn:
    """Writers of every process on one SQLite file take turns on an flock()ed file beside it.

    Without it a second process's writer meets SQLITE_BUSY and SQLite's busy handler sleeps between
    tries (1, 2, 5 … up to 100 ms each), so a `mailtrack worker` next to `serve`, or several
    `serve --role submission` processes, lose most of their time asleep while the lock is free.
    Here the wait is polled every 0.5–2 ms. After 30 s (a stuck holder) the writer goes on to
    ``BEGIN IMMEDIATE`` and SQLite's own busy timeout decides, as before. A file that cannot be
    opened (a read-only directory) turns this off and leaves SQLite's locking alone.
    """

    def __init__(self, path: str, timeout: float = 30.0) -> None:
        self.path = path
        self.timeout = timeout
        self._fd: int | None = None
        self._pid = 0
        self._broken = False
        self._held = False

    def _open(self) -> int | None:
        if self._fd is not None and self._pid != os.getpid():
            self._fd = None  # a forked child: the inherited descriptor shares the parent's lock, so open our own
        if self._fd is None and not self._broken:
            self._pid = os.getpid()
            try:
                self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            except OSError:
                self._broken = True
        return self._fd

    def __enter__(self) -> None:
        fd = self._open()
        if fd is None:
            return
        deadline = time.monotonic() + self.timeout
        delay = 0.0005
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                if time.monotonic() > deadline:
                    return
                time.sleep(delay)
                delay = min(delay * 2, 0.002)
                continue
            except OSError:  # a file system without flock(): SQLite's locking alone
                self._broken = True
                return
            self._held = True
            return

    def __exit__(self, *exc: object) -> None:
        if self._held and self._fd is not None:
            self._held = False
            fcntl.flock(self._fd, fcntl.LOCK_UN)

    def close(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None


def make_engine(url: str, **kwargs: Any) -> Engine:
    if url.startswith("sqlite"):
        path = url.split("///", 1)[1] if "///" in url else ""
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        kwargs.setdefault("pool_size", 20)
        kwargs.setdefault("max_overflow", 20)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30}, **kwargs)
        _sqlite_pragmas(engine)
        return engine
    if url.startswith("postgresql"):
        kwargs.setdefault("pool_size", 20)
        kwargs.setdefault("max_overflow", 20)
        kwargs.setdefault("pool_pre_ping", True)
        return create_engine(url, **kwargs)
    raise ConfigError(f"unsupported MAILTRACK_DATABASE_URL {url!r}: use sqlite:///PATH or postgresql+psycopg://…")


def _sqlite_pragmas(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # we emit BEGIN ourselves (see _on_begin)
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=FULL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.execute("PRAGMA cache_size=-65536")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        mode = conn.get_execution_options().get("sqlite_begin", "")
        conn.exec_driver_sql(f"BEGIN {mode}".strip())


def migrate(engine: Engine) -> None:
    """Bring the schema to the newest Alembic revision."""
    from alembic import command
    from alembic.config import Config as AlembicConfig

    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(_HERE / "migrations"))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")


def open_store(url: str, *, run_migrations: bool = True, **kwargs: Any) -> Store:
    engine = make_engine(url, **kwargs)
    try:
        if run_migrations:
            migrate(engine)
    except Exception as e:
        engine.dispose()
        raise ConfigError(f"cannot open database {url!r}: {e}") from e
    return Store(engine)


__all__ = ["NullPool", "Store", "make_engine", "migrate", "open_store"]
