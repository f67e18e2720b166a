"""Helpers shared by the benchmarks: a real `mailtrack serve` subprocess on a fresh database."""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("MAILTRACK_SHARED_DIR", REPO.parent / "shared"))
BIN = Path(sys.executable).parent
PG_URL = os.environ.get("MAILTRACK_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def database(engine: str) -> Iterator[str]:
    """A fresh SQLite file or PostgreSQL schema, removed afterwards."""
    if engine == "sqlite":
        with tempfile.TemporaryDirectory() as d:
            yield f"sqlite:///{d}/bench.db"
        return
    from sqlalchemy import create_engine, text

    schema = f"bench_{secrets.token_hex(4)}"
    admin = create_engine(PG_URL)
    with admin.begin() as c:
        c.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield f"{PG_URL}?options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as c:
            c.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def env_for(db_url: str, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update({"MAILTRACK_DATABASE_URL": db_url, "MAILTRACK_SECRET_KEY": "bench-secret", "MAILTRACK_LOG_LEVEL": "warning"})
    env.update({f"MAILTRACK_{k.upper()}": v for k, v in extra.items()})
    return env


def create_key(env: dict[str, str], account: str = "bench") -> str:
    out = subprocess.run([str(BIN / "mailtrack"), "apikey", "create", "--account", account],
                         env=env, check=True, capture_output=True, text=True, timeout=60)
    return out.stdout.strip().splitlines()[-1]


@contextmanager
def serve(env: dict[str, str], *args: str) -> Iterator[str]:
    """Run `mailtrack serve ARGS` until the block ends; yields the base URL."""
    port = free_port()
    env = {**env, "MAILTRACK_HTTP": f"127.0.0.1:{port}"}
    env.setdefault("MAILTRACK_INBOUND_SMTP", f"127.0.0.1:{free_port()}")
    env.setdefault("MAILTRACK_SUBMISSION_SMTP", "")  # off unless a bench asks for it (a fixed port would collide)
    # stderr to a file, not a pipe: a pipe nobody reads fills up and stalls a chatty server
    log = open(os.environ["BENCH_SERVE_LOG"], "w+") if os.environ.get("BENCH_SERVE_LOG") else tempfile.TemporaryFile("w+")
    proc = subprocess.Popen([str(BIN / "mailtrack"), "serve", *args], env=env, stdout=subprocess.DEVNULL, stderr=log)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    try:
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    log.seek(0)
                    raise RuntimeError(f"mailtrack serve did not start: {log.read()}") from None
                time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def pct(values: list[float], p: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, round(p / 100 * (len(s) - 1)))] if s else float("nan")
