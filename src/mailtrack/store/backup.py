"""Backup and restore of an SQLite store with SQLite's online backup API.

The backup copies pages a few at a time and starts over when a writer changed them, so it is a
consistent snapshot while the service keeps writing. PostgreSQL is backed up with its own tools
(``pg_dump``); these functions say so.
"""

from __future__ import annotations

import os
import sqlite3
import time
from pathlib import Path

from sqlalchemy.engine import make_url

from ..errors import ConfigError

PAGES_PER_STEP = 1024  # between steps the writer gets the database back: never a long lock


def sqlite_path(database_url: str) -> Path:
    """The file behind a sqlite:/// URL; ConfigError for PostgreSQL, naming what to use instead."""
    url = make_url(database_url)
    if url.get_backend_name() != "sqlite":
        raise ConfigError("backup/restore here is for SQLite; for PostgreSQL use "
                          "`pg_dump -Fc -f mailtrack.dump DBNAME` and `pg_restore -d DBNAME mailtrack.dump`")
    if not url.database or url.database == ":memory:":
        raise ConfigError("an in-memory database cannot be backed up")
    return Path(url.database)


def _check(conn: sqlite3.Connection, what: str) -> str:
    """The schema revision of a mailtrack database; ConfigError when it is not one or is damaged."""
    try:
        ok = conn.execute("PRAGMA quick_check").fetchone()
        rev = conn.execute("SELECT version_num FROM alembic_version").fetchone()
    except sqlite3.DatabaseError as e:
        raise ConfigError(f"{what} is not a mailtrack SQLite database: {e}") from e
    if not ok or ok[0] != "ok":
        raise ConfigError(f"{what} is damaged: {ok[0] if ok else 'no answer'}")
    if not rev:
        raise ConfigError(f"{what} has no schema revision: not a mailtrack database")
    return str(rev[0])


def backup(database_url: str, target: Path) -> tuple[int, float, str]:
    """Copy the live database to ``target`` (a new file); returns (bytes, seconds, schema revision)."""
    source = sqlite_path(database_url)
    if not source.exists():
        raise ConfigError(f"no database at {source}")
    if target.exists():
        raise ConfigError(f"{target} exists; choose a new file name")
    t0 = time.monotonic()
    src = sqlite3.connect(source, timeout=30)
    dst = sqlite3.connect(target)
    try:
        src.backup(dst, pages=PAGES_PER_STEP, sleep=0.005)
        dst.execute("PRAGMA journal_mode=DELETE")  # one self-contained file
        rev = _check(dst, str(target))
    except BaseException:
        dst.close()
        target.unlink(missing_ok=True)
        raise
    finally:
        src.close()
    dst.close()
    return target.stat().st_size, time.monotonic() - t0, rev


def open_elsewhere(path: Path) -> list[int]:
    """Other processes (that we may look at) with the database file open: a service still running."""
    wanted = {str(path.resolve()), str(path.resolve()) + "-wal"}
    found = []
    for entry in Path("/proc").glob("[0-9]*"):
        if int(entry.name) == os.getpid():
            continue
        try:
            if any(os.readlink(fd) in wanted for fd in (entry / "fd").iterdir()):
                found.append(int(entry.name))
        except OSError:  # gone meanwhile, or not ours to look at
            continue
    return found


def restore(database_url: str, source: Path) -> tuple[int, str]:
    """Replace the database's content with the backup's; returns (bytes, schema revision).

    The service must be stopped (the command checks for live workers first).
    """
    target = sqlite_path(database_url)
    if not source.exists():
        raise ConfigError(f"no backup at {source}")
    src = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
    try:
        rev = _check(src, str(source))
        target.parent.mkdir(parents=True, exist_ok=True)
        dst = sqlite3.connect(target, timeout=30)
        try:
            src.backup(dst, pages=PAGES_PER_STEP)
            dst.execute("PRAGMA journal_mode=WAL")
        finally:
            dst.close()
    finally:
        src.close()
    return target.stat().st_size, rev
